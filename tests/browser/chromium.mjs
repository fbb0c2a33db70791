// One way to start Debian's Chromium for every browser test (tests/browser/*.mjs).
//
//   import { launchChromium, MEDIA_ARGS } from './chromium.mjs';
//   const chrome = await launchChromium({ args: MEDIA_ARGS, log });   // exits 2 if it cannot
//   const page = await chrome.context.newPage();
//   ...
//   await chrome.close();
//
// playwright-core drives /usr/bin/chromium (or $CHROMIUM); it never downloads a browser.
// Every launch gets a fresh profile in a new temporary --user-data-dir (removed by close()),
// so no permission, cache or cookie survives from one run or one launch to the next.
// Loopback only: the host resolver maps every name but localhost / 127.0.0.1 to nothing,
// QUIC, component updates, sync and background requests are off.
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const playerDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'player');

/** The flags every test launch has. */
export const BASE_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--no-proxy-server',
  '--allow-loopback-in-peer-connection',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];

/** A fake camera and microphone, granted without a prompt. */
export const MEDIA_ARGS = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];

/** Loads playwright-core from player/node_modules; exits 2 (setup error) when it is missing. */
export function playwright() {
  try {
    return createRequire(join(playerDir, 'package.json'))('playwright-core');
  } catch (e) {
    console.error(`playwright-core not installed in player/: run deploy/install-browser-deps.sh (${e.message})`);
    console.log(JSON.stringify({ ok: false, setupError: 'playwright-core missing' }));
    process.exit(2);
  }
}

/**
 * Starts Chromium with BASE_ARGS + `args` and a fresh profile. `contextOptions` go to
 * playwright's launchPersistentContext (viewport, permissions, …). Returns
 * `{ context, version, profile, close }`. When Chromium cannot start, prints the setup
 * error (stderr + a JSON line on stdout, with `summary` merged in) and exits 2.
 */
export async function launchChromium({ args = [], contextOptions = {}, summary = {} } = {}) {
  const { chromium } = playwright();
  const profile = mkdtempSync(join(tmpdir(), 'whipcast-chromium-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      headless: true,
      args: [...BASE_ARGS, ...args],
      ...contextOptions,
    });
  } catch (e) {
    rmSync(profile, { recursive: true, force: true });
    console.error(`cannot launch Chromium: ${e.message}\nrun deploy/install-browser-deps.sh`);
    console.log(JSON.stringify({ ...summary, ok: false, setupError: `chromium launch failed: ${e.message.split('\n')[0]}` }));
    process.exit(2);
  }
  const version = context.browser()?.version() ?? 'unknown';
  return {
    context,
    version,
    profile,
    async close() {
      await context.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
