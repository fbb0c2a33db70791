#!/usr/bin/env node
// The publisher page's other paths, in a real Chromium, against a whipcast that requires a
// bearer token:
//
//   node tests/browser/publish_paths.mjs <base_url> <token>
//
// 1. permission denied: a Chromium that refuses camera, microphone and screen capture
//    (--deny-permission-prompts, --use-fake-ui-for-media-stream=deny) shows the camera
//    message, and the screen-share one;
// 2. network down: the page, served by a throw-away static server that is then shut down,
//    says so for WHIP and for WebSocket;
// 3. 401: a wrong token typed into the page's token field (WHIP and WebSocket);
// 4. keyboard + VP9 + bitrate cap: the form is filled and started by keyboard alone (Tab to
//    Start, Enter), VP9 goes out and plays in /watch/ as H.264 HLS; a cap typed into the
//    page brings getStats()'s outgoing bitrate down to it;
// 5. screen share (getDisplayMedia) over WebSocket publishes and plays; then the page's
//    connection to the server (through a TCP proxy) is cut: the page says the network is
//    down and the stream ends;
// and accessibility on the three pages: axe-core (WCAG 2.x A/AA incl. contrast, light and
// dark), a label for every form control, every control reachable with Tab.
//
// Progress goes to stderr; the last stdout line is a JSON summary. Exit code 0 = every
// check passed, 1 = a check failed, 2 = the browser could not be set up.
import { spawn } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { launchChromium, MEDIA_ARGS, playerDir } from './chromium.mjs';
import { poll, sleep, whipcastApi } from './whipcast.mjs';

const LIVE_TIMEOUT_MS = 30_000;
const MASTER_TIMEOUT_MS = 30_000;
const PLAY_TIMEOUT_MS = 30_000;
const ERROR_TIMEOUT_MS = 15_000;
const ENDED_TIMEOUT_MS = 15_000;
const WATCH_SECONDS = 4;
const SCRIPT_TIMEOUT_MS = 200_000;
/** The cap typed into the page, kbit/s, and how far above it the measured rate may go. */
const CAP_KBPS = 100; // the field's min and step
const CAP_TOLERANCE = 1.2;
const AXE = join(playerDir, 'node_modules', 'axe-core', 'axe.min.js');

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);
const log = (...a) => console.error(`[publish-paths ${elapsed()}s]`, ...a);

const base = (process.argv[2] || '').replace(/\/+$/, '');
const token = process.argv[3] || '';
if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base) || !token) {
  console.error(`usage: node tests/browser/publish_paths.mjs http://127.0.0.1:PORT TOKEN (got "${base}" "${token}")`);
  process.exit(2);
}
if (!existsSync(AXE)) {
  console.error('axe-core not installed in player/: run deploy/install-browser-deps.sh');
  console.log(JSON.stringify({ ok: false, setupError: 'axe-core missing' }));
  process.exit(2);
}

const summary = { ok: false, base, failures: [] };
const check = (cond, msg) => {
  if (!cond) {
    summary.failures.push(msg);
    log(`FAIL: ${msg}`);
  }
  return cond;
};

const { streamSummary, liveSummary } = whipcastApi(base);

/** Pages opened in `context`, with uncaught errors collected. */
function opener(context, pageErrors) {
  return async (label) => {
    const page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(`${label}: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && !/favicon|Failed to load resource/.test(m.text()) && log(`  ${label} console: ${m.text()}`));
    return page;
  };
}

/** Waits until the publisher page reaches one of `phases`; returns window.whipcastState. */
async function publisherPhase(page, phases, timeoutMs) {
  await page.waitForFunction((ps) => ps.includes(window.whipcastState?.phase), phases, { timeout: timeoutMs }).catch(() => {});
  return page.evaluate(() => window.whipcastState);
}

/** The publisher page's state after a failure: what it shows and whether Start works again. */
async function failure(page) {
  const st = await publisherPhase(page, ['error', 'live'], ERROR_TIMEOUT_MS);
  return {
    phase: st.phase,
    httpStatus: st.httpStatus,
    status: await page.textContent('#status'),
    startEnabled: await page.isEnabled('#start'),
    stopDisabled: await page.isDisabled('#stop'),
  };
}

// ---- accessibility ---------------------------------------------------------------------

/** axe-core's WCAG 2.x A/AA rules (contrast included) in `page`; the violations, short. */
async function axe(page) {
  if (!(await page.evaluate(() => !!window.axe))) await page.addScriptTag({ path: AXE });
  const r = await page.evaluate(() => window.axe.run(document, {
    runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
    resultTypes: ['violations'],
  }));
  return r.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    nodes: v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\s+/g, ' ').slice(0, 200)}`),
  }));
}

/** Form controls without an accessible label (own <label>, aria-label or aria-labelledby). */
function unlabelled(page) {
  return page.evaluate(() => [...document.querySelectorAll('input, select, textarea, button')]
    .filter((e) => e.type !== 'hidden' && e.getClientRects().length > 0)
    .filter((e) => {
      if (e.tagName === 'BUTTON') return !e.textContent.trim() && !e.getAttribute('aria-label');
      const byLabel = [...(e.labels || [])].some((l) => l.textContent.trim());
      const byAria = e.getAttribute('aria-label') || (e.getAttribute('aria-labelledby') || '').split(/\s+/).some((id) => document.getElementById(id)?.textContent.trim());
      return !byLabel && !byAria;
    })
    .map((e) => e.id || e.outerHTML.slice(0, 80)));
}

/**
 * Presses Tab from the top of the page until every visible, enabled control has had the
 * focus (or too many presses); returns those never reached and whether focus is visible.
 */
async function tabWalk(page) {
  const n = await page.evaluate(() => {
    const els = [...document.querySelectorAll('a[href], button, input, select, textarea, video[controls], [tabindex]')]
      .filter((e) => !e.disabled && e.tabIndex >= 0 && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden');
    els.forEach((e, i) => { e.dataset.kbd = String(i); });
    window.__kbd = { names: els.map((e) => e.id ? `#${e.id}` : `${e.tagName.toLowerCase()} "${(e.textContent || e.getAttribute('aria-label') || '').trim().slice(0, 30)}"`), seen: [], unfocused: [] };
    document.activeElement?.blur?.();
    window.scrollTo(0, 0);
    return els.length;
  });
  for (let i = 0; i < n * 2 + 6; i++) {
    await page.keyboard.press('Tab');
    const done = await page.evaluate(() => {
      const a = document.activeElement;
      const k = window.__kbd;
      if (a && a.dataset.kbd !== undefined && !k.seen.includes(a.dataset.kbd)) {
        k.seen.push(a.dataset.kbd);
        // :focus-visible must draw something (an outline here; or the browser's own).
        const s = getComputedStyle(a);
        if (a.matches(':focus-visible') && s.outlineStyle === 'none' && s.boxShadow === 'none') k.unfocused.push(k.names[+a.dataset.kbd]);
      }
      return k.seen.length === k.names.length;
    });
    if (done) break;
  }
  return page.evaluate(() => {
    const k = window.__kbd;
    return { controls: k.names.length, missed: k.names.filter((_, i) => !k.seen.includes(String(i))), noFocusIndicator: k.unfocused };
  });
}

/** Known answer: the checks above do flag a grey-on-white text and an unlabelled field. */
async function accessibilitySelfCheck(open) {
  const page = await open('accessibility self-check');
  try {
    await page.setContent('<!doctype html><html lang="en"><title>t</title><main><p style="color:#b0b0b0;background:#fff">faint text</p><input id="bare"></main></html>');
    const ids = (await axe(page)).map((v) => v.id);
    const bare = await unlabelled(page);
    summary.accessibilitySelfCheck = { axe: ids, unlabelled: bare };
    check(ids.includes('color-contrast') && ids.includes('label') && bare.includes('bare'), `accessibility checks miss known faults: ${JSON.stringify(summary.accessibilitySelfCheck)}`);
  } finally {
    await page.close();
  }
}

/** All accessibility checks on `page`, light and dark colour schemes; records `name`. */
async function accessibility(page, name) {
  const res = { unlabelled: await unlabelled(page), keyboard: await tabWalk(page) };
  res.axe = await axe(page);
  await page.emulateMedia({ colorScheme: 'dark' });
  res.axeDark = await axe(page);
  await page.emulateMedia({ colorScheme: 'light' });
  (summary.accessibility ||= {})[name] = res;
  check(res.unlabelled.length === 0, `${name}: form controls without a label: ${res.unlabelled.join(', ')}`);
  check(res.keyboard.controls > 0 && res.keyboard.missed.length === 0, `${name}: not reachable with Tab: ${res.keyboard.missed.join(', ')} (of ${res.keyboard.controls})`);
  check(res.keyboard.noFocusIndicator.length === 0, `${name}: no visible focus on ${res.keyboard.noFocusIndicator.join(', ')}`);
  check(res.axe.length === 0, `${name}: axe (light): ${JSON.stringify(res.axe)}`);
  check(res.axeDark.length === 0, `${name}: axe (dark): ${JSON.stringify(res.axeDark)}`);
  log(`${name}: ${res.keyboard.controls} controls reached by Tab, ${res.unlabelled.length} unlabelled, axe ${res.axe.length} + ${res.axeDark.length} (dark) violations`);
}

// ---- 1. permission denied ----------------------------------------------------------------

async function permissionDenied() {
  // Headless Chromium 156: --deny-permission-prompts refuses getUserMedia, but
  // getDisplayMedia opens its picker regardless and would wait forever; Chromium's fake media
  // UI answering "deny" refuses both at once, as a person pressing Block would.
  const chrome = await launchChromium({ args: ['--use-fake-device-for-media-stream', '--deny-permission-prompts', '--use-fake-ui-for-media-stream=deny'], summary });
  const pageErrors = [];
  const res = {};
  summary.permissionDenied = res;
  try {
    const page = await opener(chrome.context, pageErrors)('publish (denied)');
    await page.goto(`${base}/publish/?stream=denied1&token=${encodeURIComponent(token)}`);
    await page.click('#start');
    res.camera = await failure(page);
    check(res.camera.phase === 'error' && /permission denied/i.test(res.camera.status) && /camera and microphone/.test(res.camera.status) && res.camera.startEnabled,
      `camera refused: ${JSON.stringify(res.camera)}`);
    await page.selectOption('#source', 'screen');
    await page.click('#start');
    res.screen = await failure(page);
    check(res.screen.phase === 'error' && /permission denied/i.test(res.screen.status) && /screen sharing/.test(res.screen.status),
      `screen share refused: ${JSON.stringify(res.screen)}`);
    res.api = await streamSummary('denied1');
    check(res.api === null, `a refused page published something: ${JSON.stringify(res.api)}`);
    log(`permission denied: "${res.camera.status}" / "${res.screen.status}"`);
  } finally {
    await chrome.close();
  }
  check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
}

// ---- 2. network down ---------------------------------------------------------------------

/** Serves player/ as whipcast does, on a free loopback port, until closed. */
function staticServer() {
  const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };
  const srv = http.createServer((req, res) => {
    let p = normalize(join(playerDir, decodeURIComponent(new URL(req.url, 'http://x').pathname)));
    if (p.startsWith(playerDir) && existsSync(p) && statSync(p).isDirectory()) p = join(p, 'index.html');
    if (!p.startsWith(playerDir) || !existsSync(p)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': types[extname(p)] || 'application/octet-stream', 'Cache-Control': 'no-store' });
    res.end(readFileSync(p));
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => resolve(srv)));
}

/** A TCP proxy on a free loopback port to `target` (http://127.0.0.1:PORT); close() cuts it. */
function tcpProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const srv = net.createServer((client) => {
    const upstream = net.connect(Number(port), hostname);
    const end = () => {
      for (const s of [client, upstream]) {
        s.destroy();
        sockets.delete(s);
      }
    };
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', end);
      s.on('close', end);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return new Promise((resolve) => srv.listen(0, '127.0.0.1', () => {
    let closed = null;
    resolve({
      base: `http://127.0.0.1:${srv.address().port}`,
      close() {
        closed ||= new Promise((r) => {
          for (const s of sockets) s.destroy();
          srv.close(() => r());
        });
        return closed;
      },
    });
  }));
}

/** A free TCP port on 127.0.0.1. */
async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * WHIP, live, then the server dies (its own whipcast process, SIGKILL): no signalling
 * channel tells the page, the media path just goes quiet. The page must say "network down"
 * within seconds (it asks the server once ICE is disconnected), not after ICE's 30 s.
 */
async function whipServerLost(open) {
  const res = {};
  summary.whipServerLost = res;
  const bin = process.env.WHIPCAST_BIN;
  if (!check(bin && existsSync(bin), `WHIPCAST_BIN not set or missing: ${bin}`)) return;
  const port = await freePort();
  const proc = spawn(bin, ['--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  const wbase = `http://127.0.0.1:${port}`;
  const page = await open('publish (server lost)');
  try {
    await poll('the second whipcast', 20_000, async () => (await fetch(`${wbase}/healthz`))?.ok);
    // A camera link starts publishing by itself.
    await page.goto(`${wbase}/publish/?stream=lost1&signaling=whip&codec=h264`);
    await page.click('#start');
    const live = await publisherPhase(page, ['live', 'error'], LIVE_TIMEOUT_MS);
    if (!check(live.phase === 'live', `not live: ${live.phase} ${live.status}; whipcast: ${stderr}`)) return;
    const killed = Date.now();
    proc.kill('SIGKILL');
    const st = await publisherPhase(page, ['error'], 25_000);
    res.seconds = +((Date.now() - killed) / 1000).toFixed(1);
    res.phase = st.phase;
    res.status = await page.textContent('#status');
    res.startEnabled = await page.isEnabled('#start');
    check(st.phase === 'error' && /network down: lost the connection/.test(res.status) && res.startEnabled,
      `server killed while live: ${JSON.stringify(res)}`);
    // ICE alone would take ~30 s; the probe answers within seconds.
    check(res.seconds < 15, `"network down" took ${res.seconds}s after the server died`);
    log(`WHIP server lost: "${res.status}" after ${res.seconds}s`);
  } finally {
    proc.kill('SIGKILL');
    await page.close().catch(() => {});
  }
}

async function networkDown(open) {
  const res = {};
  summary.networkDown = res;
  const srv = await staticServer();
  const dead = `http://127.0.0.1:${srv.address().port}`;
  const page = await open('publish (network down)');
  try {
    await page.goto(`${dead}/publish/?stream=down1&autostart=0&token=${encodeURIComponent(token)}`);
    await page.waitForFunction(() => window.whipcastState?.phase === 'idle');
    // The server goes away; the page stays.
    srv.closeAllConnections();
    await new Promise((r) => srv.close(r));
    for (const signaling of ['whip', 'ws']) {
      await page.selectOption('#signaling', signaling);
      await page.click('#start');
      res[signaling] = await failure(page);
      check(res[signaling].phase === 'error' && /network down/i.test(res[signaling].status) && res[signaling].httpStatus === null && res[signaling].startEnabled,
        `${signaling} with the server gone: ${JSON.stringify(res[signaling])}`);
      log(`network down (${signaling}): "${res[signaling].status}"`);
    }
  } finally {
    await page.close();
  }
}

// ---- 3. 401 ------------------------------------------------------------------------------

async function wrongToken(open) {
  const res = {};
  summary.wrongToken = res;
  const page = await open('publish (401)');
  try {
    await page.goto(`${base}/publish/?stream=auth1&autostart=0`);
    await page.click('#token');
    await page.keyboard.type('not-the-token');
    for (const signaling of ['whip', 'ws']) {
      await page.selectOption('#signaling', signaling);
      await page.click('#start');
      res[signaling] = await failure(page);
      check(res[signaling].phase === 'error' && res[signaling].httpStatus === 401 && /HTTP 401/.test(res[signaling].status) && /bearer token/i.test(res[signaling].status),
        `${signaling} with a wrong token: ${JSON.stringify(res[signaling])}`);
      log(`wrong token (${signaling}): "${res[signaling].status}"`);
    }
    // The failure state is accessible too (the message is in a live region, Start works).
    await accessibility(page, 'publish (error)');
    res.api = await streamSummary('auth1');
    check(res.api === null, `a wrong token published something: ${JSON.stringify(res.api)}`);
  } finally {
    await page.close();
  }
}

// ---- publish, watch, stop ----------------------------------------------------------------

async function waitLive(page, name, res) {
  const st = await publisherPhase(page, ['live', 'error', 'ended'], LIVE_TIMEOUT_MS);
  res.status = await page.textContent('#status');
  return check(st.phase === 'live', `${name}: publisher not live: phase=${st.phase} status="${res.status}" log=${JSON.stringify(st.log.slice(-8))}`);
}

/** The browser's outgoing video bitrate over `ms`, kbit/s, from two getStats() samples. */
async function sentKbps(page, ms) {
  const sample = async () => {
    await page.evaluate(() => window.whipcastPublish.refreshStats());
    return page.evaluate(() => ({ at: performance.now(), bytes: window.whipcastState.stats?.video?.bytesSent ?? 0 }));
  };
  const a = await sample();
  await sleep(ms);
  const b = await sample();
  return Math.round(((b.bytes - a.bytes) * 8) / (b.at - a.at));
}

/** Opens /watch/, checks hls.js plays H.264 for WATCH_SECONDS; the watch page stays open. */
async function watchPlays(open, name, res) {
  const master = await poll(`${name} master playlist`, MASTER_TIMEOUT_MS, async () => {
    const r = await fetch(`${base}/hls/${name}/master.m3u8`, { cache: 'no-store' });
    const t = r.ok ? await r.text() : '';
    return t.includes('#EXT-X-STREAM-INF') ? t : null;
  });
  res.masterCodecs = [...new Set([...master.matchAll(/CODECS="([^"]*)"/g)].map((m) => m[1]))];
  check(res.masterCodecs.length > 0 && res.masterCodecs.every((c) => /^avc1\.[0-9a-fA-F]{6},mp4a\.40\.2$/.test(c)), `${name}: master CODECS ${JSON.stringify(res.masterCodecs)}, expected H.264 + AAC`);
  const watch = await open(`watch ${name}`);
  await watch.goto(`${base}/watch/?stream=${name}`);
  const playing = await watch
    .waitForFunction(() => {
      const v = document.getElementById('video');
      return window.whipcastState?.phase === 'playing' && v.currentTime > 0 && v.readyState >= 3;
    }, null, { timeout: PLAY_TIMEOUT_MS })
    .then(() => true, () => false);
  const sample = () => watch.evaluate(() => {
    const v = document.getElementById('video');
    return {
      t: v.currentTime, width: v.videoWidth, height: v.videoHeight, phase: window.whipcastState.phase,
      fatalErrors: window.whipcastState.fatalErrors,
      codecs: (window.whipcastHls?.levels || []).map((l) => l.videoCodec),
    };
  });
  const a = await sample();
  if (check(playing, `${name}: player not playing after ${PLAY_TIMEOUT_MS / 1000}s: ${JSON.stringify(a)}`)) await sleep(WATCH_SECONDS * 1000);
  const b = await sample();
  res.watch = { advanced: +(b.t - a.t).toFixed(2), size: `${b.width}x${b.height}`, levelCodecs: b.codecs, fatalErrors: b.fatalErrors };
  check(b.t - a.t >= WATCH_SECONDS * 0.5, `${name}: currentTime advanced ${(b.t - a.t).toFixed(2)}s in ${WATCH_SECONDS}s`);
  check(b.fatalErrors === 0, `${name}: hls.js fatal errors`);
  check(b.codecs.length > 0 && b.codecs.every((c) => /^avc1\./.test(c)), `${name}: hls.js levels are not H.264: ${b.codecs}`);
  check(b.width > 0 && b.height > 0, `${name}: no decoded video`);
  log(`${name}: plays ${res.watch.advanced}s in ${WATCH_SECONDS}s as ${res.masterCodecs.join(' ')}, ${res.watch.size}`);
  return watch;
}

async function stopAndEnd(page, name, res) {
  await page.click('#stop');
  const st = await publisherPhase(page, ['stopped'], 15_000);
  check(st.phase === 'stopped', `${name}: phase after Stop: ${st.phase}`);
  const ended = await poll(`${name} ended`, ENDED_TIMEOUT_MS, async () => (await streamSummary(name))?.state === 'ended').catch((e) => check(false, e.message));
  res.ended = !!ended;
}

// ---- 4. keyboard, VP9, bitrate cap, accessibility of the live pages --------------------------

async function keyboardVp9BitrateCap(open) {
  const name = 'vp9kbd';
  const res = { stream: name };
  summary.vp9 = res;
  const page = await open('publish vp9');
  let watch = null;
  try {
    await page.goto(`${base}/publish/?autostart=0`);
    await accessibility(page, 'publish (idle)');
    // Keyboard only: the stream name, the codec, the token, then Tab to Start and Enter.
    await page.focus('#stream');
    await page.keyboard.press('Control+A');
    await page.keyboard.type(name);
    const keys = ['#stream'];
    const order = [];
    for (let i = 0; i < 12; i++) {
      const id = await page.evaluate(() => document.activeElement?.id);
      order.push(id);
      if (id === 'codec') await page.keyboard.press('End'); // VP9, the last option
      if (id === 'token') await page.keyboard.type(token);
      if (id === 'start') break;
      await page.keyboard.press('Tab');
      keys.push('Tab');
    }
    res.tabOrder = order;
    check(order.at(-1) === 'start', `Tab from the stream field never reached Start: ${order.join(' → ')}`);
    check(JSON.stringify(order) === JSON.stringify(['stream', 'source', 'videoDevice', 'audioDevice', 'signaling', 'codec', 'simulcast', 'bitrate', 'token', 'start']),
      `tab order of the form: ${order.join(' → ')}`);
    await page.keyboard.press('Enter');
    if (!(await waitLive(page, name, res))) return;
    let st = await page.evaluate(() => window.whipcastState);
    check(st.codec === 'vp9' && st.stream === name, `keyboard-filled form: stream ${st.stream} codec ${st.codec}`);

    // VP9 out of the browser, VP9 into whipcast.
    await page.evaluate(() => window.whipcastPublish.refreshStats());
    st = await page.evaluate(() => window.whipcastState);
    res.sent = st.stats?.video?.codec;
    check(res.sent?.toLowerCase() === 'video/vp9', `browser sends ${res.sent}, expected video/VP9`);
    const api = await liveSummary(name);
    res.apiCodec = api?.ingest?.video_codec;
    check(/vp9/i.test(res.apiCodec || ''), `API video_codec ${res.apiCodec}, expected VP9`);

    // Bitrate cap: measured without a cap first, so the cap has something to bring down
    // (the browser starts near 300 kbit/s and ramps up; up to 12 s for it to reach 2x).
    res.uncappedSamples = [];
    for (let i = 0; i < 6 && !(res.uncappedSamples.at(-1) >= CAP_KBPS * 2); i++) res.uncappedSamples.push(await sentKbps(page, 2000));
    res.uncappedKbps = Math.max(...res.uncappedSamples);
    await page.fill('#bitrate', String(CAP_KBPS));
    await page.keyboard.press('Tab'); // commits the field: `change` applies it to the sender
    await page.waitForFunction((cap) => window.whipcastState.senderMaxBitrate === cap * 1000, CAP_KBPS, { timeout: 5000 }).catch(() => {});
    res.senderMaxBitrate = await page.evaluate(() => window.whipcastState.senderMaxBitrate);
    check(res.senderMaxBitrate === CAP_KBPS * 1000, `sender maxBitrate ${res.senderMaxBitrate}, expected ${CAP_KBPS * 1000}`);
    await sleep(2500); // the encoder follows within a couple of frames; a margin for 2 cores
    res.cappedKbps = await sentKbps(page, 4000);
    res.shown = await page.textContent('#st-bitrate');
    check(res.uncappedKbps >= CAP_KBPS * 1.5, `uncapped bitrate ${res.uncappedKbps} kbit/s is too close to the cap ${CAP_KBPS} for the cap to be tested`);
    check(res.cappedKbps > 0 && res.cappedKbps <= CAP_KBPS * CAP_TOLERANCE, `capped at ${CAP_KBPS} kbit/s the browser sends ${res.cappedKbps} kbit/s`);
    const shownKbps = Number((res.shown.match(/^(\d+) kbit\/s/) || [])[1]);
    check(shownKbps > 0 && res.shown.includes(`(cap ${CAP_KBPS})`), `page shows "${res.shown}", expected the current bitrate and the cap`);
    log(`${name}: VP9 sent; ${res.uncappedKbps} kbit/s uncapped, ${res.cappedKbps} kbit/s under a ${CAP_KBPS} kbit/s cap`);

    watch = await watchPlays(open, name, res);
    await accessibility(page, 'publish (live)');
    await accessibility(watch, 'watch (playing)');
    const dash = await open('dashboard');
    try {
      await dash.goto(`${base}/`);
      await dash.waitForSelector(`#streams [data-stream="${name}"]`, { timeout: 10_000 }).catch(() => check(false, `dashboard does not list ${name}`));
      await accessibility(dash, 'dashboard (live)');
    } finally {
      await dash.close();
    }
    await stopAndEnd(page, name, res);
  } finally {
    if (watch) await watch.close().catch(() => {});
    await page.close().catch(() => {});
  }
}

// ---- 5. screen share ---------------------------------------------------------------------

async function screenShare(open) {
  const name = 'screen1';
  const res = { stream: name };
  summary.screen = res;
  const page = await open('publish screen');
  let watch = null;
  let proxy = null;
  try {
    // The page comes through a TCP proxy, so its WebSocket can be cut below (media goes
    // straight to whipcast's ICE candidates).
    proxy = await tcpProxy(base);
    // getDisplayMedia needs a user gesture: a screen-share link waits for Start.
    await page.goto(`${proxy.base}/publish/?stream=${name}&source=screen&signaling=ws&codec=h264&token=${encodeURIComponent(token)}`);
    await sleep(500);
    res.waiting = { phase: await page.evaluate(() => window.whipcastState.phase), status: await page.textContent('#status') };
    check(res.waiting.phase === 'idle' && /press Start/.test(res.waiting.status), `screen-share link did not wait for Start: ${JSON.stringify(res.waiting)}`);
    await page.click('#start');
    if (!(await waitLive(page, name, res))) return;
    const st = await page.evaluate(() => window.whipcastState);
    res.track = st.videoTrack;
    check(st.source === 'screen' && st.videoTrack && st.videoTrack.displaySurface === 'monitor', `not a screen capture: ${JSON.stringify(st.videoTrack)}`);
    const api = await liveSummary(name);
    res.api = api && { state: api.state, signaling: api.ingest.signaling, codec: api.ingest.video_codec, audio: api.ingest.audio };
    check(api && api.state === 'live' && api.ingest.signaling === 'websocket', `API: ${JSON.stringify(res.api)}`);
    watch = await watchPlays(open, name, res);
    log(`${name}: ${JSON.stringify(res.track)} published over WebSocket and played`);

    // The connection to the server drops while live: the page says so, the stream ends.
    await proxy.close();
    res.dropped = await failure(page);
    check(res.dropped.phase === 'error' && /network down: lost the connection/.test(res.dropped.status) && res.dropped.startEnabled,
      `WebSocket cut while live: ${JSON.stringify(res.dropped)}`);
    const ended = await poll(`${name} ended`, ENDED_TIMEOUT_MS, async () => (await streamSummary(name))?.state === 'ended').catch((e) => check(false, e.message));
    res.ended = !!ended;
    log(`${name}: connection cut while live: "${res.dropped.status}"`);
  } finally {
    if (proxy) await proxy.close();
    if (watch) await watch.close().catch(() => {});
    await page.close().catch(() => {});
  }
}

async function main() {
  const watchdog = setTimeout(() => {
    summary.failures.push(`script timed out after ${SCRIPT_TIMEOUT_MS / 1000}s`);
    console.log(JSON.stringify(summary));
    process.exit(1);
  }, SCRIPT_TIMEOUT_MS);
  const steps = [];
  const step = async (name, fn) => {
    const t = Date.now();
    try {
      await fn();
    } catch (e) {
      check(false, `${name}: exception: ${e.stack || e.message}`);
    }
    steps.push({ name, seconds: +((Date.now() - t) / 1000).toFixed(1) });
  };
  await step('permission denied', permissionDenied);
  const chrome = await launchChromium({ args: MEDIA_ARGS, contextOptions: { viewport: { width: 1000, height: 750 } }, summary });
  summary.browser = `Chromium ${chrome.version}`;
  log(`launched ${summary.browser}`);
  const pageErrors = [];
  const open = opener(chrome.context, pageErrors);
  try {
    await step('accessibility self-check', () => accessibilitySelfCheck(open));
    await step('network down', () => networkDown(open));
    await step('WHIP server lost while live', () => whipServerLost(open));
    await step('wrong token', () => wrongToken(open));
    await step('keyboard + VP9 + bitrate cap', () => keyboardVp9BitrateCap(open));
    await step('screen share', () => screenShare(open));
  } finally {
    await chrome.close();
  }
  check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
  clearTimeout(watchdog);
  summary.steps = steps;
  summary.ok = summary.failures.length === 0;
  summary.seconds = +((Date.now() - t0) / 1000).toFixed(1);
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  console.log(JSON.stringify({ ...summary, ok: false, failures: [...summary.failures, `crashed: ${e.message}`] }));
  process.exit(1);
});
