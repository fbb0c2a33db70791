#!/usr/bin/env node
// hls.js plays a whipcast LL-HLS stream in headless Chromium; stalls, parts and latency are
// measured. Used by tests/browser_llhls.rs (make test) and benches/latency.rs
// (make bench-latency).
//
//   node tests/browser/llhls_play.mjs <base_url> <stream>
//
// Opens /watch/?stream=NAME (hls.js, lowLatencyMode), waits for playback, then observes for
// WATCH_SECONDS: currentTime must advance continuously, with no `waiting` event and no
// BUFFER_STALLED_ERROR after startup, no fatal error, and LL-HLS parts being loaded. Reports
// hls.latency (median of samples every 250 ms) and hls.targetLatency.
//
// Glass-to-glass (when the publisher paints its capture-time barcode, TIMECODE_REF set): every
// displayed frame (requestVideoFrameCallback) is drawn to a canvas and the barcode decoded
// (tests/browser/timecode.mjs); capture→display = display wall clock − decoded capture time,
// both from this machine's clock. The decoder is first checked against a reference frame that
// the Rust publisher code painted (node side, and in the page through the same canvas path,
// scaled to 180p), and decoded times are cross-checked against hls.js' playingDate
// (EXT-X-PROGRAM-DATE-TIME), so a decoding bug cannot produce a plausible number.
//
// Progress goes to stderr; the last stdout line is a JSON summary. Exit code 0 = every check
// passed, 1 = a check failed, 2 = the browser could not be set up.
// Environment:
//   CHROMIUM        (default /usr/bin/chromium)
//   WATCH_SECONDS   observation time after startup (default 60)
//   TIMECODE_REF    JSON file {"file": raw luma path, "width", "height", "ms"}: enables the
//                   barcode measurement and its known-answer checks
//   PIN_LEVEL       "top": pin hls.js to the highest level before observing (default: ABR)
//   MIN_DECODE_RATE fraction of displayed frames whose barcode must decode (default 0.8)
//   CATCHUP_RATE    set hls.js maxLiveSyncPlaybackRate (default: the page's, 1 = never
//                   speed up) and let it reach its target latency before observing
//   RESYNC=1        once playing, seek to hls.liveSyncPosition (edge − target latency), i.e.
//                   play where hls.js would if its start-up took no time
//   STOCK=1         play with tests/browser/stock_player.html instead of /watch/: hls.js as
//                   its README shows it (`new Hls({ lowLatencyMode: true })`, nothing else),
//                   served by Playwright at BASE/__stock/ (same origin as the playlists); its
//                   start-up trace (playlists, parts, start position, first frame) is reported
//   HLS_DEBUG=1     with STOCK=1: hls.js' debug log (?debug=1), every console line to stderr
//                   with ms since the page opened (a diagnostic run, not a measurement)
// Chromium is started by chromium.mjs (loopback only, fresh profile).

import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './chromium.mjs';
import { decodeTimecode, selfCheck } from './timecode.mjs';

const WATCH_SECONDS = Number(process.env.WATCH_SECONDS || 60);
const PIN_LEVEL = process.env.PIN_LEVEL || '';
const MIN_DECODE_RATE = Number(process.env.MIN_DECODE_RATE || 0.8);
const CATCHUP_RATE = process.env.CATCHUP_RATE ? Number(process.env.CATCHUP_RATE) : null;
const CATCHUP_TIMEOUT_MS = 20_000;
const RESYNC = process.env.RESYNC === '1';
const STOCK = process.env.STOCK === '1';
const HLS_DEBUG = STOCK && process.env.HLS_DEBUG === '1';
// TOLERATE_STALLS=1: the stream is expected to stall (tests/timeline.rs stalls or drops the
// publisher's packets): stalls, freezes and fewer part loads are reported, not failures;
// currentTime must still never go backwards and hls.js must have no fatal error.
const TOLERATE_STALLS = process.env.TOLERATE_STALLS === '1';
const PLAY_TIMEOUT_MS = 30_000;
const PIN_TIMEOUT_MS = 15_000;
const SCRIPT_TIMEOUT_MS = (WATCH_SECONDS + 90) * 1000;
// currentTime may pause this long between two samples (250 ms apart) and still count as
// continuous (timer jitter on a loaded 2-core machine).
const MAX_FREEZE_S = 0.75;
// Grid canvas size: 16 × 5 blocks of 10 × 8 px.
const GRID_W = 160;
const GRID_H = 40;

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);
const log = (...a) => console.error(`[llhls ${elapsed()}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const base = (process.argv[2] || '').replace(/\/+$/, '');
const stream = process.argv[3] || '';
if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base) || !/^[A-Za-z0-9_-]{1,64}$/.test(stream)) {
  console.error(`usage: node tests/browser/llhls_play.mjs http://127.0.0.1:PORT STREAM (got "${base}" "${stream}")`);
  process.exit(2);
}

const quantile = (xs, q) => {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};
const round = (x, d = 3) => (x == null || !Number.isFinite(x) ? x : +x.toFixed(d));

// ---- in-page code (serialized into the page) -------------------------------------------------

/** Installs the observers: a 250 ms sampler and, with `withTimecode`, a per-frame decoder. */
function pageInstall({ decodeSrc, gridW, gridH, withTimecode }) {
  // eslint-disable-next-line no-new-func
  const decode = new Function(`return (${decodeSrc})`)();
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  canvas.width = gridW;
  canvas.height = gridH;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  /** Draws the grid area (top 5/15) of `src` (sw×sh) into the grid canvas, decodes it. */
  const readGrid = (src, sw, sh) => {
    ctx.drawImage(src, 0, 0, sw, Math.floor((5 * sh) / 15), 0, 0, gridW, gridH);
    const px = ctx.getImageData(0, 0, gridW, gridH).data;
    const luma = new Float32Array(gridW * gridH);
    for (let i = 0; i < luma.length; i++) luma[i] = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
    return decode(luma, gridW, gridH);
  };
  const obs = {
    withTimecode,
    startedAt: Date.now(),
    samples: [], // every 250 ms: { at, t, latency, target, level, buffered, playingDate, rate }
    frames: 0, // frames presented (rVFC callbacks)
    decoded: [], // { at (display wall ms), ms (capture), level, pdt, contrast }
    errors: {}, // decode failures by reason
    rvfc: 'requestVideoFrameCallback' in HTMLVideoElement.prototype,
    readGrid,
  };
  window.__ll = obs;
  obs.timer = setInterval(() => {
    const hls = window.whipcastHls;
    let buffered = null;
    for (let i = 0; i < video.buffered.length; i++) {
      if (video.buffered.start(i) <= video.currentTime && video.currentTime <= video.buffered.end(i)) buffered = video.buffered.end(i) - video.currentTime;
    }
    obs.samples.push({
      at: Date.now(),
      t: video.currentTime,
      latency: hls ? hls.latency : null,
      target: hls ? hls.targetLatency : null,
      level: hls ? hls.currentLevel : null,
      buffered,
      playingDate: hls && hls.playingDate ? hls.playingDate.getTime() : null,
      rate: video.playbackRate,
    });
  }, 250);
  if (withTimecode && obs.rvfc) {
    const onFrame = (now, meta) => {
      if (obs.stopped) return;
      // Wall-clock time the frame is shown: Date.now() (the publisher's clock) shifted to
      // the compositor's expected display time.
      const at = Date.now() + (meta.expectedDisplayTime - performance.now());
      obs.frames += 1;
      const r = readGrid(video, video.videoWidth, video.videoHeight);
      if (r.ms != null) {
        const hls = window.whipcastHls;
        obs.decoded.push({
          at,
          ms: r.ms,
          level: hls ? hls.currentLevel : null,
          height: video.videoHeight,
          pdt: hls && hls.playingDate ? hls.playingDate.getTime() : null,
          contrast: r.contrast,
          margin: r.margin,
        });
      } else {
        obs.errors[r.error] = (obs.errors[r.error] || 0) + 1;
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }
  return { rvfc: obs.rvfc };
}

/** The in-page known-answer check: reference luma → canvas → scaled → the video read path. */
function pageSelfTest({ lumaB64, width, height, ms }) {
  const bin = atob(lumaB64);
  const img = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    const v = bin.charCodeAt(i);
    img.data[4 * i] = v;
    img.data[4 * i + 1] = v;
    img.data[4 * i + 2] = v;
    img.data[4 * i + 3] = 255;
  }
  const full = document.createElement('canvas');
  full.width = width;
  full.height = height;
  full.getContext('2d').putImageData(img, 0, 0);
  const out = {};
  for (const [name, f] of [['full', 1], ['360p→240p', 1.5], ['360p→180p', 2]]) {
    const c = document.createElement('canvas');
    c.width = Math.round(width / f);
    c.height = Math.round(height / f);
    c.getContext('2d').drawImage(full, 0, 0, c.width, c.height);
    out[name] = window.__ll.readGrid(c, c.width, c.height);
  }
  return out;
}

function pageCollect() {
  const obs = window.__ll;
  obs.stopped = true;
  clearInterval(obs.timer);
  const s = window.whipcastState;
  const hls = window.whipcastHls;
  const video = document.getElementById('video');
  const details = hls && hls.levels.map((l) => l.details).filter(Boolean);
  const cur = hls && hls.levels[hls.currentLevel] && hls.levels[hls.currentLevel].details;
  const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  return {
    samples: obs.samples,
    frames: obs.frames,
    decoded: obs.decoded,
    decodeErrors: obs.errors,
    state: {
      phase: s.phase,
      engine: s.engine,
      hlsVersion: s.hlsVersion,
      levels: s.levels,
      currentLevel: s.currentLevel,
      levelSwitches: s.levelSwitches,
      fatalErrors: s.fatalErrors,
      errors: s.errors,
      stalls: s.stalls,
      stallErrors: s.stallErrors,
      fragLoads: s.fragLoads,
      partLoads: s.partLoads,
      lowLatencyMode: s.lowLatencyMode,
    },
    hls: hls && {
      lowLatencyMode: hls.config.lowLatencyMode,
      latency: hls.latency,
      targetLatency: hls.targetLatency,
      maxLatency: hls.maxLatency,
      drift: hls.drift,
      liveSyncPosition: hls.liveSyncPosition,
      levelsWithParts: details.filter((d) => d.partList && d.partList.length > 0).length,
      current: cur && {
        live: cur.live,
        partTarget: cur.partTarget,
        partHoldBack: cur.partHoldBack,
        holdBack: cur.holdBack,
        canBlockReload: cur.canBlockReload,
        canSkipUntil: cur.canSkipUntil,
        targetduration: cur.targetduration,
        partListLength: cur.partList ? cur.partList.length : 0,
        independentParts: cur.partList ? cur.partList.filter((p) => p.independent).length : 0,
      },
    },
    video: {
      width: video.videoWidth,
      height: video.videoHeight,
      decodedFrames: q.totalVideoFrames,
      droppedFrames: q.droppedVideoFrames,
    },
  };
}

// ---- main -----------------------------------------------------------------------------------

async function main() {
  const summary = { ok: false, base, stream, watchSeconds: WATCH_SECONDS, pinLevel: PIN_LEVEL || null, failures: [] };
  const check = (cond, msg) => {
    if (!cond) {
      summary.failures.push(msg);
      log(`FAIL: ${msg}`);
    }
    return cond;
  };
  const watchdog = setTimeout(() => {
    summary.failures.push(`script timed out after ${SCRIPT_TIMEOUT_MS / 1000}s`);
    console.log(JSON.stringify(summary));
    process.exit(1);
  }, SCRIPT_TIMEOUT_MS);

  // Known-answer checks of the barcode decoder, node side.
  let ref = null;
  if (process.env.TIMECODE_REF) {
    const meta = JSON.parse(readFileSync(process.env.TIMECODE_REF, 'utf8'));
    const plane = new Uint8Array(readFileSync(meta.file));
    ref = { ...meta, plane };
    const f = selfCheck(plane, meta.width, meta.height, meta.ms);
    summary.decoderSelfCheck = { node: f.length === 0 ? 'pass' : f };
    check(f.length === 0, `barcode decoder known-answer check (node): ${f.join('; ')}`);
    log(`decoder known-answer check (node): ${f.length === 0 ? 'pass' : f.join('; ')}`);
  }

  const chrome = await launchChromium({ args: ['--autoplay-policy=no-user-gesture-required'], summary });
  summary.browser = `Chromium ${chrome.version}`;
  log(`launched ${summary.browser}`);
  const pageErrors = [];
  try {
    const page = await chrome.context.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const consoleLines = [];
    summary.console = consoleLines;
    let openedAt = Date.now();
    if (HLS_DEBUG) page.on('console', (m) => console.error(`[page +${Date.now() - openedAt} ms] ${m.text().slice(0, 400)}`));
    page.on('console', (m) => {
      if ((m.type() === 'error' || m.type() === 'warning') && consoleLines.length < 30) consoleLines.push(`${m.type()}: ${m.text().slice(0, 500)}`);
    });
    let url = `${base}/watch/?stream=${stream}`;
    if (STOCK) {
      const html = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'stock_player.html'));
      await page.route(`${base}/__stock/**`, (route) => route.fulfill({ status: 200, contentType: 'text/html; charset=utf-8', body: html }));
      url = `${base}/__stock/?stream=${stream}${HLS_DEBUG ? '&debug=1' : ''}`;
      summary.player = 'stock hls.js (tests/browser/stock_player.html)';
    }
    log(`watching ${url}`);
    const opened = Date.now();
    openedAt = opened;
    await page.goto(url);
    const playing = await page
      .waitForFunction(() => {
        const v = document.getElementById('video');
        return window.whipcastState?.phase === 'playing' && v.currentTime > 0 && v.readyState >= 3;
      }, null, { timeout: PLAY_TIMEOUT_MS, polling: 50 })
      .then(() => true, () => false);
    summary.startupMs = Date.now() - opened;
    if (!check(playing, `not playing after ${PLAY_TIMEOUT_MS / 1000}s: ${JSON.stringify(await page.evaluate(() => window.whipcastState))}`)) return summary;
    log(`playing after ${summary.startupMs} ms`);

    const inst = await page.evaluate(pageInstall, { decodeSrc: decodeTimecode.toString(), gridW: GRID_W, gridH: GRID_H, withTimecode: !!ref });
    if (ref) {
      check(inst.rvfc, 'requestVideoFrameCallback is not available');
      const st = await page.evaluate(pageSelfTest, { lumaB64: Buffer.from(ref.plane).toString('base64'), width: ref.width, height: ref.height, ms: ref.ms });
      const bad = Object.entries(st).filter(([, r]) => r.ms !== ref.ms);
      summary.decoderSelfCheck.page = bad.length === 0 ? 'pass' : st;
      check(bad.length === 0, `barcode decoder known-answer check (page canvas path): ${JSON.stringify(st)}`);
      log(`decoder known-answer check (page): ${bad.length === 0 ? 'pass' : JSON.stringify(st)}`);
    }

    if (CATCHUP_RATE) {
      await page.evaluate((rate) => {
        window.whipcastHls.config.maxLiveSyncPlaybackRate = rate;
      }, CATCHUP_RATE);
    }
    if (PIN_LEVEL === 'top') {
      const top = await page.evaluate(() => {
        const hls = window.whipcastHls;
        const top = hls.levels.length - 1;
        hls.nextLevel = top;
        return top;
      });
      const pinned = await page
        .waitForFunction((top) => window.whipcastHls.currentLevel === top, top, { timeout: PIN_TIMEOUT_MS, polling: 100 })
        .then(() => true, () => false);
      check(pinned, `could not pin hls.js to level ${top}`);
      // Let the switch settle.
      await sleep(3000);
      summary.pinnedLevel = top;
    }
    if (CATCHUP_RATE) {
      const t = Date.now();
      const reached = await page
        .waitForFunction(() => {
          const h = window.whipcastHls;
          return h.latency > 0 && h.latency - h.targetLatency < 0.1;
        }, null, { timeout: CATCHUP_TIMEOUT_MS, polling: 250 })
        .then(() => true, () => false);
      summary.catchUp = { maxLiveSyncPlaybackRate: CATCHUP_RATE, reachedTarget: reached, ms: Date.now() - t };
      log(`catch-up at ≤${CATCHUP_RATE}x: ${reached ? 'reached' : 'did not reach'} the target latency in ${Date.now() - t} ms`);
    }
    if (RESYNC) {
      await sleep(2000);
      summary.resync = await page.evaluate(() => {
        const h = window.whipcastHls;
        const v = document.getElementById('video');
        const from = { t: v.currentTime, latency: h.latency };
        v.currentTime = h.liveSyncPosition;
        return { from, to: v.currentTime };
      });
      await sleep(2000);
      summary.resync.latencyAfter = await page.evaluate(() => window.whipcastHls.latency);
      log(`re-synced to the live sync position: latency ${round(summary.resync.from.latency)} → ${round(summary.resync.latencyAfter)} s`);
    }
    if (PIN_LEVEL || CATCHUP_RATE || RESYNC) {
      // Observe from a clean slate.
      await page.evaluate(() => {
        window.__ll.samples.length = 0;
        window.__ll.decoded.length = 0;
        window.__ll.frames = 0;
        window.__ll.errors = {};
      });
    }

    const before = await page.evaluate(() => ({ ...window.whipcastState, errors: window.whipcastState.errors.length }));
    summary.startup = { stalls: before.stalls, stallErrors: before.stallErrors, partLoads: before.partLoads, fragLoads: before.fragLoads, errors: before.errors, resyncs: before.resyncs, resyncFrom: before.resyncFrom };
    log(`observing for ${WATCH_SECONDS}s`);
    const observedFrom = Date.now();
    for (let left = WATCH_SECONDS; left > 0; left -= 10) {
      await sleep(Math.min(10, left) * 1000);
      const p = await page.evaluate(() => {
        const s = window.whipcastState;
        const o = window.__ll;
        const last = o.samples[o.samples.length - 1] || {};
        return { t: last.t, latency: last.latency, level: last.level, stalls: s.stalls, parts: s.partLoads, frames: o.frames, decoded: o.decoded.length, g2g: o.decoded.length ? o.decoded[o.decoded.length - 1].at - o.decoded[o.decoded.length - 1].ms : null };
      });
      log(`  t=${round(p.t, 2)} latency=${round(p.latency, 2)} level=${p.level} stalls=${p.stalls} parts=${p.parts} frames=${p.frames} decoded=${p.decoded} g2g(last)=${p.g2g}ms`);
    }
    const observedS = (Date.now() - observedFrom) / 1000;
    const c = await page.evaluate(pageCollect);
    if (STOCK) summary.startupTrace = await page.evaluate(() => window.whipcastTrace);

    // ---- playback continuity, stalls, errors ----
    const s = c.samples;
    let maxFreeze = 0;
    let freezeStart = s.length ? s[0].at : 0;
    for (let i = 1; i < s.length; i++) {
      if (s[i].t > s[i - 1].t + 1e-3) freezeStart = s[i].at;
      else maxFreeze = Math.max(maxFreeze, (s[i].at - freezeStart) / 1000);
    }
    const advanced = s.length ? s[s.length - 1].t - s[0].t : 0;
    // The largest step back of currentTime between two samples (a seek back).
    let backwardsS = 0;
    for (let i = 1; i < s.length; i++) backwardsS = Math.max(backwardsS, s[i - 1].t - s[i].t);
    const wall = s.length ? (s[s.length - 1].at - s[0].at) / 1000 : 0;
    const latencies = s.map((x) => x.latency).filter((x) => Number.isFinite(x));
    const during = {
      stalls: c.state.stalls - before.stalls,
      stallErrors: c.state.stallErrors - before.stallErrors,
      partLoads: c.state.partLoads - before.partLoads,
      fragLoads: c.state.fragLoads - before.fragLoads,
      errors: c.state.errors.slice(before.errors).map((e) => `${e.details}${e.fatal ? ' (fatal)' : ''}`),
    };
    Object.assign(summary, {
      engine: c.state.engine,
      hlsVersion: c.state.hlsVersion,
      levels: c.state.levels.map((l) => `${l.width}x${l.height}@${Math.round(l.bitrate / 1000)}k`),
      currentLevel: c.state.currentLevel,
      levelSwitches: c.state.levelSwitches,
      videoSize: `${c.video.width}x${c.video.height}`,
      observedSeconds: round(observedS, 1),
      playback: {
        advancedS: round(advanced, 2),
        wallS: round(wall, 2),
        maxFreezeS: round(maxFreeze, 2),
        backwardsS: round(backwardsS, 3),
        decodedFrames: c.video.decodedFrames,
        droppedFrames: c.video.droppedFrames,
      },
      during,
      lowLatencyMode: c.hls && c.hls.lowLatencyMode,
      hlsLatency: {
        median: round(quantile(latencies, 0.5)),
        p95: round(quantile(latencies, 0.95)),
        min: round(quantile(latencies, 0)),
        max: round(quantile(latencies, 1)),
        samples: latencies.length,
        target: round(c.hls && c.hls.targetLatency),
        maxLatency: round(c.hls && c.hls.maxLatency),
        drift: round(c.hls && c.hls.drift),
      },
      levelDetails: c.hls && c.hls.current,
      levelsWithParts: c.hls && c.hls.levelsWithParts,
      fatalErrors: c.state.fatalErrors,
    });
    check(c.state.engine === 'hls.js', `engine ${c.state.engine}`);
    check(c.hls && c.hls.lowLatencyMode === true, 'hls.js lowLatencyMode is not on');
    check(c.state.fatalErrors === 0, `fatal hls.js errors: ${JSON.stringify(c.state.errors.filter((e) => e.fatal))}`);
    check(backwardsS <= 0.01, `currentTime went back ${backwardsS.toFixed(3)} s`);
    if (!TOLERATE_STALLS) {
      check(during.stalls === 0, `${during.stalls} 'waiting' event(s) after startup`);
      check(during.stallErrors === 0, `${during.stallErrors} BUFFER_STALLED_ERROR(s) after startup`);
      check(maxFreeze <= MAX_FREEZE_S, `currentTime stood still for ${maxFreeze.toFixed(2)} s`);
      check(advanced >= wall - 1.0, `currentTime advanced ${advanced.toFixed(2)} s in ${wall.toFixed(2)} s`);
    }
    check(wall >= WATCH_SECONDS - 2, `observed only ${wall.toFixed(1)} s`);
    const cur = c.hls && c.hls.current;
    check(cur && cur.partListLength > 0, `the playing level's playlist has no parts: ${JSON.stringify(cur)}`);
    check(cur && cur.canBlockReload === true, 'playlist without CAN-BLOCK-RELOAD');
    // 200 ms parts: ~5 per second per track; require a good share of the loads to be parts.
    check(TOLERATE_STALLS || during.partLoads >= WATCH_SECONDS * 2, `only ${during.partLoads} parts loaded in ${WATCH_SECONDS}s`);
    check(latencies.length > 0, 'no hls.latency samples');

    // ---- glass-to-glass ----
    if (ref) {
      const d = c.decoded;
      const g2g = d.map((x) => x.at - x.ms);
      let backwards = 0;
      let repeated = 0;
      let maxStep = 0;
      for (let i = 1; i < d.length; i++) {
        if (d[i].ms < d[i - 1].ms) backwards += 1;
        // The same picture twice: videorate duplicated a frame (late input) or the
        // compositor re-presented it.
        if (d[i].ms === d[i - 1].ms) repeated += 1;
        maxStep = Math.max(maxStep, d[i].ms - d[i - 1].ms);
      }
      // Capture time − program date time of the same frame: constant if both are right.
      const pdtOffsets = d.filter((x) => x.pdt != null).map((x) => x.ms - x.pdt);
      const decodeRate = c.frames ? d.length / c.frames : 0;
      const heights = {};
      for (const x of d) heights[x.height] = (heights[x.height] || 0) + 1;
      summary.glassToGlass = {
        medianMs: quantile(g2g, 0.5),
        p95Ms: quantile(g2g, 0.95),
        minMs: quantile(g2g, 0),
        maxMs: quantile(g2g, 1),
        samples: g2g.length,
        framesPresented: c.frames,
        decodeRate: round(decodeRate),
        decodeErrors: c.decodeErrors,
        byHeight: heights,
        backwards,
        repeated,
        maxCaptureStepMs: maxStep,
        minContrast: d.length ? Math.min(...d.map((x) => x.contrast)) : null,
        minMargin: d.length ? Math.min(...d.map((x) => x.margin)) : null,
        captureMinusPdtMs: { median: quantile(pdtOffsets, 0.5), p5: quantile(pdtOffsets, 0.05), p95: quantile(pdtOffsets, 0.95), samples: pdtOffsets.length },
      };
      log(`glass-to-glass: median ${summary.glassToGlass.medianMs} ms, p95 ${summary.glassToGlass.p95Ms} ms over ${g2g.length} frames (decode rate ${round(decodeRate)})`);
      check(c.frames >= WATCH_SECONDS * 10, `only ${c.frames} frames presented`);
      check(decodeRate >= MIN_DECODE_RATE, `barcode decoded in only ${(decodeRate * 100).toFixed(0)}% of frames: ${JSON.stringify(c.decodeErrors)}`);
      // Consistency: capture times never decrease (frames are shown in order)...
      check(backwards === 0, `${backwards} decoded capture times went backwards`);
      // ...the delay is physically plausible...
      check(g2g.length > 0 && quantile(g2g, 0) > 0 && quantile(g2g, 1) < 10_000, `implausible capture→display delays: ${quantile(g2g, 0)}..${quantile(g2g, 1)} ms`);
      // ...and the capture times agree with the playlists' PROGRAM-DATE-TIME within a second,
      // with little spread (the PDT mapping is fixed per stream).
      const spread = pdtOffsets.length ? quantile(pdtOffsets, 0.95) - quantile(pdtOffsets, 0.05) : Infinity;
      check(pdtOffsets.length > 0 && Math.abs(quantile(pdtOffsets, 0.5)) < 1000 && spread < 300, `decoded capture times disagree with PROGRAM-DATE-TIME: ${JSON.stringify(summary.glassToGlass.captureMinusPdtMs)}`);
    }
    await page.close();
  } catch (e) {
    check(false, `exception: ${e.stack || e.message}`);
  } finally {
    summary.pageErrors = pageErrors;
    check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
    await chrome.close();
    clearTimeout(watchdog);
  }
  return summary;
}

main().then(
  (summary) => {
    summary.ok = summary.failures.length === 0;
    summary.seconds = +((Date.now() - t0) / 1000).toFixed(1);
    console.log(JSON.stringify(summary));
    process.exit(summary.ok ? 0 : 1);
  },
  (e) => {
    console.error(e);
    console.log(JSON.stringify({ ok: false, base, failures: [`crashed: ${e.message}`] }));
    process.exit(1);
  },
);
