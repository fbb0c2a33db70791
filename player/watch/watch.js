// whipcast player page: plays /hls/NAME/master.m3u8 with hls.js (low-latency mode), or with
// the browser's own HLS when it has no MediaSource (iOS Safari).
//
// Query: ?stream=NAME, optionally &format=ts for the MPEG-TS variants (master-ts.m3u8: what
// older TVs and set-top boxes play; plain HLS, so hls.js runs without low-latency mode).
// window.whipcastState mirrors what the page shows, for tests and for debugging.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const video = $('video');

  /** Delay between attempts while the stream is not (yet) live. */
  const RETRY_MS = 2000;
  /**
   * Start-up resync. hls.js picks its start position (live edge − PART-HOLD-BACK) when the
   * first media playlist arrives, then spends 0.4–1.1 s loading the first independent part
   * before it seeks there; that time stays in the latency for good, because it only speeds
   * up while more than 1 s is buffered (latency-controller.ts), which never happens at
   * LL-HLS latencies. So once playback runs, if hls.js is more than RESYNC_SLACK_S behind its
   * own target, seek once to hls.liveSyncPosition, inside what is already buffered
   * (BENCHMARKS.md "Latency": glass-to-glass 1.1–1.8 s → 0.72–0.93 s).
   */
  const RESYNC_SLACK_S = 0.3;
  const RESYNC_AFTER_MS = 1000;
  const RESYNC_TRIES = 6;

  const state = {
    phase: 'idle', // idle | waiting | loading | playing | ended | error
    status: 'idle',
    stream: null,
    format: 'fmp4', // fmp4 | ts (?format=ts)
    src: null,
    engine: null, // hls.js | native
    hlsVersion: window.Hls ? window.Hls.version : null,
    levels: [], // [{ index, width, height, bitrate, codecs }]
    currentLevel: -1, // level being played (-1 before the first switch)
    levelSwitches: 0,
    autoLevel: true,
    errors: [], // every hls.js / media error: { at, type, details, fatal, status? }
    fatalErrors: 0,
    retries: 0,
    latency: null, // seconds behind the live edge (hls.js)
    endlist: false, // the playlist carried EXT-X-ENDLIST
    targetLatency: null, // the latency hls.js aims for (PART-HOLD-BACK in low-latency mode)
    lowLatencyMode: null, // hls.js config.lowLatencyMode
    stalls: 0, // `waiting` events after playback started
    stallErrors: 0, // hls.js BUFFER_STALLED_ERROR events
    fragLoads: 0, // whole segments loaded (hls.js FRAG_LOADED without part)
    partLoads: 0, // LL-HLS parts loaded (FRAG_LOADED with data.part)
    selectedLevel: -1, // the rendition picker: -1 = Auto, else a level index
    recoveries: 0, // times playback restarted after the stream came back
    resyncs: 0, // start-up seeks to hls.liveSyncPosition (RESYNC_SLACK_S)
    resyncFrom: null, // hls.js latency before the last resync, seconds
  };
  window.whipcastState = state;

  let hls = null;
  let resyncPending = false;
  let retryTimer = null;
  let comebackTimer = null;

  function setStatus(phase, text) {
    state.phase = phase;
    state.status = text;
    const el = $('status');
    el.textContent = text;
    el.dataset.phase = phase;
  }

  function fillLevelPicker() {
    const sel = $('level');
    const opts = [new Option('Auto', '-1')];
    for (const l of state.levels) {
      opts.push(new Option(`${l.height ? `${l.height}p` : `level ${l.index}`} · ${Math.round(l.bitrate / 1000)} kbit/s`, String(l.index)));
    }
    sel.replaceChildren(...opts);
    sel.value = String(state.levels.some((l) => l.index === state.selectedLevel) ? state.selectedLevel : -1);
  }

  /** The picker: -1 = automatic (ABR), else pin that level. */
  function pickLevel(index) {
    state.selectedLevel = index;
    $('level').value = String(index);
    if (!hls) return;
    if (index < 0) {
      hls.currentLevel = -1;
      hls.nextLevel = -1;
    } else {
      hls.currentLevel = index; // switch now (flushes the buffer ahead)
    }
    state.autoLevel = hls.autoLevelEnabled;
    showInfo();
  }

  function showInfo() {
    const cur = state.levels.find((x) => x.index === state.currentLevel);
    $('latency').textContent = state.latency != null ? `${state.latency.toFixed(1)} s${state.targetLatency ? ` (target ${state.targetLatency.toFixed(1)})` : ''}` : '–';
    $('rendition').textContent = cur ? `${cur.width}×${cur.height} @ ${Math.round(cur.bitrate / 1000)} kbit/s${state.selectedLevel < 0 ? ' (auto)' : ''}` : '–';
    $('stalls').textContent = String(state.stalls);
    const l = state.levels.find((x) => x.index === state.currentLevel);
    const parts = [`${state.engine}`];
    if (state.levels.length) parts.push(`${state.levels.length} level(s)`);
    if (l) parts.push(`playing ${l.width}x${l.height} @ ${Math.round(l.bitrate / 1000)} kbit/s`);
    if (state.latency != null) parts.push(`latency ${state.latency.toFixed(1)} s`);
    $('info').textContent = parts.join(' · ');
  }

  function recordError(type, details, fatal, extra) {
    const e = { at: +(performance.now() / 1000).toFixed(3), type, details, fatal, ...extra };
    state.errors.push(e);
    if (state.errors.length > 100) state.errors.shift();
    if (fatal) state.fatalErrors += 1;
    console.warn('[watch]', JSON.stringify(e));
  }

  function retryLater(why) {
    state.retries += 1;
    setStatus('waiting', `stream offline — waiting (${why})…`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(state.engine === 'native' ? startNative : startHlsJs, RETRY_MS);
  }

  function startHlsJs() {
    if (hls) hls.destroy();
    state.engine = 'hls.js';
    setStatus('loading', 'loading…');
    // `?debug=1`: hls.js' own debug log in the browser console (what it loads, and why).
    hls = new window.Hls({ lowLatencyMode: state.format !== 'ts', backBufferLength: 30, debug: params.get('debug') === '1' });
    resyncPending = true;
    window.whipcastHls = hls; // for tests and debugging
    state.lowLatencyMode = hls.config.lowLatencyMode;
    const H = window.Hls.Events;
    hls.on(H.FRAG_LOADED, (_ev, data) => {
      if (data.part) state.partLoads += 1;
      else if (data.frag && data.frag.sn !== 'initSegment') state.fragLoads += 1;
    });
    hls.on(H.LEVEL_UPDATED, (_ev, data) => {
      if (data.details && data.details.live === false) state.endlist = true;
    });
    hls.on(H.MANIFEST_PARSED, (_ev, data) => {
      state.levels = data.levels.map((l, index) => ({
        index,
        width: l.width,
        height: l.height,
        bitrate: l.bitrate,
        codecs: [l.videoCodec, l.audioCodec].filter(Boolean).join(','),
      }));
      fillLevelPicker();
      if (state.selectedLevel >= 0 && state.selectedLevel < data.levels.length) pickLevel(state.selectedLevel);
      showInfo();
      video.play().catch((e) => recordError('media', `play(): ${e.message}`, false));
    });
    hls.on(H.LEVEL_SWITCHED, (_ev, data) => {
      state.currentLevel = data.level;
      state.levelSwitches += 1;
      showInfo();
    });
    hls.on(H.ERROR, (_ev, data) => {
      if (data.details === window.Hls.ErrorDetails.BUFFER_STALLED_ERROR) state.stallErrors += 1;
      const status = data.response && data.response.code;
      recordError(data.type, data.details, data.fatal, status ? { status } : {});
      if (!data.fatal) return;
      const E = window.Hls.ErrorDetails;
      if (data.details === E.MANIFEST_LOAD_ERROR || data.details === E.MANIFEST_PARSING_ERROR) {
        // Not live yet (404) or between broadcasts: try again shortly.
        hls.destroy();
        hls = null;
        retryLater(status ? `HTTP ${status}` : data.details);
      } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
      } else if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
        hls.startLoad();
      } else {
        setStatus('error', `error: ${data.details}`);
        hls.destroy();
        hls = null;
      }
    });
    hls.loadSource(state.src);
    hls.attachMedia(video);
  }

  function startNative() {
    state.engine = 'native';
    setStatus('loading', 'loading…');
    video.src = state.src;
    video.play().catch((e) => recordError('media', `play(): ${e.message}`, false));
  }

  /** One seek to the live sync position after start-up (see RESYNC_SLACK_S). */
  function resyncToLive(triesLeft) {
    if (!hls || state.phase !== 'playing' || !hls.config.lowLatencyMode) return;
    const latency = hls.latency;
    const target = hls.targetLatency;
    const pos = hls.liveSyncPosition;
    if (!(latency > 0) || !(target > 0) || !Number.isFinite(pos)) {
      if (triesLeft > 0) setTimeout(() => resyncToLive(triesLeft - 1), 500);
      return;
    }
    if (latency <= target + RESYNC_SLACK_S || pos <= video.currentTime) return;
    // Only within the buffer: a seek past it would stall while the part loads.
    const b = video.buffered;
    const inBuffer = Array.from({ length: b.length }, (_, i) => [b.start(i), b.end(i)]).some(([s, e]) => s <= pos && pos + 0.1 < e);
    if (!inBuffer) {
      if (triesLeft > 0) setTimeout(() => resyncToLive(triesLeft - 1), 500);
      return;
    }
    state.resyncs += 1;
    state.resyncFrom = latency;
    video.currentTime = pos;
  }

  video.addEventListener('playing', () => {
    setStatus('playing', 'playing');
    if (resyncPending) {
      resyncPending = false;
      setTimeout(() => resyncToLive(RESYNC_TRIES), RESYNC_AFTER_MS);
    }
  });
  video.addEventListener('waiting', () => {
    if (state.phase === 'playing' && !video.seeking) {
      state.stalls += 1;
      setStatus('loading', 'buffering…');
    }
  });
  function setEnded() {
    if (state.phase !== 'ended') setStatus('ended', 'the broadcast has ended — waiting for it to come back');
    watchForComeback();
  }

  /** While ended: poll the master playlist (and its first variant) until a live one appears. */
  function watchForComeback() {
    if (comebackTimer || state.engine !== 'hls.js') return;
    comebackTimer = setInterval(async () => {
      if (state.phase !== 'ended') return;
      try {
        const m = await fetch(state.src, { cache: 'no-store' });
        if (!m.ok) return;
        const master = await m.text();
        const uri = master.split('\n').map((l) => l.trim()).find((l) => l && !l.startsWith('#'));
        if (!uri) return;
        const v = await fetch(new URL(uri, new URL(state.src, location.href)), { cache: 'no-store' });
        if (!v.ok) return;
        const media = await v.text();
        if (media.includes('#EXTINF') && !media.includes('#EXT-X-ENDLIST')) {
          clearInterval(comebackTimer);
          comebackTimer = null;
          state.recoveries += 1;
          state.endlist = false;
          startHlsJs();
        }
      } catch {
        // offline: keep trying
      }
    }, RETRY_MS);
  }

  video.addEventListener('ended', setEnded);
  // The playlist said EXT-X-ENDLIST: once playback runs out of buffer, the broadcast is over.
  // (Audio and video may end a few hundred ms apart, so the element does not always reach
  // `ended` by itself; it then waits forever at the end of the shorter track.)
  function endedIfDrained() {
    if (!state.endlist || state.phase === 'ended') return;
    const b = video.buffered;
    const end = b.length ? b.end(b.length - 1) : 0;
    if (end - video.currentTime < 1.5) setEnded();
  }
  video.addEventListener('waiting', endedIfDrained);
  setInterval(endedIfDrained, 1000);
  video.addEventListener('timeupdate', () => {
    if (hls) {
      state.latency = hls.latency;
      state.targetLatency = hls.targetLatency;
      state.autoLevel = hls.autoLevelEnabled;
    }
    showInfo();
  });
  video.addEventListener('error', () => {
    const err = video.error;
    recordError('media', `video element error ${err ? `${err.code} ${err.message}` : ''}`.trim(), state.engine === 'native');
    if (state.engine === 'native') retryLater('media error');
  });

  $('level').addEventListener('change', () => pickLevel(Number($('level').value)));
  window.whipcastWatch = { pickLevel };

  const stream = params.get('stream');
  if (!stream || !/^[A-Za-z0-9_-]{1,64}$/.test(stream)) {
    $('pick').hidden = false;
    $('controls').hidden = true;
    setStatus('error', 'error: give a stream name: /watch/?stream=NAME');
    return;
  }
  state.stream = stream;
  state.format = params.get('format') === 'ts' ? 'ts' : 'fmp4';
  const master = state.format === 'ts' ? 'master-ts.m3u8' : 'master.m3u8';
  state.src = `/hls/${encodeURIComponent(stream)}/${master}`;
  $('name').textContent = stream;
  document.title = `whipcast · ${stream}`;
  if (window.Hls && window.Hls.isSupported()) startHlsJs();
  else if (video.canPlayType('application/vnd.apple.mpegurl')) startNative();
  else setStatus('error', 'error: this browser can play neither MediaSource nor native HLS');
})();
