// What the browser scripts ask whipcast directly (node's fetch, no browser): its stream list
// and polling until something holds.
//
//   import { sleep, poll, whipcastApi } from './whipcast.mjs';
//   const { getJson, streamSummary } = whipcastApi(base);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Calls `fn` every 250 ms until it returns something truthy; throws after `timeoutMs`. */
export async function poll(what, timeoutMs, fn) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e.message;
    }
    await sleep(250);
  }
  throw new Error(`timed out after ${timeoutMs / 1000}s waiting for ${what}${last ? ` (last: ${last})` : ''}`);
}

/** `getJson(path)` and `streamSummary(name)` (the stream's entry in /api/streams, or null). */
export function whipcastApi(base) {
  async function getJson(path) {
    const r = await fetch(`${base}${path}`, { cache: 'no-store' });
    if (!r.ok) throw new Error(`GET ${path} -> ${r.status}`);
    return r.json();
  }
  async function streamSummary(name) {
    const api = await getJson('/api/streams');
    return (api.streams || []).find((s) => s.name === name) || null;
  }
  // A stream is in /api/streams from its first video on (a session that has not sent any
  // holds no name yet): a page that just went live may be a few packets early.
  async function liveSummary(name, timeoutMs = 10_000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const s = await streamSummary(name);
      if ((s && s.state === 'live') || Date.now() > end) return s;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { getJson, streamSummary, liveSummary };
}
