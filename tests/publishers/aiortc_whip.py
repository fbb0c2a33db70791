#!/usr/bin/env python3
"""A WHIP publisher (RFC 9725) built on aiortc (pure-Python WebRTC, PyAV codecs).

usage: target/test-venv/bin/python aiortc_whip.py WHIP_URL SECONDS

Sends a moving 640x360@30 pattern (VP8, aiortc's first video codec) and a 440 Hz sine
(Opus) for SECONDS, then DELETEs the session. Exits 0 only if every step worked.

What aiortc sends that whipcast's own test publisher (webrtc-rs, tests/common/publisher.rs)
does not:
- a transport per m-section (its default bundle policy, balanced): each section has its own
  port and host candidate, in the m= and c= lines, with `a=group:BUNDLE 0 1`; the answerer
  bundles both (RFC 8843 §7.3) and aiortc then sends both on the first;
- VP8 on PT 97 first, then two H.264 (42001f, 42e01f), each with rtx (RFC 4588,
  `a=ssrc-group:FID`); Opus on PT 96 (not 111), then G722, PCMU, PCMA;
- `a=sendrecv`, `a=rtcp:9`, `a=end-of-candidates`, goog-remb, abs-send-time;
- media generated on demand, after the connection is up (no backlog), and encoded by
  aiortc's own libvpx / libopus bindings (PyAV), not GStreamer.
"""

import asyncio
import fractions
import math
import sys
import time
from array import array

import whip

whip.NAME = "aiortc_whip"
STEP_TIMEOUT = whip.STEP_TIMEOUT
fail, log = whip.fail, whip.log
WIDTH, HEIGHT = 640, 360
RATE, SAMPLES = 48000, 960  # 20 ms Opus frames
TONE_HZ = 440.0


try:
    import aioice.ice
    import av
    from aiortc import (AudioStreamTrack, RTCConfiguration, RTCPeerConnection,
                        RTCSessionDescription, VideoStreamTrack)
except ImportError as e:
    fail(f"{e} (run deploy/install-publisher-deps.sh; use target/test-venv/bin/python)")

# aioice gathers host candidates from every interface except loopback: its
# get_host_addresses() drops 127.0.0.1 and ::1 outright. In the loopback-only test namespace
# that leaves no candidate at all, and outside it, addresses whipcast (bound to 127.0.0.1
# only) cannot answer from. gather_candidates() looks the function up in aioice.ice at call
# time, so replacing it there makes 127.0.0.1 the one and only host candidate.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class Tone(AudioStreamTrack):
    """A 440 Hz sine at half scale, 48 kHz mono, paced in real time."""

    def __init__(self):
        super().__init__()
        self._start = None
        self._pts = 0

    async def recv(self):
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(max(0.0, self._start + self._pts / RATE - time.time()))
        step = 2 * math.pi * TONE_HZ / RATE
        pcm = array("h", (int(16383 * math.sin(step * (self._pts + i))) for i in range(SAMPLES)))
        frame = av.AudioFrame(format="s16", layout="mono", samples=SAMPLES)
        frame.planes[0].update(pcm.tobytes())
        frame.pts, frame.sample_rate = self._pts, RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self._pts += SAMPLES
        return frame


class Pattern(VideoStreamTrack):
    """Luma and chroma gradients scrolling in opposite directions (every frame differs)."""

    def __init__(self):
        super().__init__()
        self._n = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for index, plane in enumerate(frame.planes):
            width = plane.width
            shift = (self._n * 4 * (1 if index == 0 else -1)) % width
            row = bytes((x * 255 // width + 40 * index) % 256 for x in range(width))
            row = row[shift:] + row[:shift]
            row += bytes(plane.line_size - width)  # line padding, if any
            plane.update(row * plane.height)
        frame.pts, frame.time_base = pts, time_base
        self._n += 1
        return frame


async def publish(url, seconds):
    # No STUN: aiortc's default is a public STUN server, which no test may reach.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    def on_state():
        log(f"connection state {pc.connectionState}")
        if pc.connectionState == "connected":
            connected.set()

    try:
        pc.addTrack(Pattern())
        pc.addTrack(Tone())
        # aiortc gathers every candidate inside setLocalDescription: no trickle, as RFC 9725
        # §4.3.2 allows.
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        log("offer:\n" + sdp)

        session, answer = await asyncio.to_thread(whip.post_offer, url, sdp)

        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        try:
            await asyncio.wait_for(connected.wait(), STEP_TIMEOUT)
        except asyncio.TimeoutError:
            fail(f"peer connection still {pc.connectionState} after {STEP_TIMEOUT:.0f} s")

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if pc.connectionState != "connected":
                fail(f"peer connection {pc.connectionState} while publishing")
            await asyncio.sleep(0.2)

        await asyncio.to_thread(whip.delete, session, seconds)
    finally:
        await pc.close()


def main():
    if len(sys.argv) != 3:
        fail("usage: aiortc_whip.py WHIP_URL SECONDS")
    asyncio.run(publish(sys.argv[1], float(sys.argv[2])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
