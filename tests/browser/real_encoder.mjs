#!/usr/bin/env node
// Chromium's own WebRTC stack (its real encoder and bandwidth estimation) publishes a
// 1280x720 source, and whipcast's master playlist must offer the whole ladder from the start.
//
//   node tests/browser/real_encoder.mjs <base_url>
//
// Why: Chromium's bandwidth estimate starts low, so with a 1280x720 source its encoder sends
// 640x360 for the first seconds, then 960x540, then 1280x720. A ladder planned from the first
// frame lists 360p and below for the whole broadcast. The fake camera
// (--use-fake-device-for-media-stream) cannot show this: the source here is a 1280x720
// canvas with motion and noise (so the encoder has real work and the quality scaler real
// decisions), captured with captureStream(30), plus a WebAudio oscillator.
//
// Two publishes, one after the other, each on its own stream name:
// 1. rw-whip: a plain WHIP client with no hints, in a page served by whipcast (/healthz):
//    sendonly transceivers, H.264 preferred by setCodecPreferences, the offer POSTed once ICE
//    gathering is complete, DELETE at the end;
// 2. rw-ws: the bundled publisher page /publish/ over WebSocket with VP8 (its own form,
//    preset by the query), its getUserMedia replaced (addInitScript) by the same canvas and
//    oscillator; Stop at the end.
// For each: /hls/<name>/master.m3u8 is polled every 100 ms from the moment of publishing.
// The first 200 must list >= 3 video variants, one of them RESOLUTION=1280x720, and an
// EXT-X-MEDIA TYPE=AUDIO group that every variant names, with CODECS including mp4a; 20 s
// later the master must be the same bytes once the BANDWIDTH / AVERAGE-BANDWIDTH numbers are
// blanked. getStats() (outbound-rtp frameWidth x frameHeight, …) is sampled once a second and
// reported: the ramp.
//
// Progress goes to stderr; the last stdout line is a JSON summary. Exit code 0 = every
// check passed, 1 = a check failed, 2 = the browser could not be set up.
// Environment: CHROMIUM (default /usr/bin/chromium), STABLE_SECONDS (default 20), NOISE_ALPHA
// (opacity of the full-frame noise, default 0.02).
// Chromium is started by chromium.mjs (loopback only, fresh profile).

import { launchChromium } from './chromium.mjs';
import { sleep } from './whipcast.mjs';

const CASES = [
  { stream: 'rw-whip', signaling: 'whip', codec: 'h264', client: 'plain WHIP client (no hints)' },
  { stream: 'rw-ws', signaling: 'ws', codec: 'vp8', client: 'bundled publisher page /publish/' },
];
const WIDTH = 1280;
const HEIGHT = 720;
const FPS = 30;
/** Opacity of the noise drawn over the whole canvas every frame. */
const NOISE_ALPHA = Number(process.env.NOISE_ALPHA || 0.02);
const MIN_VARIANTS = 3;
const MASTER_POLL_MS = 100;
/** How long after the first master the second one is fetched. */
const STABLE_SECONDS = Number(process.env.STABLE_SECONDS || 20);
const GATHER_TIMEOUT_MS = 5_000;
const CONNECT_TIMEOUT_MS = 20_000;
const MASTER_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const SCRIPT_TIMEOUT_MS = 170_000;

const t0 = Date.now();
const elapsed = () => ((Date.now() - t0) / 1000).toFixed(1);
const log = (...a) => console.error(`[real-encoder ${elapsed()}s]`, ...a);

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!/^http:\/\/(127\.0\.0\.1|localhost)(:\d+)?$/.test(base)) {
  console.error(`base URL must be http://127.0.0.1:PORT, got "${base}"\nusage: node tests/browser/real_encoder.mjs <base_url>`);
  process.exit(2);
}

// ---- in the page -------------------------------------------------------------------------

/**
 * Runs in every page before its own scripts (addInitScript). Defines window.__rw:
 * - source(): a new MediaStream of a WIDTH x HEIGHT canvas animated at FPS (captureStream)
 *   and an oscillator audio track;
 * - pcs: every RTCPeerConnection the page creates (the constructor is wrapped, so the
 *   publisher page's private one is reachable too), each sampled by getStats() once a second
 *   into pc.__ramp;
 * and makes navigator.mediaDevices.getUserMedia return source() (the publisher page asks for
 * a camera and microphone; no fake device, no permission prompt).
 */
function installPageHelpers({ width, height, fps, noise: NOISE_ALPHA }) {
  const rw = { pcs: [], gum: [] };
  window.__rw = rw;

  rw.source = () => {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const g = canvas.getContext('2d', { alpha: false });
    // Noise is rendered once into a tile and drawn at a new offset every frame: the picture
    // changes everywhere (the encoder has real work) without a million Math.random() calls
    // per frame on a 2-core machine. It stays faint over the whole frame, with one opaque
    // noise patch moving: Chromium's quality scaler goes up or down in resolution by the
    // encoder's QP, so more noise keeps the resolution down whatever the bandwidth (at
    // alpha 0.18 Chromium went down to 320x180 and stayed there; at 0.05 H.264 sat at QP ~24,
    // OpenH264's up-switch threshold, and stayed at 640x360; at 0.02 it went up to 960x540).
    const tile = document.createElement('canvas');
    tile.width = 256;
    tile.height = 256;
    const tg = tile.getContext('2d');
    const img = tg.createImageData(256, 256);
    for (let i = 0; i < img.data.length; i += 4) {
      const v = Math.random() * 255;
      img.data[i] = v;
      img.data[i + 1] = v;
      img.data[i + 2] = v;
      img.data[i + 3] = 255;
    }
    tg.putImageData(img, 0, 0);
    const balls = Array.from({ length: 12 }, (_, i) => ({
      x: Math.random() * width, y: Math.random() * height,
      vx: 4 + Math.random() * 10, vy: 3 + Math.random() * 8,
      r: 30 + Math.random() * 70, hue: i * 30,
    }));
    let n = 0;
    const draw = () => {
      n += 1;
      const grad = g.createLinearGradient(0, 0, width, height);
      grad.addColorStop(0, `hsl(${(n / 2) % 360} 70% 35%)`);
      grad.addColorStop(1, `hsl(${(n / 2 + 180) % 360} 70% 55%)`);
      g.fillStyle = grad;
      g.fillRect(0, 0, width, height);
      for (const b of balls) {
        b.x += b.vx;
        b.y += b.vy;
        if (b.x < b.r || b.x > width - b.r) b.vx = -b.vx;
        if (b.y < b.r || b.y > height - b.r) b.vy = -b.vy;
        g.fillStyle = `hsl(${(b.hue + n) % 360} 80% 60%)`;
        g.beginPath();
        g.arc(b.x, b.y, b.r, 0, 2 * Math.PI);
        g.fill();
      }
      g.save();
      g.translate(width / 2, height / 2);
      g.rotate(n / 20);
      g.fillStyle = '#fff';
      g.fillRect(-300, -12, 600, 24);
      g.restore();
      g.globalAlpha = NOISE_ALPHA;
      const ox = Math.floor(Math.random() * 256);
      const oy = Math.floor(Math.random() * 256);
      for (let y = -oy; y < height; y += 256) {
        for (let x = -ox; x < width; x += 256) g.drawImage(tile, x, y);
      }
      g.globalAlpha = 1;
      g.drawImage(tile, ox, oy, 128, 128, (n * 7) % (width - 128), height - 160, 128, 128);
      g.fillStyle = '#000';
      g.fillRect(20, 20, 520, 70);
      g.fillStyle = '#ff0';
      g.font = 'bold 48px monospace';
      g.fillText(`frame ${n} ${(performance.now() / 1000).toFixed(2)}`, 30, 72);
    };
    draw();
    const timer = setInterval(draw, 1000 / fps);
    const video = canvas.captureStream(fps).getVideoTracks()[0];

    const ac = new AudioContext({ sampleRate: 48000 });
    const osc = ac.createOscillator();
    osc.frequency.value = 440;
    // A slow vibrato, so the audio is not a constant the Opus encoder could coast on.
    const lfo = ac.createOscillator();
    lfo.frequency.value = 2;
    const depth = ac.createGain();
    depth.gain.value = 60;
    lfo.connect(depth).connect(osc.frequency);
    const dest = ac.createMediaStreamDestination();
    osc.connect(dest);
    osc.start();
    lfo.start();
    ac.resume().catch(() => {});
    const audio = dest.stream.getAudioTracks()[0];

    video.addEventListener('ended', () => clearInterval(timer));
    const stream = new MediaStream([video, audio]);
    // Stopping the tracks (the publisher page's Stop) stops the drawing and the audio.
    const stopVideo = video.stop.bind(video);
    video.stop = () => { clearInterval(timer); stopVideo(); };
    const stopAudio = audio.stop.bind(audio);
    audio.stop = () => { ac.close().catch(() => {}); stopAudio(); };
    rw.canvas = canvas;
    rw.audioContextState = () => ac.state;
    return stream;
  };

  async function sample(pc) {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    const out = { at: Date.now() };
    report.forEach((s) => {
      if (s.type === 'outbound-rtp' && s.kind === 'video') {
        Object.assign(out, {
          width: s.frameWidth ?? null,
          height: s.frameHeight ?? null,
          fps: s.framesPerSecond ?? null,
          framesEncoded: s.framesEncoded ?? null,
          qpSum: s.qpSum ?? null,
          bytesSent: s.bytesSent ?? null,
          targetBitrate: s.targetBitrate ?? null,
          limitation: s.qualityLimitationReason ?? null,
          resolutionChanges: s.qualityLimitationResolutionChanges ?? null,
          encoder: s.encoderImplementation ?? null,
          codec: byId.get(s.codecId)?.mimeType ?? null,
        });
      }
      if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        out.audioCodec = byId.get(s.codecId)?.mimeType ?? null;
        out.audioBytes = s.bytesSent ?? null;
      }
      if (s.type === 'transport' && s.selectedCandidatePairId) {
        const pair = byId.get(s.selectedCandidatePairId);
        out.availableOutgoingBitrate = pair?.availableOutgoingBitrate ?? null;
        const l = pair && byId.get(pair.localCandidateId);
        const r = pair && byId.get(pair.remoteCandidateId);
        out.pair = pair ? `${l?.address}:${l?.port} -> ${r?.address}:${r?.port}` : null;
      }
    });
    return out;
  }

  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.__ramp = [];
      rw.pcs.push(this);
      const timer = setInterval(() => {
        if (this.connectionState === 'closed') {
          clearInterval(timer);
          return;
        }
        sample(this).then((s) => this.__ramp.push(s), () => {});
      }, 1000);
    }
  };

  /** The last RTCPeerConnection's ramp, connection and candidates. */
  rw.state = () => {
    const pc = rw.pcs[rw.pcs.length - 1];
    return pc ? { connectionState: pc.connectionState, iceGatheringState: pc.iceGatheringState, ramp: pc.__ramp } : null;
  };
  rw.sampleNow = async () => {
    const pc = rw.pcs[rw.pcs.length - 1];
    return pc ? sample(pc) : null;
  };

  if (navigator.mediaDevices) {
    navigator.mediaDevices.getUserMedia = async (constraints) => {
      rw.gum.push(JSON.parse(JSON.stringify(constraints ?? null)));
      return rw.source();
    };
  }
}

/** Case 1 in the page: the WHIP client up to a complete offer (not yet sent). */
async function whipPrepare({ gatherTimeoutMs }) {
  const rw = window.__rw;
  const media = rw.source();
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  rw.whip = { media, pc, candidates: [] };
  pc.addEventListener('icecandidate', (ev) => {
    if (ev.candidate && ev.candidate.candidate) rw.whip.candidates.push(ev.candidate.candidate);
  });
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
    if (track.kind === 'video') {
      // H.264 with packetization-mode=1 first (what whipcast and most WHIP servers take).
      const h264 = (RTCRtpSender.getCapabilities('video')?.codecs || [])
        .filter((c) => c.mimeType.toLowerCase() === 'video/h264')
        .sort((a, b) => /packetization-mode=1/.test(b.sdpFmtpLine || '') - /packetization-mode=1/.test(a.sdpFmtpLine || ''));
      if (!h264.length) throw new Error('this Chromium cannot send H.264');
      t.setCodecPreferences(h264);
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  const complete = await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve(true);
    const timer = setTimeout(() => resolve(false), gatherTimeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve(true);
      }
    });
  });
  const settings = media.getVideoTracks()[0].getSettings();
  return {
    gatheringComplete: complete,
    candidates: rw.whip.candidates,
    offerVideoCodecs: [...pc.localDescription.sdp.matchAll(/a=rtpmap:\d+ ([^/\r\n]+)/g)].map((m) => m[1]),
    trackSettings: { width: settings.width ?? null, height: settings.height ?? null, frameRate: settings.frameRate ?? null },
  };
}

/** Case 1 in the page: POST the offer, set the answer. */
async function whipPost({ stream }) {
  const { pc } = window.__rw.whip;
  const r = await fetch(`/whip/${stream}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp' },
    body: pc.localDescription.sdp,
  });
  const body = await r.text();
  const location = r.headers.get('Location');
  if (r.status === 201) {
    window.__rw.whip.resource = new URL(location, window.location.href).href;
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  }
  return { status: r.status, location, error: r.status === 201 ? null : body.slice(0, 300) };
}

/** Case 1 in the page: DELETE the WHIP session, close the connection, stop the source. */
async function whipStop() {
  const w = window.__rw.whip;
  let status = null;
  if (w.resource) status = (await fetch(w.resource, { method: 'DELETE' })).status;
  w.pc.close();
  w.media.getTracks().forEach((t) => t.stop());
  return status;
}

// ---- master playlist ---------------------------------------------------------------------

/** `A=B,C="d,e"` attribute lists. */
function attrs(s) {
  const out = {};
  const re = /([A-Z0-9-]+)=("[^"]*"|[^,]*)/g;
  let m;
  while ((m = re.exec(s))) out[m[1]] = m[2].startsWith('"') ? m[2].slice(1, -1) : m[2];
  return out;
}

/** Blanks the numbers of BANDWIDTH= and AVERAGE-BANDWIDTH=, the only values allowed to move. */
const normalise = (text) => text.replace(/\b((?:AVERAGE-)?BANDWIDTH)=\d+/g, '$1=_');

/** What a master playlist says, and what is wrong with it. */
function inspectMaster(text) {
  const lines = text.split('\n');
  const variants = [];
  const audio = [];
  lines.forEach((l, i) => {
    if (l.startsWith('#EXT-X-STREAM-INF:')) {
      const a = attrs(l.slice('#EXT-X-STREAM-INF:'.length));
      variants.push({ resolution: a.RESOLUTION ?? null, codecs: a.CODECS ?? null, audio: a.AUDIO ?? null, bandwidth: Number(a.BANDWIDTH), uri: lines[i + 1] ?? null });
    } else if (l.startsWith('#EXT-X-MEDIA:')) {
      const a = attrs(l.slice('#EXT-X-MEDIA:'.length));
      if (a.TYPE === 'AUDIO') audio.push({ group: a['GROUP-ID'] ?? null, name: a.NAME ?? null, uri: a.URI ?? null });
    }
  });
  const problems = [];
  if (variants.length < MIN_VARIANTS) problems.push(`${variants.length} video variant(s) (${variants.map((v) => v.resolution).join(', ') || 'none'}), expected >= ${MIN_VARIANTS}`);
  if (!variants.some((v) => v.resolution === `${WIDTH}x${HEIGHT}`)) problems.push(`no ${WIDTH}x${HEIGHT} variant`);
  const groups = new Set(audio.map((a) => a.group));
  if (!audio.length) problems.push('no EXT-X-MEDIA TYPE=AUDIO');
  for (const v of variants) {
    if (!v.audio || !groups.has(v.audio)) problems.push(`variant ${v.resolution} names audio group ${v.audio}, not one of [${[...groups]}]`);
    if (!/mp4a/.test(v.codecs || '')) problems.push(`variant ${v.resolution} CODECS="${v.codecs}" lacks mp4a`);
  }
  return { variants, audio, problems };
}

/**
 * Polls the master every MASTER_POLL_MS from now on. `first` resolves with the first 200
 * (body and milliseconds since `since`); every distinct version (BANDWIDTH numbers
 * blanked) is kept in `versions`. stop() ends the loop.
 */
function pollMaster(stream, since) {
  const url = `${base}/hls/${stream}/master.m3u8`;
  const versions = [];
  const statuses = {};
  let stopped = false;
  let resolveFirst;
  const first = new Promise((r) => { resolveFirst = r; });
  const loop = (async () => {
    while (!stopped) {
      const at = Date.now();
      try {
        const r = await fetch(url, { cache: 'no-store' });
        const body = await r.text();
        statuses[r.status] = (statuses[r.status] || 0) + 1;
        if (r.status === 200) {
          const ms = Date.now() - since;
          if (!versions.length) resolveFirst({ text: body, ms });
          const norm = normalise(body);
          if (!versions.length || versions[versions.length - 1].normalised !== norm) {
            versions.push({ ms, normalised: norm, text: body });
            log(`${stream}: master version ${versions.length} at ${(ms / 1000).toFixed(1)}s: ${inspectMaster(body).variants.map((v) => v.resolution).join(' ') || 'no variants'}`);
          }
        }
      } catch (e) {
        statuses[e.message] = (statuses[e.message] || 0) + 1;
      }
      await sleep(Math.max(0, MASTER_POLL_MS - (Date.now() - at)));
    }
  })();
  return {
    first,
    versions,
    statuses,
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

// ---- one case ----------------------------------------------------------------------------

function rampSummary(ramp, since) {
  return ramp
    .filter((s) => s.width != null)
    .map((s, i, all) => ({
      t: +((s.at - since) / 1000).toFixed(1),
      size: `${s.width}x${s.height}`,
      fps: s.fps,
      // Mean QP of the frames encoded since the previous sample: what the encoder's quality
      // scaler goes by when it changes the resolution.
      qp: i > 0 && s.framesEncoded > all[i - 1].framesEncoded && s.qpSum != null
        ? +((s.qpSum - all[i - 1].qpSum) / (s.framesEncoded - all[i - 1].framesEncoded)).toFixed(1)
        : null,
      targetKbps: s.targetBitrate != null ? Math.round(s.targetBitrate / 1000) : null,
      bweKbps: s.availableOutgoingBitrate != null ? Math.round(s.availableOutgoingBitrate / 1000) : null,
      limitation: s.limitation,
    }));
}

/** "640x360 from 0.9s, 960x540 from 4.0s, …": each size the encoder sent and when it began. */
function rampSteps(ramp) {
  const steps = [];
  for (const s of ramp) {
    if (!steps.length || steps[steps.length - 1].size !== s.size) steps.push({ size: s.size, from: s.t });
  }
  return steps;
}

async function runCase(context, c) {
  const res = { stream: c.stream, signaling: c.signaling, codec: c.codec, client: c.client, ok: false, failures: [] };
  const check = (cond, msg) => {
    if (!cond) {
      res.failures.push(msg);
      log(`  FAIL ${c.stream}: ${msg}`);
    }
    return cond;
  };
  const pageErrors = [];
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/favicon/.test(m.text()) && log(`  ${c.stream} console: ${m.text()}`));
  let poller = null;
  let published = null;
  try {
    // 1. Publish; the clock starts when the offer leaves (WHIP POST / page load).
    if (c.signaling === 'whip') {
      await page.goto(`${base}/healthz`);
      res.prepare = await page.evaluate(whipPrepare, { gatherTimeoutMs: GATHER_TIMEOUT_MS });
      log(`${c.stream}: offer ready (gathering complete: ${res.prepare.gatheringComplete}; candidates: ${res.prepare.candidates.join(' | ') || 'none'}; track ${JSON.stringify(res.prepare.trackSettings)})`);
      check(res.prepare.candidates.length > 0, 'Chromium gathered no ICE candidate');
      published = Date.now();
      poller = pollMaster(c.stream, published);
      res.post = await page.evaluate(whipPost, { stream: c.stream });
      log(`${c.stream}: POST /whip/${c.stream} -> ${res.post.status} ${res.post.location || res.post.error}`);
      if (!check(res.post.status === 201, `WHIP POST -> ${res.post.status}: ${res.post.error}`)) return res;
    } else {
      const url = `${base}/publish/?stream=${c.stream}&signaling=${c.signaling}&codec=${c.codec}`;
      log(`${c.stream}: opening ${url}`);
      published = Date.now();
      poller = pollMaster(c.stream, published);
      await page.goto(url);
      await page.click('#start');
      // The page's form must really be on WebSocket + VP8 (what the query preset).
      res.form = await page.evaluate(() => ({
        signaling: document.getElementById('signaling').value,
        codec: document.getElementById('codec').value,
        options: {
          signaling: [...document.querySelectorAll('#signaling option')].map((o) => o.value),
          codec: [...document.querySelectorAll('#codec option')].map((o) => o.value),
        },
      }));
      check(res.form.signaling === c.signaling && res.form.codec === c.codec, `publisher form on ${res.form.signaling}/${res.form.codec}, expected ${c.signaling}/${c.codec} (options ${JSON.stringify(res.form.options)})`);
    }

    // 2. Connected.
    const connected = await page
      .waitForFunction(() => window.__rw.state()?.connectionState === 'connected', null, { timeout: CONNECT_TIMEOUT_MS })
      .then(() => true, () => false);
    res.connectedAfterMs = Date.now() - published;
    if (c.signaling === 'ws') {
      res.page = await page.evaluate(() => ({ phase: window.whipcastState.phase, status: window.whipcastState.status, videoTrack: window.whipcastState.videoTrack, gum: window.__rw.gum, warnings: window.whipcastState.warnings }));
    }
    if (!check(connected, `not connected after ${CONNECT_TIMEOUT_MS / 1000}s: ${JSON.stringify(await page.evaluate(() => ({ rw: window.__rw.state(), page: window.whipcastState ? { phase: window.whipcastState.phase, status: window.whipcastState.status, log: window.whipcastState.log } : null })))}`)) return res;
    log(`${c.stream}: connected after ${(res.connectedAfterMs / 1000).toFixed(1)}s`);

    // 3. The first master.
    const first = await Promise.race([poller.first, sleep(MASTER_TIMEOUT_MS).then(() => null)]);
    if (!check(first, `no 200 for master.m3u8 within ${MASTER_TIMEOUT_MS / 1000}s (statuses ${JSON.stringify(poller.statuses)})`)) return res;
    res.firstMasterAfterMs = first.ms;
    res.firstMaster = first.text;
    const a = inspectMaster(first.text);
    res.firstMasterVariants = a.variants.map((v) => `${v.resolution} ${v.codecs} audio=${v.audio}`);
    log(`${c.stream}: first master after ${(first.ms / 1000).toFixed(1)}s:\n${first.text}`);
    for (const p of a.problems) check(false, `first master: ${p}`);

    // 4. STABLE_SECONDS later: the same, BANDWIDTH numbers aside.
    await sleep(Math.max(0, first.ms + STABLE_SECONDS * 1000 - (Date.now() - published)));
    const r = await fetch(`${base}/hls/${c.stream}/master.m3u8`, { cache: 'no-store' });
    const later = await r.text();
    res.laterMasterAfterMs = Date.now() - published;
    res.laterMaster = later;
    res.laterMasterVariants = inspectMaster(later).variants.map((v) => `${v.resolution} ${v.codecs} audio=${v.audio}`);
    check(r.status === 200, `master ${STABLE_SECONDS}s later -> ${r.status}`);
    res.masterStable = normalise(later) === normalise(first.text);
    check(res.masterStable, `master changed after the first 200 (beyond BANDWIDTH values): ${STABLE_SECONDS}s later it lists ${res.laterMasterVariants.join('; ')}`);
    log(`${c.stream}: master ${STABLE_SECONDS}s after the first: ${res.masterStable ? 'unchanged (BANDWIDTH aside)' : `CHANGED:\n${later}`}`);

    // What was sent, for the report (and the check that it is the codec asked for).
    const now = await page.evaluate(() => window.__rw.sampleNow());
    res.sent = now && { codec: now.codec, encoder: now.encoder, audioCodec: now.audioCodec, pair: now.pair };
    check(now && (now.codec || '').toLowerCase() === `video/${c.codec}`, `browser sends ${now && now.codec}, expected video/${c.codec}`);
    check(now && (now.audioCodec || '').toLowerCase() === 'audio/opus', `browser sends audio ${now && now.audioCodec}, expected audio/opus`);
    const api = await fetch(`${base}/api/streams`).then((x) => x.json()).catch(() => null);
    const entry = api && (api.streams || []).find((s) => s.name === c.stream);
    res.api = entry && { state: entry.state, ingest: entry.ingest, renditions: (entry.renditions || []).map((x) => x.name ?? x) };
  } catch (e) {
    check(false, `exception: ${e.stack || e.message}`);
  } finally {
    if (poller) {
      await poller.stop();
      res.masterStatuses = poller.statuses;
      res.masterVersions = poller.versions.map((v) => ({ ms: v.ms, variants: inspectMaster(v.text).variants.map((x) => x.resolution) }));
    }
    // 5. Stop, and collect the ramp.
    try {
      const st = await page.evaluate(() => window.__rw.state());
      res.ramp = rampSummary(st ? st.ramp : [], published ?? Date.now());
      res.rampSteps = rampSteps(res.ramp);
      log(`${c.stream}: encoder sizes: ${res.rampSteps.map((s) => `${s.size} from ${s.from}s`).join(', ') || 'none'}`);
      if (c.signaling === 'whip') {
        res.deleteStatus = await page.evaluate(whipStop);
        check(res.post?.status !== 201 || res.deleteStatus === 200, `DELETE -> ${res.deleteStatus}, expected 200`);
      } else if (await page.isEnabled('#stop')) {
        await page.click('#stop');
        const stopped = await page.waitForFunction(() => window.whipcastState.phase === 'stopped', null, { timeout: STOP_TIMEOUT_MS }).then(() => true, () => false);
        check(stopped, `publisher page not stopped after Stop: ${await page.evaluate(() => window.whipcastState.status)}`);
      }
      // The publish really ended on whipcast's side too.
      const ended = await (async () => {
        const deadline = Date.now() + STOP_TIMEOUT_MS;
        while (Date.now() < deadline) {
          const api = await fetch(`${base}/api/streams`).then((x) => x.json()).catch(() => null);
          const s = api && (api.streams || []).find((x) => x.name === c.stream);
          if (!s || s.state === 'ended') return true;
          await sleep(250);
        }
        return false;
      })();
      check(ended, `${c.stream} still live on whipcast after the stop`);
    } catch (e) {
      check(false, `stopping: ${e.message}`);
    }
    res.pageErrors = pageErrors;
    check(pageErrors.length === 0, `uncaught page errors: ${pageErrors.join(' | ')}`);
    await page.close().catch(() => {});
  }
  res.ok = res.failures.length === 0;
  log(`${c.stream}: ${res.ok ? 'PASS' : 'FAIL'}`);
  return res;
}

async function main() {
  const summary = { ok: false, base, cases: [] };
  const watchdog = setTimeout(() => {
    summary.failures = [`script timed out after ${SCRIPT_TIMEOUT_MS / 1000}s`];
    console.log(JSON.stringify(summary));
    process.exit(1);
  }, SCRIPT_TIMEOUT_MS);
  // No fake camera: the video is the canvas, the audio the oscillator. The AudioContext
  // must run without a click. Camera and microphone are granted although never opened:
  // without that permission Chromium gathers no candidate on a loopback-only machine (it
  // enumerates only the default route's interface, and there is none).
  const chrome = await launchChromium({
    args: ['--autoplay-policy=no-user-gesture-required'],
    contextOptions: { permissions: ['camera', 'microphone'] },
    summary,
  });
  summary.browser = `Chromium ${chrome.version}`;
  log(`launched ${summary.browser}`);
  try {
    await chrome.context.addInitScript(installPageHelpers, { width: WIDTH, height: HEIGHT, fps: FPS, noise: NOISE_ALPHA });
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
