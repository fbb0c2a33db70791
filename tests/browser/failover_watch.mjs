#!/usr/bin/env node
// The bundled watch page (hls.js) in a real Chromium, watching one stream through one node
// of a cluster for a while, while the test kills the node that owns the stream and the
// publisher moves to another:
//
//   node tests/browser/failover_watch.mjs <base_url> <stream> <seconds>
//
// One page, never reloaded. Every 250 ms it records [Date.now(), video.currentTime,
// phase]; the test reads when playback stopped and when it ran again. The last stdout line
// is a JSON summary: { ok, samples, state }. Exit code 0 = it ran (the judging is the
// test's), 2 = the browser could not be set up.
import { launchChromium } from './chromium.mjs';

const base = (process.argv[2] || '').replace(/\/+$/, '');
const stream = process.argv[3] || '';
const seconds = Number(process.argv[4] || '0');
if (!/^http:\/\/127\.0\.0\.1:\d+$/.test(base) || !/^[A-Za-z0-9_-]+$/.test(stream) || !(seconds > 0)) {
  console.error(`usage: node tests/browser/failover_watch.mjs http://127.0.0.1:PORT STREAM SECONDS`);
  process.exit(2);
}
const t0 = Date.now();
const log = (...a) => console.error(`[failover-watch ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const summary = { ok: false, base, stream, samples: [] };

async function main() {
  const chrome = await launchChromium({ summary });
  summary.browser = `Chromium ${chrome.version}`;
  try {
    const page = await chrome.context.newPage();
    page.on('pageerror', (e) => log(`page error: ${e.message}`));
    await page.goto(`${base}/watch/?stream=${stream}`);
    const end = Date.now() + seconds * 1000;
    let lastPhase = null;
    while (Date.now() < end) {
      const s = await page.evaluate(() => ({
        t: Date.now(),
        time: document.querySelector('video').currentTime,
        phase: window.whipcastState.phase,
      }));
      summary.samples.push([s.t, +s.time.toFixed(3), s.phase]);
      if (s.phase !== lastPhase) log(`phase ${s.phase} at currentTime ${s.time.toFixed(2)}`);
      lastPhase = s.phase;
      await new Promise((r) => setTimeout(r, 250));
    }
    summary.state = await page.evaluate(() => {
      const st = window.whipcastState;
      return { phase: st.phase, stalls: st.stalls, recoveries: st.recoveries, retries: st.retries, fatalErrors: st.fatalErrors, errors: st.errors.slice(-10) };
    });
    summary.ok = true;
  } finally {
    await chrome.close();
  }
  console.log(JSON.stringify(summary));
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  summary.failures = [`crashed: ${e.message}`];
  console.log(JSON.stringify(summary));
  process.exit(1);
});
