#!/usr/bin/env node
// Browser end to end: a real Chromium publishes through whipcast's own pages and hls.js
// plays the result.
//
//   node tests/browser/publish_and_play.mjs <base_url>
//
// For each case: open /publish/?stream=…&signaling=…&codec=… (fake camera + microphone),
// wait for "live"; check /api/streams; open /watch/?stream=…, check video.currentTime
// advances for ~5 s with ≥1 level and no fatal hls.js error; press Stop; check
// /api/streams says "ended" (and the player sees the end).
// The first case also checks the dashboard (/) lists the live stream, switches rendition
// with the player's picker (hls.currentLevel follows, then back to Auto), and saves
// screenshots of the three pages to target/screenshots/{dashboard,publish,watch}.png; after
// the end it publishes the same name again and checks the ended player resumes by itself.
//
// Progress goes to stderr; the last stdout line is a JSON summary. Exit code 0 = every
// check passed, 1 = a check failed, 2 = the browser could not be set up.
// Environment: CHROMIUM (default /usr/bin/chromium), WATCH_SECONDS (default 5).
// Chromium is started by chromium.mjs (loopback only, fresh profile).

import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launchChromium, MEDIA_ARGS, playerDir } from './chromium.mjs';
import { poll, sleep, whipcastApi } from './whipcast.mjs';

const shotDir = join(playerDir, '..', 'target', 'screenshots');
/** The pages are drawn (and screenshotted, for docs/) at this size. */
const VIEWPORT = { width: 1000, height: 750 };
const MIN_SHOT_BYTES = 10 * 1024;

const CASES = [
  { stream: 'b1', signaling: 'whip', codec: 'h264', ui: true },
  { stream: 'b2', signaling: 'ws', codec: 'vp8' },
];
const WATCH_SECONDS = Number(process.env.WATCH_SECONDS || 5);
const MIN_ADVANCE = WATCH_SECONDS * 0.5; // 2 cores, 3 encoders and a browser: allow stalls
const LIVE_TIMEOUT_MS = 30_000;
const MASTER_TIMEOUT_MS = 30_000;
const PLAY_TIMEOUT_MS = 30_000;
const ENDED_TIMEOUT_MS = 15_000;
const SCRIPT_TIMEOUT_MS = 170_000;

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);
const log = (...a) => console.error(`[browser-e2e ${elapsed()}s]`, ...a);

function usage(msg) {
  console.error(`${msg}\nusage: node tests/browser/publish_and_play.mjs <base_url>`);
  process.exit(2);
}

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base)) usage(`base URL must be http://127.0.0.1:PORT, got "${base}"`);

const { streamSummary } = whipcastApi(base);

async function runCase(ctx, c) {
  const res = { ...c, ok: false, failures: [], publish: {}, watch: {}, api: {} };
  const check = (cond, msg) => {
    if (!cond) {
      res.failures.push(msg);
      log(`  FAIL ${c.stream}: ${msg}`);
    }
    return cond;
  };
  const pageErrors = [];
  const pub = await ctx.newPage();
  pub.on('pageerror', (e) => pageErrors.push(`publish: ${e.message}`));
  pub.on('console', (m) => m.type() === 'error' && !/favicon/.test(m.text()) && log(`  publish console: ${m.text()}`));
  let watch = null;
  try {
    // 1. Publish.
    const url = `${base}/publish/?stream=${c.stream}&signaling=${c.signaling}&codec=${c.codec}&height=360`;
    log(`${c.stream}: publishing ${c.codec} over ${c.signaling}: ${url}`);
    const started = Date.now();
    await pub.goto(url);
    await pub.click('#start');
    await pub
      .waitForFunction(() => ['live', 'error', 'ended'].includes(window.whipcastState?.phase), null, { timeout: LIVE_TIMEOUT_MS })
      .catch(() => {});
    let st = await pub.evaluate(() => window.whipcastState);
    res.publish.status = await pub.textContent('#status');
    res.publish.liveAfterMs = Date.now() - started;
    if (!check(st.phase === 'live', `publisher not live: phase=${st.phase} status="${res.publish.status}" ice=${st.iceConnectionState} log=${JSON.stringify(st.log)}`)) {
      res.publish.state = st;
      return res;
    }
    check(res.publish.status === 'live', `#status says "${res.publish.status}", expected "live"`);
    if (c.signaling === 'whip') check(/\/whip\/[^/]+\/[0-9a-f]+$/.test(st.resource || ''), `no WHIP session URL: ${st.resource}`);

    // 2. The HLS master appears; the API lists the stream as live.
    const master = await poll(`${c.stream} master playlist`, MASTER_TIMEOUT_MS, async () => {
      const r = await fetch(`${base}/hls/${c.stream}/master.m3u8`, { cache: 'no-store' });
      const t = r.ok ? await r.text() : '';
      return t.includes('#EXT-X-STREAM-INF') ? t : null;
    });
    res.masterVariants = (master.match(/#EXT-X-STREAM-INF/g) || []).length;
    log(`${c.stream}: master has ${res.masterVariants} variant(s) after ${((Date.now() - started) / 1000).toFixed(1)}s`);
    const live = await streamSummary(c.stream);
    res.api.whileLive = live && { state: live.state, ingest: live.ingest, renditions: live.renditions.length };
    check(live && live.state === 'live', `API state while publishing: ${live && live.state}`);
    check(live && live.ingest.signaling === (c.signaling === 'ws' ? 'websocket' : 'whip'), `API signaling: ${live && live.ingest.signaling}`);
    check(live && live.ingest.video_codec.toUpperCase().includes(c.codec.toUpperCase()), `API video_codec: ${live && live.ingest.video_codec}`);
    check(live && live.ingest.audio === true, 'API says no audio');

    // The browser really sends the requested codec.
    await pub.evaluate(() => window.whipcastPublish.refreshStats());
    st = await pub.evaluate(() => window.whipcastState);
    const v = st.stats && st.stats.video;
    res.publish.negotiated = v && { codec: v.codec, fmtp: v.sdpFmtpLine, encoder: v.encoderImplementation, size: `${v.frameWidth}x${v.frameHeight}`, fps: v.framesPerSecond, framesEncoded: v.framesEncoded };
    res.publish.candidates = { local: st.localCandidates.length, remote: st.remoteCandidates.length };
    res.publish.pair = st.stats && st.stats.pair;
    res.publish.audioCodec = st.stats && st.stats.audio && st.stats.audio.codec;
    check(v && v.codec && v.codec.toLowerCase() === `video/${c.codec}`, `browser sends ${v && v.codec}, expected video/${c.codec}`);

    // A second publisher on the same name (other signalling) is refused with 409, shown
    // on the page, and the first one stays live.
    const other = c.signaling === 'ws' ? 'whip' : 'ws';
    const dup = await ctx.newPage();
    try {
      await dup.goto(`${base}/publish/?stream=${c.stream}&signaling=${other}&codec=${c.codec}&height=180`);
      await dup.click('#start');
      await dup.waitForFunction(() => ['live', 'error'].includes(window.whipcastState?.phase), null, { timeout: 15_000 }).catch(() => {});
      const d = await dup.evaluate(() => window.whipcastState);
      res.conflict = { signaling: other, phase: d.phase, httpStatus: d.httpStatus, status: await dup.textContent('#status') };
      check(d.phase === 'error' && d.httpStatus === 409 && /HTTP 409/.test(res.conflict.status), `second publisher over ${other}: ${JSON.stringify(res.conflict)}`);
    } finally {
      await dup.close();
    }
    check((await pub.evaluate(() => window.whipcastState.phase)) === 'live', 'first publisher not live after the refused second one');

    // 3. Watch.
    watch = await ctx.newPage();
    watch.on('pageerror', (e) => pageErrors.push(`watch: ${e.message}`));
    const wurl = `${base}/watch/?stream=${c.stream}`;
    log(`${c.stream}: watching ${wurl}`);
    const wstart = Date.now();
    await watch.goto(wurl);
    const playing = await watch
      .waitForFunction(() => {
        const vid = document.getElementById('video');
        return window.whipcastState?.phase === 'playing' && vid.currentTime > 0 && vid.readyState >= 3;
      }, null, { timeout: PLAY_TIMEOUT_MS })
      .then(() => true, () => false);
    res.watch.startupMs = Date.now() - wstart;
    const sample = () => watch.evaluate(() => {
      const vid = document.getElementById('video');
      const s = window.whipcastState;
      return {
        t: vid.currentTime, paused: vid.paused, readyState: vid.readyState,
        width: vid.videoWidth, height: vid.videoHeight,
        dropped: vid.getVideoPlaybackQuality ? vid.getVideoPlaybackQuality().droppedVideoFrames : null,
        decoded: vid.getVideoPlaybackQuality ? vid.getVideoPlaybackQuality().totalVideoFrames : null,
        phase: s.phase, engine: s.engine, hlsVersion: s.hlsVersion, levels: s.levels, currentLevel: s.currentLevel,
        fatalErrors: s.fatalErrors, errors: s.errors, latency: s.latency,
      };
    });
    const a = await sample();
    if (check(playing, `player not playing after ${PLAY_TIMEOUT_MS / 1000}s: ${JSON.stringify(a)}`)) {
      await sleep(WATCH_SECONDS * 1000);
    }
    const b = await sample();
    Object.assign(res.watch, {
      engine: b.engine,
      hlsVersion: b.hlsVersion,
      levels: b.levels.map((l) => `${l.width}x${l.height}@${Math.round(l.bitrate / 1000)}k`),
      currentLevel: b.currentLevel,
      videoSize: `${b.width}x${b.height}`,
      currentTimeStart: +a.t.toFixed(3),
      currentTimeEnd: +b.t.toFixed(3),
      advanced: +(b.t - a.t).toFixed(3),
      decodedFrames: b.decoded,
      droppedFrames: b.dropped,
      latency: b.latency && +b.latency.toFixed(2),
      fatalErrors: b.fatalErrors,
      nonFatalErrors: b.errors.filter((e) => !e.fatal).map((e) => e.details),
    });
    check(b.engine === 'hls.js', `engine ${b.engine}, expected hls.js`);
    check(b.levels.length >= 1, `hls.js found ${b.levels.length} levels`);
    check(b.fatalErrors === 0, `hls.js fatal errors: ${JSON.stringify(b.errors.filter((e) => e.fatal))}`);
    check(b.t - a.t >= MIN_ADVANCE, `currentTime advanced ${(b.t - a.t).toFixed(2)}s in ${WATCH_SECONDS}s (need ≥ ${MIN_ADVANCE})`);
    check(b.width > 0 && b.height > 0, `no decoded video size: ${b.width}x${b.height}`);
    log(`${c.stream}: played ${res.watch.advanced}s in ${WATCH_SECONDS}s, levels ${res.watch.levels.join(' ')}, at level ${b.currentLevel} (${res.watch.videoSize}), latency ${res.watch.latency}s`);

    if (c.ui && playing) await checkUi(ctx, c, res, check, pub, watch, b, pageErrors);
    if (c.ui && playing) await checkTsVariant(ctx, c, res, check, pageErrors);

    // 4. Stop: WHIP DELETE / socket close; the API says ended; the player sees the end.
    await pub.click('#stop');
    await pub.waitForFunction(() => window.whipcastState.phase === 'stopped', null, { timeout: 15_000 }).catch(() => {});
    st = await pub.evaluate(() => window.whipcastState);
    res.publish.stopStatus = await pub.textContent('#status');
    res.publish.deleteStatus = st.deleteStatus;
    check(st.phase === 'stopped', `publisher phase after Stop: ${st.phase}`);
    if (c.signaling === 'whip') check(st.deleteStatus === 200, `DELETE -> ${st.deleteStatus}, expected 200`);
    const stopped = Date.now();
    const ended = await poll(`${c.stream} ended in /api/streams`, ENDED_TIMEOUT_MS, async () => {
      const s = await streamSummary(c.stream);
      return s && s.state === 'ended' ? s : null;
    }).catch((e) => {
      check(false, e.message);
      return null;
    });
    res.api.afterStop = ended && { state: ended.state, uptime_s: ended.uptime_s };
    res.api.endedAfterMs = ended ? Date.now() - stopped : null;
    const sawEnd = await watch
      .waitForFunction(() => window.whipcastState.phase === 'ended', null, { timeout: ENDED_TIMEOUT_MS })
      .then(() => true, () => false);
    res.watch.sawEnd = sawEnd;
    check(sawEnd, `player did not reach the end of the broadcast: phase ${await watch.evaluate(() => window.whipcastState.phase)}`);
    if (c.ui && sawEnd) await checkComeback(ctx, c, res, check, watch, pageErrors);
  } catch (e) {
    check(false, `exception: ${e.stack || e.message}`);
  } finally {
    res.pageErrors = pageErrors;
    check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
    if (watch) await watch.close().catch(() => {});
    await pub.close().catch(() => {});
  }
  res.ok = res.failures.length === 0;
  log(`${c.stream}: ${res.ok ? 'PASS' : 'FAIL'}`);
  return res;
}

async function screenshot(page, name, res, check, selectors) {
  const file = join(shotDir, `${name}.png`);
  for (const sel of selectors) {
    check(await page.isVisible(sel), `${name}: ${sel} not visible`);
  }
  await page.screenshot({ path: file, fullPage: true });
  const bytes = statSync(file).size;
  res.screenshots[name] = { file, bytes };
  check(bytes > MIN_SHOT_BYTES, `${name}.png is only ${bytes} bytes (blank page?)`);
}

/** Dashboard lists the stream; the rendition picker drives hls.js; screenshots of the pages. */
/**
 * The MPEG-TS variants (master-ts.m3u8, audio muxed into every segment) in hls.js, which
 * transmuxes TS itself: video advances and the muxed AAC is decoded.
 */
async function checkTsVariant(ctx, c, res, check, pageErrors) {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => pageErrors.push(`watch ts: ${e.message}`));
  try {
    await page.goto(`${base}/watch/?stream=${c.stream}&format=ts`);
    const playing = await page
      .waitForFunction(() => {
        const vid = document.getElementById('video');
        return window.whipcastState?.phase === 'playing' && vid.currentTime > 0 && vid.readyState >= 3;
      }, null, { timeout: PLAY_TIMEOUT_MS })
      .then(() => true, () => false);
    const sample = () => page.evaluate(() => {
      const vid = document.getElementById('video');
      const s = window.whipcastState;
      return {
        t: vid.currentTime, src: s.src, format: s.format, phase: s.phase, fatalErrors: s.fatalErrors,
        width: vid.videoWidth, height: vid.videoHeight, audioBytes: vid.webkitAudioDecodedByteCount,
        codecs: (window.whipcastHls?.levels || []).map((l) => `${l.videoCodec},${l.audioCodec}`),
      };
    });
    const a = await sample();
    if (check(playing, `TS variant not playing after ${PLAY_TIMEOUT_MS / 1000}s: ${JSON.stringify(a)}`)) {
      await sleep(WATCH_SECONDS * 1000);
    }
    const b = await sample();
    res.watchTs = { src: b.src, advanced: +(b.t - a.t).toFixed(2), size: `${b.width}x${b.height}`, audioBytes: b.audioBytes, codecs: b.codecs, fatalErrors: b.fatalErrors };
    check(b.src.endsWith('/master-ts.m3u8') && b.format === 'ts', `TS page loads ${b.src}`);
    check(b.fatalErrors === 0, 'hls.js fatal errors on the TS variant');
    check(b.t - a.t >= MIN_ADVANCE, `TS variant: currentTime advanced ${(b.t - a.t).toFixed(2)}s in ${WATCH_SECONDS}s`);
    check(b.width > 0 && b.height > 0, 'TS variant: no decoded video');
    check(b.audioBytes > a.audioBytes, `TS variant: muxed audio not decoded (${a.audioBytes} -> ${b.audioBytes} bytes)`);
    check(b.codecs.length > 0 && b.codecs.every((x) => /^avc1\..*,mp4a\.40\.2$/.test(x)), `TS levels: ${b.codecs}`);
    log(`${c.stream}: TS variant played ${res.watchTs.advanced}s, ${res.watchTs.size}, audio ${b.audioBytes} bytes decoded`);
  } finally {
    await page.close().catch(() => {});
  }
}

async function checkUi(ctx, c, res, check, pub, watch, sample, pageErrors) {
  const t = Date.now();
  res.screenshots = {};
  mkdirSync(shotDir, { recursive: true });
  // Dashboard.
  const dash = await ctx.newPage();
  dash.on('pageerror', (e) => pageErrors.push(`dashboard: ${e.message}`));
  try {
    await dash.goto(`${base}/`);
    const card = `#streams [data-stream="${c.stream}"]`;
    const listed = await dash.waitForSelector(card, { timeout: 10_000 }).then(() => true, () => false);
    const text = listed ? await dash.textContent(card) : '';
    res.dashboard = { listed, text: text.slice(0, 200) };
    check(listed && text.includes(c.stream), `dashboard does not list ${c.stream} as live: ${await dash.textContent('main')}`);
    check(/whip/i.test(text) && /h264/i.test(text), `dashboard card lacks ingest signalling/codec: ${text}`);
    // Give the muted preview a moment to show a frame (not required).
    res.dashboard.previewPlaying = await dash
      .waitForFunction((sel) => { const v = document.querySelector(`${sel} video`); return v && v.readyState >= 2 && v.currentTime > 0; }, card, { timeout: 8_000 })
      .then(() => true, () => false);
    await screenshot(dash, 'dashboard', res, check, ['h1', card]);
  } finally {
    await dash.close().catch(() => {});
  }
  // Publisher page (live).
  await pub.evaluate(() => window.whipcastPublish.refreshStats());
  res.publish.live = await pub.evaluate(() => window.whipcastState.live);
  check(res.publish.live && res.publish.live.width > 0, `publisher stats not shown: ${JSON.stringify(res.publish.live)}`);
  await screenshot(pub, 'publish', res, check, ['#status', '#stats', '#preview', '#share-url']);

  // Rendition picker: pin a level other than the current one, then back to Auto.
  const n = sample.levels.length;
  const target = n > 1 ? (sample.currentLevel === n - 1 ? 0 : n - 1) : 0;
  await watch.selectOption('#level', String(target));
  const pinned = await watch
    .waitForFunction((i) => { const h = window.whipcastHls; return h && h.currentLevel === i && !h.autoLevelEnabled; }, target, { timeout: 12_000 })
    .then(() => true, () => false);
  const after = await watch.evaluate(() => ({
    currentLevel: window.whipcastHls.currentLevel, nextLevel: window.whipcastHls.nextLevel, loadLevel: window.whipcastHls.loadLevel,
    auto: window.whipcastHls.autoLevelEnabled, shown: document.getElementById('rendition').textContent,
    latency: document.getElementById('latency').textContent, selected: window.whipcastState.selectedLevel,
  }));
  res.watch.picker = { target, levels: n, pinned, after };
  check(pinned, `picker: hls.currentLevel did not follow level ${target}: ${JSON.stringify(after)}`);
  check(after.nextLevel === target || after.nextLevel === -1, `picker: hls.nextLevel ${after.nextLevel}, expected ${target}`);
  check(after.loadLevel === target, `picker: hls.loadLevel ${after.loadLevel}, expected ${target}`);
  await watch.waitForFunction(() => window.whipcastState.phase === 'playing', null, { timeout: 8_000 }).catch(() => {});
  await screenshot(watch, 'watch', res, check, ['#video', '#status', '#latency', '#level']);
  await watch.selectOption('#level', '-1');
  const auto = await watch.evaluate(() => window.whipcastHls.autoLevelEnabled);
  res.watch.picker.backToAuto = auto;
  check(auto, 'picker: Auto did not re-enable hls.js ABR');
  res.uiSeconds = +((Date.now() - t) / 1000).toFixed(1);
  log(`${c.stream}: dashboard listed=${res.dashboard.listed} preview=${res.dashboard.previewPlaying}; picker level ${target}/${n} pinned=${pinned}; screenshots ${Object.entries(res.screenshots).map(([k, v]) => `${k}=${v.bytes}B`).join(' ')} (${res.uiSeconds}s)`);
}

/** The ended player picks the stream up again when the same name is published anew. */
async function checkComeback(ctx, c, res, check, watch, pageErrors) {
  const t = Date.now();
  const again = await ctx.newPage();
  again.on('pageerror', (e) => pageErrors.push(`publish (again): ${e.message}`));
  try {
    await again.goto(`${base}/publish/?stream=${c.stream}&signaling=${c.signaling}&codec=${c.codec}&height=180`);
    await again.click('#start');
    const live = await again.waitForFunction(() => window.whipcastState?.phase === 'live', null, { timeout: LIVE_TIMEOUT_MS }).then(() => true, () => false);
    const back = live && await watch
      .waitForFunction(() => { const s = window.whipcastState; return s.recoveries >= 1 && s.phase === 'playing'; }, null, { timeout: 20_000 })
      .then(() => true, () => false);
    res.watch.comeback = { republished: live, playing: !!back, seconds: +((Date.now() - t) / 1000).toFixed(1), state: await watch.evaluate(() => ({ phase: window.whipcastState.phase, recoveries: window.whipcastState.recoveries, status: window.whipcastState.status })) };
    check(live && back, `player did not recover when ${c.stream} came back: ${JSON.stringify(res.watch.comeback)}`);
    await again.click('#stop');
    await again.waitForFunction(() => window.whipcastState.phase === 'stopped', null, { timeout: 15_000 }).catch(() => {});
    await poll(`${c.stream} ended again`, ENDED_TIMEOUT_MS, async () => (await streamSummary(c.stream))?.state === 'ended').catch((e) => check(false, e.message));
    log(`${c.stream}: player came back after republish: ${JSON.stringify(res.watch.comeback)}`);
  } finally {
    await again.close().catch(() => {});
  }
}

async function main() {
  const summary = { ok: false, base, cases: [] };
  const watchdog = setTimeout(() => {
    summary.failures = [`script timed out after ${SCRIPT_TIMEOUT_MS / 1000}s`];
    console.log(JSON.stringify(summary));
    process.exit(1);
  }, SCRIPT_TIMEOUT_MS);
  const chrome = await launchChromium({
    args: MEDIA_ARGS,
    contextOptions: { viewport: VIEWPORT, permissions: ['camera', 'microphone'] },
    summary,
  });
  summary.browser = `Chromium ${chrome.version}`;
  log(`launched ${summary.browser}`);
  try {
    for (const c of CASES) summary.cases.push(await runCase(chrome.context, c));
  } finally {
    await chrome.close();
  }
  clearTimeout(watchdog);
  summary.ok = summary.cases.length === CASES.length && summary.cases.every((c) => c.ok);
  summary.seconds = +((Date.now() - t0) / 1000).toFixed(1);
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  console.log(JSON.stringify({ ok: false, base, failures: [`crashed: ${e.message}`] }));
  process.exit(1);
});
