// whipcast dashboard: lists the streams of GET /api/streams, refreshed every 2 s, each with
// a small muted live preview (hls.js, lowest level) and its viewer URLs.
// window.whipcastDashboard mirrors what the page shows, for tests and for debugging.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const REFRESH_MS = 2000;
  const state = { updates: 0, error: null, lastUpdate: null, live: [], ended: [], previews: {} };
  window.whipcastDashboard = state;
  const cards = new Map(); // name -> { li, epoch, state, hls }

  $('whip-url').textContent = new URL('/whip/NAME', location.href).href;

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function fmtUptime(s) {
    if (s == null) return '–';
    s = Math.floor(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return h ? `${h}h ${m}m ${sec}s` : m ? `${m}m ${sec}s` : `${sec}s`;
  }
  const fmtBps = (b) => (b ? (b >= 1e6 ? `${(b / 1e6).toFixed(2)} Mbit/s` : `${Math.round(b / 1000)} kbit/s`) : '–');

  function startPreview(card, s) {
    if (card.hls || !window.Hls || !window.Hls.isSupported()) return;
    const video = card.f.video;
    const hls = new window.Hls({ lowLatencyMode: true, startLevel: 0, capLevelToPlayerSize: true, backBufferLength: 10, maxBufferLength: 6 });
    card.hls = hls;
    hls.on(window.Hls.Events.MANIFEST_PARSED, (_e, data) => {
      // Lowest bitrate level, pinned: the dashboard should stay cheap.
      let low = 0;
      data.levels.forEach((l, i) => { if (l.bitrate < data.levels[low].bitrate) low = i; });
      hls.currentLevel = low;
      state.previews[s.name] = { level: low, levels: data.levels.length };
      video.play().catch(() => {});
    });
    hls.on(window.Hls.Events.ERROR, (_e, data) => {
      if (data.fatal) stopPreview(card); // retried at the next refresh
    });
    hls.loadSource(s.master);
    hls.attachMedia(video);
  }

  function stopPreview(card) {
    if (!card.hls) return;
    card.hls.destroy();
    card.hls = null;
    card.f.video.removeAttribute('src');
    card.f.video.load();
  }

  /** One card per stream name, built once and updated in place (keeps keyboard focus). */
  function renderCard(s) {
    let card = cards.get(s.name);
    const enc = encodeURIComponent(s.name);
    if (!card) {
      const li = el('li', { className: 'card', id: `stream-${s.name}` });
      li.dataset.stream = s.name;
      li.setAttribute('aria-labelledby', `h-${s.name}`);
      const f = {};
      f.badge = el('span', { className: 'badge' });
      const heading = el('h3', { id: `h-${s.name}` }, el('span', { textContent: s.name }), f.badge);
      f.video = el('video', { muted: true, autoplay: true, playsInline: true });
      f.video.setAttribute('aria-label', `live preview of ${s.name}`);
      const dl = el('dl', {});
      // `node`: in a cluster, the node that has the stream (README "Cluster (Redis)").
      for (const [key, label] of [['uptime', 'Uptime'], ['ingest', 'Ingest'], ['rends', 'Renditions'], ['lag', 'Server lag p50'], ['node', 'Node'], ['hls', 'HLS URL'], ['watch', 'Watch URL']]) {
        f[key] = el('dd', {});
        f[`${key}Label`] = el('dt', { textContent: label });
        dl.append(f[`${key}Label`], f[key]);
      }
      f.hlsLink = el('a', { className: 'url' });
      f.hls.append(f.hlsLink);
      f.watchLink = el('a', { className: 'url' });
      f.watch.append(f.watchLink);
      const links = el('p', { className: 'links' },
        el('a', { href: `/watch/?stream=${enc}`, textContent: 'Watch' }),
        el('a', { href: `/publish/?stream=${enc}`, textContent: 'Publish to this name' }));
      li.append(heading, f.video, dl, links);
      card = { li, f, hls: null, epoch: null };
      cards.set(s.name, card);
    }
    const { li, f } = card;
    const master = new URL(s.master || `/hls/${enc}/master.m3u8`, location.href).href;
    const watchUrl = new URL(`/watch/?stream=${enc}`, location.href).href;
    const ing = s.ingest || {};
    const rends = (s.renditions || []).map((r) => `${r.width ? `${r.width}×${r.height}` : (r.name || 'audio')} ${fmtBps(r.average_bps)}`).join(', ') || '–';
    const lag = s.lag_ms && s.lag_ms.p50 != null ? `${Math.round(s.lag_ms.p50)} ms (p99 ${Math.round(s.lag_ms.p99)} ms)` : '–';
    const set = (node, text) => { if (node.textContent !== text) node.textContent = text; };
    set(f.badge, s.state);
    f.badge.className = `badge ${s.state}`;
    set(f.uptime, fmtUptime(s.uptime_s));
    set(f.ingest, `${ing.video_codec || '?'}${ing.audio ? ' + audio' : ''} over ${ing.signaling || '?'}`);
    set(f.rends, rends);
    set(f.lag, lag);
    set(f.node, s.node || '');
    f.node.hidden = f.nodeLabel.hidden = !s.node;
    if (f.hlsLink.href !== master) { f.hlsLink.href = master; f.hlsLink.textContent = master; }
    if (f.watchLink.href !== watchUrl) { f.watchLink.href = watchUrl; f.watchLink.textContent = watchUrl; }
    f.video.hidden = s.state !== 'live';
    if (s.state === 'live') {
      if (card.epoch !== s.epoch) stopPreview(card); // new broadcast on the same name
      startPreview(card, s);
    } else {
      stopPreview(card);
    }
    card.epoch = s.epoch;
    return li;
  }

  /** Puts `items` into `list` in order, moving only what changed (focus stays put). */
  function placeCards(list, items) {
    items.forEach((li, i) => {
      if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    });
    while (list.children.length > items.length) list.lastElementChild.remove();
  }

  async function refresh() {
    try {
      const r = await fetch('/api/streams', { cache: 'no-store' });
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const { streams = [] } = await r.json();
      const live = streams.filter((s) => s.state === 'live');
      const ended = streams.filter((s) => s.state !== 'live');
      placeCards($('streams'), live.map(renderCard));
      placeCards($('ended'), ended.map(renderCard));
      for (const [name, card] of cards) {
        if (!streams.some((s) => s.name === name)) { stopPreview(card); cards.delete(name); }
      }
      $('empty').hidden = live.length > 0;
      $('ended-section').hidden = ended.length === 0;
      $('live-count').textContent = `(${live.length})`;
      Object.assign(state, { error: null, lastUpdate: Date.now(), live: live.map((s) => s.name), ended: ended.map((s) => s.name) });
      state.updates += 1;
      $('refresh').textContent = `updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
    } catch (e) {
      state.error = e.message;
      $('refresh').textContent = `cannot load /api/streams (${e.message}); retrying…`;
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }
  refresh();
})();
