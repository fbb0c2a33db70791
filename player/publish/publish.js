// whipcast publisher page: camera + microphone -> WebRTC -> whipcast, over WHIP (RFC 9725)
// or the WebSocket signalling channel.
//
// Query: ?stream=NAME&signaling=whip|ws&codec=h264|vp8|vp9&token=TOKEN&height=720
//        &source=camera|screen&bitrate=KBITS&simulcast=1|0
// Simulcast (on by default, H.264 only): the browser encodes three layers of the picture
// (full, half and quarter size, RFC 8853) and whipcast serves each as a rendition without
// transcoding them. VP8/VP9 cannot be served to HLS players as they are, so whipcast would
// decode one layer only: the page sends one. A browser that refuses three encodings sends
// one (state.simulcast says which).
// The page can also share the screen (getDisplayMedia), pick devices, cap the bitrate
// (RTCRtpSender.setParameters) and shows getStats() figures every second.
// The query only fills the form: publishing always waits for the Start button, so a link
// cannot put someone's camera on the air (a browser that already granted the camera to this
// origin would not even ask).
// window.whipcastState mirrors what the page shows, for tests and for debugging.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  /** How long to wait for ICE gathering before sending a WHIP offer anyway. */
  const GATHER_TIMEOUT_MS = 3000;
  // How long a live connection may stay `disconnected` before the page asks the server
  // whether it is still there, and how long it waits for the answer.
  const DISCONNECTED_PROBE_MS = 2000;
  const PROBE_TIMEOUT_MS = 3000;
  let probeTimer = null;
  /** The shortest interval the shown bitrate is computed over. */
  const MIN_RATE_INTERVAL_MS = 500;

  const state = {
    phase: 'idle', // idle | media | connecting | live | stopped | ended | error
    status: 'idle', // the text shown in #status
    stream: null,
    signaling: null,
    codec: null,
    resource: null, // WHIP session URL (from Location)
    httpStatus: null, // status of the WHIP POST or of a WebSocket `error` message
    deleteStatus: null,
    error: null,
    iceGatheringState: null,
    iceConnectionState: null,
    connectionState: null,
    localCandidates: [],
    remoteCandidates: [],
    redirects: [], // where the publish was sent on (WHIP 307, WebSocket `redirect`)
    warnings: [],
    stats: null,
    live: null, // { bitrateKbps, fps, width, height, packetLoss, rttMs } from the last two getStats()
    source: null, // camera | screen
    maxBitrateKbps: null,
    videoTrack: null, // { label, displaySurface, width, height } of the track being sent
    senderMaxBitrate: null, // encodings[0].maxBitrate of the video sender, bit/s, as applied
    simulcast: null, // the rids of the video sender's layers when it sends simulcast
    log: [],
  };
  window.whipcastState = state;

  let pc = null;
  let media = null;
  let ws = null;
  let token = '';
  let stopping = false;
  let statsTimer = null;
  let videoSender = null;
  let lastSample = null; // previous outbound video sample, for the bitrate

  class PublishError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status ?? null;
    }
  }

  function log(msg) {
    state.log.push(`${(performance.now() / 1000).toFixed(3)} ${msg}`);
    console.log(`[publish] ${msg}`);
  }

  function setStatus(phase, text) {
    state.phase = phase;
    state.status = text;
    const el = $('status');
    el.textContent = text;
    el.dataset.phase = phase;
    $('start').disabled = !['idle', 'stopped', 'ended', 'error'].includes(phase);
    $('stop').disabled = !['media', 'connecting', 'live'].includes(phase);
    log(`status: ${text}`);
  }

  /** Adds an explanation to the errors people hit most. Keeps "HTTP NNN" in the text. */
  function explain(err) {
    const msg = err.message || String(err);
    const hint = {
      400: 'the server refused the offer',
      401: 'unauthorised: the bearer token is wrong or missing; check the Bearer token field',
      403: 'forbidden: this token may not publish here',
      404: 'no such endpoint',
      409: 'this stream name is already being published; stop the other publisher or pick another name',
      503: 'the server is at capacity; try again later',
    }[err.status];
    if (hint) return `${msg} (${hint})`;
    const what = state.source === 'screen' ? 'screen sharing' : 'the camera and microphone';
    if (err.name === 'NotAllowedError') return `permission denied: the browser did not allow ${what}; allow it (site settings, or the prompt) and press Start again`;
    if (err.name === 'NotFoundError') return 'no camera or microphone found';
    if (err.name === 'NotReadableError') return 'the camera or microphone is in use by another application';
    if (err.name === 'OverconstrainedError') return 'the selected device cannot provide the requested format';
    if (err.network && err.lost) return `network down: lost the connection to the server at ${location.host} (${msg}); the broadcast has ended, press Start to publish again`;
    if (err.network) return `network down: cannot reach the server at ${location.host} (${msg}); check the connection and that whipcast is running, then press Start again`;
    return msg;
  }

  function fail(err) {
    if (stopping) return;
    state.error = explain(err);
    if (err.status) state.httpStatus = err.status;
    setStatus('error', `error: ${state.error}`);
    teardown();
  }

  // ---- codec preference -------------------------------------------------------------

  function fmtpParam(codec, name) {
    const m = (codec.sdpFmtpLine || '').match(new RegExp(`(?:^|;)\\s*${name}=([^;]*)`));
    return m ? m[1] : null;
  }

  /** Codecs of `kind` named `mime` the browser can send, best first. */
  function codecsFor(mime) {
    const lists = [RTCRtpSender.getCapabilities?.('video'), RTCRtpReceiver.getCapabilities?.('video')];
    for (const caps of lists) {
      const found = (caps?.codecs || []).filter((c) => c.mimeType.toLowerCase() === mime);
      if (found.length) {
        // H.264: packetization-mode=1 (FU-A) first; the rest keep the browser's order.
        return found.sort((a, b) => (fmtpParam(b, 'packetization-mode') === '1') - (fmtpParam(a, 'packetization-mode') === '1'));
      }
    }
    return [];
  }

  function preferCodec(transceiver, codec) {
    const mime = ['vp8', 'vp9'].includes(codec) ? `video/${codec}` : 'video/h264';
    const codecs = codecsFor(mime);
    if (!codecs.length) throw new PublishError(`this browser cannot send ${codec.toUpperCase()} video`);
    if (!transceiver.setCodecPreferences) {
      state.warnings.push('setCodecPreferences unsupported; the browser picks the codec');
      return;
    }
    try {
      transceiver.setCodecPreferences(codecs);
    } catch (e) {
      // Older Chromium validates against receiver capabilities only.
      const recv = (RTCRtpReceiver.getCapabilities('video')?.codecs || []).filter((c) => c.mimeType.toLowerCase() === mime);
      if (!recv.length) throw new PublishError(`cannot prefer ${codec}: ${e.message}`);
      transceiver.setCodecPreferences(recv);
    }
  }

  // ---- peer connection ---------------------------------------------------------------

  function newPeerConnection() {
    const p = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    p.addEventListener('icegatheringstatechange', () => {
      state.iceGatheringState = p.iceGatheringState;
    });
    p.addEventListener('iceconnectionstatechange', () => {
      state.iceConnectionState = p.iceConnectionState;
      log(`ice: ${p.iceConnectionState}`);
    });
    p.addEventListener('connectionstatechange', () => {
      state.connectionState = p.connectionState;
      log(`connection: ${p.connectionState}`);
      if (stopping || p !== pc) return;
      switch (p.connectionState) {
        case 'connected':
          setStatus('live', 'live');
          showLinks();
          break;
        case 'disconnected':
          if (state.phase === 'live') setStatus('live', 'live (connection unstable…)');
          // ICE takes ~30 s to give up (RFC 7675 consent); asking the server tells a
          // dead server or network from a passing glitch within seconds.
          scheduleProbe(p);
          break;
        case 'failed':
          probeServer(p, new PublishError(`WebRTC connection failed (ICE ${p.iceConnectionState})`));
          break;
        default:
      }
    });
    p.addEventListener('icecandidate', (ev) => {
      if (ev.candidate && ev.candidate.candidate) state.localCandidates.push(ev.candidate.candidate);
    });
    return p;
  }

  /**
   * While `p` is still this page's connection and not connected: if the server does not
   * answer (GET /healthz), the network or the server is down: say so and end. Otherwise
   * fail with `otherwise` if given (ICE failed), or keep waiting (ICE may recover).
   */
  async function probeServer(p, otherwise) {
    if (stopping || p !== pc || p.connectionState === 'connected') return;
    // AbortSignal.timeout is recent (Safari 16, Chrome 103): a controller and a timer work
    // everywhere.
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error('no answer')), PROBE_TIMEOUT_MS);
    try {
      const r = await fetch(new URL('/healthz', location.href), { cache: 'no-store', signal: abort.signal });
      // Behind a proxy a dead whipcast is a 502/503/504, not a network error.
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
    } catch (e) {
      if (stopping || p !== pc || p.connectionState === 'connected') return;
      const err = new PublishError(`media connection ${p.connectionState}, server unreachable: ${e.message}`);
      err.network = true;
      err.lost = true;
      fail(err);
      return;
    } finally {
      clearTimeout(timer);
    }
    if (otherwise) fail(otherwise);
    else scheduleProbe(p);
  }

  /** One probe timer per connection, however often the state flips to `disconnected`. */
  function scheduleProbe(p) {
    if (probeTimer || stopping || p !== pc || p.connectionState !== 'disconnected') return;
    probeTimer = setTimeout(() => {
      probeTimer = null;
      probeServer(p);
    }, DISCONNECTED_PROBE_MS);
  }

  function gatheringComplete(p, timeoutMs) {
    if (p.iceGatheringState === 'complete') return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        p.removeEventListener('icegatheringstatechange', check);
        resolve(false);
      }, timeoutMs);
      function check() {
        if (p.iceGatheringState === 'complete') {
          clearTimeout(timer);
          p.removeEventListener('icegatheringstatechange', check);
          resolve(true);
        }
      }
      p.addEventListener('icegatheringstatechange', check);
    });
  }

  // ---- WHIP --------------------------------------------------------------------------

  /**
   * Tells the server the height we capture at (`?height=`), so it plans its ladder for it:
   * the browser's encoder starts small while its bandwidth estimate ramps up (a 720p camera
   * goes out as 640x360 for the first seconds), and the server cannot add renditions once
   * players have read the multivariant playlist.
   */
  function addCaptureHeight(url) {
    const h = state.videoTrack && state.videoTrack.height;
    if (Number.isInteger(h) && h >= 90 && h <= 4320) url.searchParams.set('height', String(h));
  }

  function authHeaders(extra) {
    const h = { ...extra };
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  }

  async function publishWhip(stream) {
    const endpoint = new URL(`/whip/${encodeURIComponent(stream)}`, location.href);
    addCaptureHeight(endpoint);
    await pc.setLocalDescription(await pc.createOffer());
    if (!(await gatheringComplete(pc, GATHER_TIMEOUT_MS))) {
      state.warnings.push('ICE gathering incomplete; sending the candidates gathered so far');
    }
    let resp;
    try {
      resp = await fetch(endpoint, {
        method: 'POST',
        headers: authHeaders({ 'Content-Type': 'application/sdp' }),
        body: pc.localDescription.sdp,
      });
    } catch (e) {
      const err = new PublishError(`POST ${endpoint.pathname} failed: ${e.message}`);
      err.network = true;
      throw err;
    }
    state.httpStatus = resp.status;
    // A 307 from a full node of a cluster (RFC 9725 §4.5) was followed by fetch itself.
    if (resp.redirected) state.redirects.push(resp.url);
    const body = await resp.text();
    if (resp.status !== 201) {
      throw new PublishError(`HTTP ${resp.status}: ${body.trim() || resp.statusText}`, resp.status);
    }
    const location_ = resp.headers.get('Location');
    if (!location_) throw new PublishError('HTTP 201 without a Location header', resp.status);
    // Relative to where the POST ended up (after any redirect).
    state.resource = new URL(location_, resp.url || endpoint).href;
    log(`WHIP session ${state.resource}`);
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
  }

  async function deleteWhip() {
    if (!state.resource) return;
    try {
      const r = await fetch(state.resource, { method: 'DELETE', headers: authHeaders({}) });
      state.deleteStatus = r.status;
      log(`DELETE -> ${r.status}`);
    } catch (e) {
      state.warnings.push(`DELETE failed: ${e.message}`);
    }
  }

  // ---- WebSocket ---------------------------------------------------------------------

  // A node of a cluster that has no room sends a `redirect` message with the WebSocket URL
  // of another node (browsers do not follow HTTP redirects on a WebSocket upgrade); the
  // page reconnects there with the same offer, a few hops at most.
  const MAX_WS_REDIRECTS = 3;

  function publishWs(stream) {
    return new Promise((resolve, reject) => {
      const first = new URL(`/ws/${encodeURIComponent(stream)}`, location.href);
      first.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
      if (token) first.searchParams.set('token', token);
      addCaptureHeight(first);
      let answered = false;
      let hops = 0;
      const send = (msg) => {
        if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
      };
      pc.addEventListener('icecandidate', (ev) => {
        // Trickle: every candidate as it comes; `null` ends the list.
        const c = ev.candidate && ev.candidate.candidate
          ? { candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid, sdpMLineIndex: ev.candidate.sdpMLineIndex }
          : null;
        send({ type: 'candidate', candidate: c });
      });
      // One offer for every socket: after a redirect the new socket gets the offer made
      // already (with the candidates gathered since).
      let offered = null;
      const connect = (url) => {
        const sock = new WebSocket(url);
        ws = sock;
        sock.onopen = async () => {
          try {
            offered = offered || pc.createOffer().then((o) => pc.setLocalDescription(o));
            await offered;
            // A socket redirected away while the offer was being made sends nothing.
            if (sock === ws) send({ type: 'offer', sdp: pc.localDescription.sdp });
          } catch (e) {
            reject(e);
          }
        };
        sock.onmessage = async (ev) => {
          let msg;
          try {
            msg = JSON.parse(ev.data);
          } catch {
            state.warnings.push(`non-JSON message: ${String(ev.data).slice(0, 80)}`);
            return;
          }
          try {
            switch (msg.type) {
              case 'answer':
                await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
                answered = true;
                resolve();
                break;
              case 'candidate':
                if (msg.candidate) {
                  state.remoteCandidates.push(msg.candidate.candidate);
                  await pc.addIceCandidate(msg.candidate);
                }
                break;
              case 'error': {
                const err = new PublishError(`HTTP ${msg.status}: ${msg.message}`, msg.status);
                if (!answered) reject(err);
                else state.warnings.push(err.message);
                break;
              }
              case 'ended':
                if (!stopping) {
                  setStatus('ended', `ended: ${msg.reason}`);
                  teardown();
                }
                break;
              case 'redirect': {
                const to = new URL(msg.url);
                if (answered || hops >= MAX_WS_REDIRECTS || !['ws:', 'wss:'].includes(to.protocol)) {
                  state.warnings.push(`redirect to ${msg.url} not followed`);
                  break;
                }
                hops += 1;
                state.redirects.push(msg.url);
                log(`redirected to ${msg.url}`);
                sock.onclose = null;
                sock.onmessage = null;
                sock.close();
                connect(to);
                break;
              }
              default:
                state.warnings.push(`unknown message type ${msg.type}`);
            }
          } catch (e) {
            if (!answered) reject(e);
            else state.warnings.push(e.message);
          }
        };
        sock.onclose = (ev) => {
          if (stopping || sock !== ws) return;
          const why = `socket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`;
          if (!answered) {
            // 4000 + HTTP status: the server refused before any offer (name or token).
            const status = ev.code >= 4000 && ev.code < 5000 ? ev.code - 4000 : null;
            const err = new PublishError(status ? `HTTP ${status}: ${ev.reason || why}` : why, status);
            if (!status && ev.code === 1006) err.network = true; // closed before it opened
            reject(err);
          } else if (ev.code === 1006) {
            // No close frame: the server went away or the network dropped. Either way the
            // server has ended the broadcast (a closed socket ends it).
            const err = new PublishError(why);
            err.network = true;
            err.lost = true;
            fail(err);
          } else if (state.phase !== 'ended') {
            setStatus('ended', `ended: ${why}`);
            teardown();
          }
        };
      };
      connect(first);
    });
  }

  // ---- start / stop ------------------------------------------------------------------

  async function start() {
    const stream = $('stream').value.trim();
    const signaling = $('signaling').value;
    const codec = $('codec').value;
    const source = $('source').value;
    const maxKbps = Number($('bitrate').value) || null;
    token = $('token').value;
    Object.assign(state, {
      stream, signaling, codec, resource: null, httpStatus: null, deleteStatus: null, error: null,
      localCandidates: [], remoteCandidates: [], redirects: [], warnings: [], stats: null, live: null,
      source, maxBitrateKbps: maxKbps, videoTrack: null,
    });
    lastSample = null;
    renderStats();
    stopping = false;
    $('links').textContent = '';
    try {
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(stream)) throw new PublishError('invalid stream name: use 1-64 letters, digits, - or _');
      media = await openMedia(source);
      $('preview').srcObject = media;
      refreshDevices();
      pc = newPeerConnection();
      for (const track of media.getTracks()) {
        const init = { direction: 'sendonly', streams: [media] };
        if (track.kind === 'video' && maxKbps) init.sendEncodings = [{ maxBitrate: maxKbps * 1000 }];
        const layered = track.kind === 'video' && codec === 'h264' && $('simulcast').checked;
        const t = layered ? addSimulcast(track, init, maxKbps) : pc.addTransceiver(track, init);
        if (track.kind === 'video') {
          const set = track.getSettings();
          state.videoTrack = { label: track.label, displaySurface: set.displaySurface ?? null, width: set.width ?? null, height: set.height ?? null };
          preferCodec(t, codec);
          videoSender = t.sender;
          const encodings = t.sender.getParameters().encodings || [];
          state.simulcast = encodings.length > 1 ? encodings.map((e) => e.rid) : null;
          state.senderMaxBitrate = t.sender.getParameters().encodings?.[0]?.maxBitrate ?? null;
          // Screen share: the user can end it from the browser's own UI.
          track.addEventListener('ended', () => { if (!stopping && pc) stop(); });
        }
      }
      setStatus('connecting', `connecting over ${signaling === 'ws' ? 'WebSocket' : 'WHIP'}…`);
      statsTimer = setInterval(refreshStats, 1000);
      if (signaling === 'ws') await publishWs(stream);
      else await publishWhip(stream);
    } catch (e) {
      fail(e);
    }
  }

  /** The top layer first: its maxBitrate is the one the bitrate field caps. */
  const LAYERS = [
    { rid: 'h' },
    { rid: 'm', scaleResolutionDownBy: 2 },
    { rid: 'l', scaleResolutionDownBy: 4 },
  ];

  /** A sendonly video transceiver with three simulcast layers, or one if refused. */
  function addSimulcast(track, init, maxKbps) {
    const sendEncodings = LAYERS.map((l, i) => (i === 0 && maxKbps ? { ...l, maxBitrate: maxKbps * 1000 } : { ...l }));
    try {
      return pc.addTransceiver(track, { ...init, sendEncodings });
    } catch (e) {
      state.warnings.push(`no simulcast: ${e.message}`);
      return pc.addTransceiver(track, init);
    }
  }

  async function openMedia(source) {
    const height = Number(params.get('height')) || 720;
    const vdev = $('videoDevice').value;
    const adev = $('audioDevice').value;
    const audio = adev === 'none' ? false : adev ? { deviceId: { exact: adev } } : true;
    if (source === 'screen') {
      if (!navigator.mediaDevices.getDisplayMedia) throw new PublishError('this browser cannot share the screen');
      setStatus('media', 'choose a screen or window to share…');
      const screen = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 30 } }, audio: false });
      if (audio) {
        try {
          const mic = await navigator.mediaDevices.getUserMedia({ audio });
          mic.getAudioTracks().forEach((t) => screen.addTrack(t));
        } catch (e) {
          state.warnings.push(`no microphone: ${e.message}`);
        }
      }
      return screen;
    }
    setStatus('media', 'opening camera and microphone…');
    const video = { height: { ideal: height }, frameRate: { ideal: 30 } };
    if (vdev) video.deviceId = { exact: vdev };
    return navigator.mediaDevices.getUserMedia({ audio, video });
  }

  /** Fills the device pickers; labels appear once the page has been granted access. */
  async function refreshDevices() {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      for (const [id, kind, extra] of [['videoDevice', 'videoinput', []], ['audioDevice', 'audioinput', [['none', 'none']]]]) {
        const sel = $(id);
        const keep = sel.value;
        const opts = [['', 'default'], ...extra];
        devices.filter((d) => d.kind === kind && d.deviceId && d.deviceId !== 'default')
          .forEach((d, i) => opts.push([d.deviceId, d.label || `${kind === 'videoinput' ? 'camera' : 'microphone'} ${i + 1}`]));
        sel.replaceChildren(...opts.map(([v, t]) => new Option(t, v)));
        if (opts.some(([v]) => v === keep)) sel.value = keep;
      }
    } catch (e) {
      state.warnings.push(`enumerateDevices: ${e.message}`);
    }
  }

  /** Applies the bitrate field to the running video sender. */
  async function applyBitrate() {
    const kbps = Number($('bitrate').value) || null;
    state.maxBitrateKbps = kbps;
    if (!videoSender || !pc) return;
    try {
      const p = videoSender.getParameters();
      if (!p.encodings || !p.encodings.length) p.encodings = [{}];
      if (kbps) p.encodings[0].maxBitrate = kbps * 1000;
      else delete p.encodings[0].maxBitrate;
      await videoSender.setParameters(p);
      state.senderMaxBitrate = videoSender.getParameters().encodings?.[0]?.maxBitrate ?? null;
      log(`max bitrate ${kbps ? `${kbps} kbit/s` : 'uncapped'}`);
      renderStats();
    } catch (e) {
      state.warnings.push(`setParameters: ${e.message}`);
    }
  }

  function teardown() {
    videoSender = null;
    clearInterval(statsTimer);
    statsTimer = null;
    if (ws) {
      ws.onclose = null;
      if (ws.readyState <= WebSocket.OPEN) ws.close(1000, 'publisher stopped');
      ws = null;
    }
    if (pc) {
      pc.close();
      pc = null;
    }
    if (media) {
      media.getTracks().forEach((t) => t.stop());
      media = null;
    }
    $('preview').srcObject = null;
  }

  async function stop() {
    if (stopping) return;
    stopping = true;
    await refreshStats();
    if (state.signaling === 'whip') await deleteWhip();
    teardown();
    setStatus('stopped', 'stopped');
  }

  // ---- stats -------------------------------------------------------------------------

  async function refreshStats() {
    if (!pc) return;
    try {
      const report = await pc.getStats();
      const byId = new Map();
      report.forEach((s) => byId.set(s.id, s));
      const out = { video: null, audio: null, pair: null, remote: {} };
      report.forEach((s) => {
        if (s.type === 'outbound-rtp' && (s.kind === 'video' || s.kind === 'audio')) {
          // Simulcast: one entry per layer. Bytes and packets add up; the largest layer
          // gives the size, rate and codec shown.
          const prev = out[s.kind];
          if (prev && (prev.frameWidth ?? 0) > (s.frameWidth ?? 0)) {
            prev.bytesSent += s.bytesSent ?? 0;
            prev.packetsSent += s.packetsSent ?? 0;
            prev.layers += 1;
            return;
          }
          out[s.kind] = {
            layers: (prev?.layers ?? 0) + 1,
            codec: byId.get(s.codecId)?.mimeType ?? null,
            sdpFmtpLine: byId.get(s.codecId)?.sdpFmtpLine ?? null,
            bytesSent: (s.bytesSent ?? 0) + (prev?.bytesSent ?? 0),
            packetsSent: (s.packetsSent ?? 0) + (prev?.packetsSent ?? 0),
            framesEncoded: s.framesEncoded,
            frameWidth: s.frameWidth,
            frameHeight: s.frameHeight,
            framesPerSecond: s.framesPerSecond,
            encoderImplementation: s.encoderImplementation,
            qualityLimitationReason: s.qualityLimitationReason,
            nackCount: s.nackCount,
            pliCount: s.pliCount,
          };
        }
        if (s.type === 'remote-inbound-rtp' && (s.kind === 'video' || s.kind === 'audio')) {
          out.remote[s.kind] = { packetsLost: s.packetsLost, fractionLost: s.fractionLost, roundTripTime: s.roundTripTime };
        }
        if (s.type === 'transport' && s.selectedCandidatePairId) {
          const pair = byId.get(s.selectedCandidatePairId);
          const l = pair && byId.get(pair.localCandidateId);
          const r = pair && byId.get(pair.remoteCandidateId);
          out.pair = pair && {
            state: pair.state,
            local: l && `${l.candidateType} ${l.address ?? l.ip}:${l.port}`,
            remote: r && `${r.candidateType} ${r.address ?? r.ip}:${r.port}`,
            dtlsState: s.dtlsState,
            dtlsCipher: s.dtlsCipher,
            srtpCipher: s.srtpCipher,
            currentRoundTripTime: pair && pair.currentRoundTripTime,
          };
        }
      });
      state.stats = out;
      const v = out.video;
      const now = performance.now();
      const live = { bitrateKbps: null, fps: null, width: null, height: null, packetLoss: null, rttMs: null };
      if (v) {
        // Over at least half a second: an extra refresh right after the timer's would
        // otherwise show ~0 kbit/s.
        if (lastSample && now - lastSample.at < MIN_RATE_INTERVAL_MS) {
          live.bitrateKbps = state.live?.bitrateKbps ?? null;
        } else {
          if (lastSample && v.bytesSent >= lastSample.bytes) {
            live.bitrateKbps = Math.round(((v.bytesSent - lastSample.bytes) * 8) / (now - lastSample.at));
          }
          lastSample = { at: now, bytes: v.bytesSent };
        }
        Object.assign(live, { fps: v.framesPerSecond ?? null, width: v.frameWidth ?? null, height: v.frameHeight ?? null });
      }
      const rv = out.remote.video;
      if (rv) {
        const sent = v && v.packetsSent;
        live.packetLoss = rv.fractionLost != null ? rv.fractionLost : sent ? rv.packetsLost / (sent + rv.packetsLost) : null;
      }
      const rtt = (out.pair && out.pair.currentRoundTripTime) ?? (rv && rv.roundTripTime);
      if (rtt != null) live.rttMs = Math.round(rtt * 1000);
      state.live = live;
      renderStats();
    } catch (e) {
      state.warnings.push(`getStats: ${e.message}`);
    }
  }

  function renderStats() {
    const l = state.live || {};
    const v = state.stats && state.stats.video;
    const set = (id, t) => { $(id).textContent = t; };
    set('st-bitrate', l.bitrateKbps != null ? `${l.bitrateKbps} kbit/s${state.maxBitrateKbps ? ` (cap ${state.maxBitrateKbps})` : ''}` : '–');
    set('st-fps', l.fps != null ? `${Math.round(l.fps)} fps` : '–');
    set('st-res', l.width ? `${l.width}×${l.height}` : '–');
    set('st-loss', l.packetLoss != null ? `${(l.packetLoss * 100).toFixed(1)} %` : '–');
    set('st-rtt', l.rttMs != null ? `${l.rttMs} ms` : '–');
    set('st-codec', (v && v.codec) || '–');
    set('st-limit', (v && v.qualityLimitationReason) || '–');
  }

  function showLinks() {
    const links = $('links');
    links.textContent = '';
    const watch = document.createElement('a');
    watch.href = new URL(`../watch/?stream=${encodeURIComponent(state.stream)}`, location.href).href;
    watch.textContent = 'watch';
    const hls = document.createElement('a');
    hls.href = new URL(`/hls/${encodeURIComponent(state.stream)}/master.m3u8`, location.href).href;
    hls.textContent = 'master.m3u8';
    const share = document.createElement('p');
    share.className = 'hint';
    share.append('Share: ');
    const url = document.createElement('code');
    url.id = 'share-url';
    url.textContent = watch.href;
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.textContent = 'Copy';
    copy.addEventListener('click', () => {
      navigator.clipboard?.writeText(watch.href).then(() => { copy.textContent = 'Copied'; }, () => { copy.textContent = 'Copy failed'; });
    });
    share.append(url, ' ', copy, ' · HLS: ');
    share.append(Object.assign(document.createElement('code'), { textContent: hls.href }));
    links.append(watch, hls, share);
  }

  // ---- wiring ------------------------------------------------------------------------

  for (const name of ['stream', 'signaling', 'codec', 'token', 'source', 'bitrate']) {
    const v = params.get(name);
    if (v !== null) $(name).value = v;
  }
  if (params.get('simulcast') !== null) $('simulcast').checked = params.get('simulcast') !== '0';
  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    // Enter in a field while publishing must not start a second session: it applies the
    // bitrate field instead.
    if (['idle', 'stopped', 'ended', 'error'].includes(state.phase)) start();
    else applyBitrate();
  });
  $('stop').addEventListener('click', () => stop());
  $('bitrate').addEventListener('change', applyBitrate);
  navigator.mediaDevices?.addEventListener?.('devicechange', refreshDevices);
  refreshDevices();
  window.addEventListener('offline', () => {
    if (['connecting', 'live'].includes(state.phase)) setStatus(state.phase, `${state.status} — network down`);
  });
  window.addEventListener('online', () => {
    if (['connecting', 'live'].includes(state.phase)) setStatus(state.phase, state.status.replace(/ — network down$/, ''));
  });
  window.addEventListener('pagehide', () => {
    // Best effort: end the WHIP session when the tab goes away.
    if (state.resource && ['connecting', 'live'].includes(state.phase)) {
      fetch(state.resource, { method: 'DELETE', headers: authHeaders({}), keepalive: true }).catch(() => {});
    }
  });
  window.whipcastPublish = { start, stop, refreshStats, applyBitrate, refreshDevices };
  setStatus('idle', 'idle');
  if (params.get('stream')) {
    setStatus('idle', $('source').value === 'screen'
      ? 'press Start to choose the screen or window to share'
      : `press Start to publish ${params.get('stream')}`);
    $('start').focus();
  }
})();
