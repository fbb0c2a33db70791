#!/usr/bin/env node
// The bundled publisher page, in a real Chromium, on a full node of a cluster:
//
//   node tests/browser/cluster_redirect.mjs <full_node_base_url> <other_node_base_url>
//
// For WHIP (the 307 that fetch follows by itself) and WebSocket (the `redirect` message the
// page follows), the page is opened on the full node, publishes, and must end up live on
// the other node: its state lists the redirect, the other node's /api/streams has the
// stream live, and Stop ends it there (WHIP DELETE to the session URL the other node gave).
//
// Progress goes to stderr; the last stdout line is a JSON summary. Exit code 0 = every
// check passed, 1 = a check failed, 2 = the browser could not be set up.
import { launchChromium, MEDIA_ARGS } from './chromium.mjs';
import { whipcastApi } from './whipcast.mjs';

const LIVE_TIMEOUT_MS = 30_000;
const SCRIPT_TIMEOUT_MS = 120_000;

const t0 = Date.now();
const log = (...a) => console.error(`[cluster-redirect ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

const full = (process.argv[2] || '').replace(/\/+$/, '');
const other = (process.argv[3] || '').replace(/\/+$/, '');
const loopback = /^http:\/\/127\.0\.0\.1:\d+$/;
if (!loopback.test(full) || !loopback.test(other)) {
  console.error(`usage: node tests/browser/cluster_redirect.mjs http://127.0.0.1:PORT http://127.0.0.1:PORT (got "${full}" "${other}")`);
  process.exit(2);
}

const summary = { ok: false, full, other, failures: [], cases: [] };
const check = (cond, msg) => {
  if (!cond) {
    summary.failures.push(msg);
    log(`FAIL: ${msg}`);
  }
  return cond;
};

const { liveSummary } = whipcastApi(other);

async function runCase(context, signaling) {
  const stream = `redirected-${signaling}`;
  const res = { signaling, stream };
  const page = await context.newPage();
  page.on('pageerror', (e) => check(false, `${signaling}: page error ${e.message}`));
  try {
    await page.goto(`${full}/publish/?stream=${stream}&signaling=${signaling}&codec=h264&height=180`);
    await page.click('#start');
    await page
      .waitForFunction(() => ['live', 'error', 'ended'].includes(window.whipcastState?.phase), null, { timeout: LIVE_TIMEOUT_MS })
      .catch(() => {});
    let st = await page.evaluate(() => window.whipcastState);
    res.phase = st.phase;
    res.redirects = st.redirects;
    res.resource = st.resource;
    if (!check(st.phase === 'live', `${signaling}: not live: phase=${st.phase} error=${st.error} log=${JSON.stringify(st.log)}`)) return res;
    const otherHost = new URL(other).host;
    check(st.redirects.length === 1 && new URL(st.redirects[0]).host === otherHost,
      `${signaling}: expected one redirect to ${otherHost}, got ${JSON.stringify(st.redirects)}`);
    if (signaling === 'whip') check(new URL(st.resource).host === otherHost, `WHIP session URL ${st.resource} is not on ${otherHost}`);
    const s = await liveSummary(stream);
    res.apiState = s && s.state;
    check(s && s.state === 'live', `${signaling}: ${stream} not live on the other node: ${JSON.stringify(s)}`);
    await page.click('#stop');
    await page.waitForFunction(() => window.whipcastState.phase === 'stopped', null, { timeout: 15_000 }).catch(() => {});
    st = await page.evaluate(() => window.whipcastState);
    res.stopped = st.phase;
    check(st.phase === 'stopped', `${signaling}: phase after Stop: ${st.phase}`);
    if (signaling === 'whip') check(st.deleteStatus === 200, `WHIP DELETE -> ${st.deleteStatus}, expected 200`);
  } finally {
    await page.close().catch(() => {});
  }
  log(`${signaling}: ${JSON.stringify(res)}`);
  return res;
}

async function main() {
  const watchdog = setTimeout(() => {
    summary.failures.push(`script timed out after ${SCRIPT_TIMEOUT_MS / 1000}s`);
    console.log(JSON.stringify(summary));
    process.exit(1);
  }, SCRIPT_TIMEOUT_MS);
  const chrome = await launchChromium({
    args: MEDIA_ARGS,
    contextOptions: { permissions: ['camera', 'microphone'] },
    summary,
  });
  summary.browser = `Chromium ${chrome.version}`;
  try {
    for (const signaling of ['whip', 'ws']) summary.cases.push(await runCase(chrome.context, signaling));
  } finally {
    await chrome.close();
  }
  clearTimeout(watchdog);
  summary.ok = summary.failures.length === 0 && summary.cases.length === 2;
  console.log(JSON.stringify(summary));
  process.exit(summary.ok ? 0 : 1);
}

main().catch((e) => {
  console.error(e);
  summary.failures.push(`crashed: ${e.message}`);
  console.log(JSON.stringify(summary));
  process.exit(1);
});
