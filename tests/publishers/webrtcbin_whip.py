#!/usr/bin/python3
"""A WHIP publisher (RFC 9725) built on GStreamer's webrtcbin, driven through PyGObject.

usage: /usr/bin/python3 webrtcbin_whip.py WHIP_URL SECONDS

Sends a moving videotestsrc (640x360@30, x264 constrained baseline, RTP H.264) and a 440 Hz
sine (Opus) for SECONDS, then DELETEs the session. Exits 0 only if every step worked.

What webrtcbin sends that whipcast's own test publisher (webrtc-rs, tests/common/publisher.rs)
does not:
- with bundle-policy max-bundle, the audio section is `m=audio 0 ... a=bundle-only` (RFC 8843
  §7.2.1: port 0 with bundle-only means "in the BUNDLE group, on the transport of the first
  section", NOT rejected, RFC 3264 §6);
- `a=sendrecv` rather than sendonly; the H.264 fmtp carries sprop-parameter-sets; no
  `a=extmap` at all; msid as `a=ssrc:N msid:` (RFC 5576 style); session-level
  `a=ice-options:trickle` although every candidate is in the offer; TCP host candidates
  (active, passive) next to the UDP one; `a=rtcp-mux-only`;
- the pipeline runs before the connection does, so once DTLS is up it first sends what the
  encoders made meanwhile (seen: 1.3 s of audio RTP within 35 ms), then live pace.
"""

import ctypes
import sys
import threading
import time

import whip

whip.NAME = "webrtcbin_whip"
STEP_TIMEOUT = whip.STEP_TIMEOUT
fail, log = whip.fail, whip.log


try:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstSdp", "1.0")
    gi.require_version("GstWebRTC", "1.0")
    gi.require_version("Nice", "0.1")
    from gi.repository import Gst, GstSdp, GstWebRTC, Nice
except (ImportError, ValueError) as e:
    fail(f"{e} (run deploy/install-publisher-deps.sh; use Debian's /usr/bin/python3)")

# bundle-policy is set on purpose: webrtcbin's own default (GStreamer 1.22) is "none", which
# offers two independent transports (both m= lines on port 9, no BUNDLE group). max-bundle,
# what webrtcbin applications commonly set to get a single transport, is the case under
# test: only it gives the second section port 0 + bundle-only.
PIPELINE = """
webrtcbin name=webrtc bundle-policy=max-bundle
videotestsrc is-live=true pattern=smpte horizontal-speed=4
  ! video/x-raw,format=I420,width=640,height=360,framerate=30/1
  ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max=60
  ! video/x-h264,profile=constrained-baseline
  ! rtph264pay config-interval=-1 aggregate-mode=zero-latency
  ! application/x-rtp,media=video,encoding-name=H264,payload=96
  ! webrtc.
audiotestsrc is-live=true wave=sine freq=440
  ! audioconvert ! audioresample ! audio/x-raw,rate=48000,channels=1
  ! opusenc ! rtpopuspay
  ! application/x-rtp,media=audio,encoding-name=OPUS,payload=111
  ! webrtc.
"""
ELEMENTS = [
    "webrtcbin", "nicesrc", "nicesink", "dtlssrtpenc", "videotestsrc", "x264enc",
    "rtph264pay", "audiotestsrc", "opusenc", "rtpopuspay",
]


def wait(event, what):
    if not event.wait(STEP_TIMEOUT):
        fail(f"timed out after {STEP_TIMEOUT:.0f} s waiting for {what}")


def check_bus(pipeline):
    msg = pipeline.get_bus().pop_filtered(Gst.MessageType.ERROR)
    if msg is not None:
        err, debug = msg.parse_error()
        fail(f"pipeline error from {msg.src.get_name()}: {err.message} ({debug})")


def keep_reference(obj):
    """Takes one more reference on a GObject, for webrtcbin's ice-agent.

    GStreamer 1.22's webrtcbin keeps its GstWebRTCNice with the floating reference it was
    created with; PyGObject sinks that reference when the property is read, so the Python
    wrapper becomes the only owner, and when the wrapper goes away the agent is freed under
    webrtcbin, which unrefs it once more on dispose (GStreamer-CRITICAL ref_count > 0 at
    exit, or worse). PyGObject's own ref() is a no-op, hence libgobject directly.
    """
    capsule = ctypes.pythonapi.PyCapsule_GetPointer
    capsule.restype, capsule.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    gobject = ctypes.CDLL("libgobject-2.0.so.0")
    gobject.g_object_ref.restype, gobject.g_object_ref.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    gobject.g_object_ref(capsule(obj.__gpointer__, None))


def promise_reply(promise, what):
    if promise.wait() != Gst.PromiseResult.REPLIED:
        fail(f"{what}: promise not replied")
    reply = promise.get_reply()
    if reply is not None and reply.has_field("error"):
        fail(f"{what}: {reply.get_value('error').message}")
    return reply


def main():
    if len(sys.argv) != 3:
        fail("usage: webrtcbin_whip.py WHIP_URL SECONDS")
    url, seconds = sys.argv[1], float(sys.argv[2])
    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        fail(f"GStreamer elements missing: {', '.join(missing)} "
             "(run deploy/install-deps.sh and deploy/install-publisher-deps.sh)")

    pipeline = Gst.parse_launch(PIPELINE)
    try:
        publish(pipeline, url, seconds)
    finally:
        # Also on fail(): a pipeline disposed while PLAYING buries the real message in
        # GStreamer-CRITICAL noise.
        pipeline.set_state(Gst.State.NULL)
    return 0


def publish(pipeline, url, seconds):
    webrtc = pipeline.get_by_name("webrtc")
    # libnice gathers from every interface except loopback ones (nice_interfaces_get_local_ips
    # is called with include_loopback=FALSE and NiceAgent has no property to change that), so
    # in the loopback-only test namespace it would gather nothing at all. Giving the agent an
    # explicit local address replaces interface discovery: 127.0.0.1 is the only address it
    # gathers on, inside the namespace or not.
    ice = webrtc.get_property("ice-agent")
    keep_reference(ice)
    agent = ice.get_property("agent")
    loopback = Nice.Address.new()
    if not loopback.set_from_string("127.0.0.1") or not agent.add_local_address(loopback):
        fail("libnice refused 127.0.0.1 as a local address")

    negotiation_needed = threading.Event()
    gathered = threading.Event()
    connected = threading.Event()
    webrtc.connect("on-negotiation-needed", lambda _: negotiation_needed.set())

    def on_gathering(element, _pspec):
        if element.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            gathered.set()

    def on_connection(element, _pspec):
        state = element.get_property("connection-state")
        log(f"connection state {state.value_nick}")
        if state == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            connected.set()

    webrtc.connect("notify::ice-gathering-state", on_gathering)
    webrtc.connect("notify::connection-state", on_connection)

    if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
        check_bus(pipeline)
        fail("pipeline does not start")
    wait(negotiation_needed, "on-negotiation-needed")

    promise = Gst.Promise.new()
    webrtc.emit("create-offer", None, promise)
    # PyGObject hands out the reply's offer without a reference of its own: it is freed with
    # the (copied) reply structure, so copy it before that wrapper goes away.
    reply = promise_reply(promise, "create-offer")
    offer = reply.get_value("offer")
    if offer is None:
        fail("create-offer gave no offer")
    offer = offer.copy()
    del reply
    promise = Gst.Promise.new()
    webrtc.emit("set-local-description", offer, promise)
    promise_reply(promise, "set-local-description")

    # No trickle: RFC 9725 §4.3.2 lets a client send every candidate in the offer, and
    # whipcast gets them all at once (OBS does the same).
    wait(gathered, "ICE gathering to complete")
    check_bus(pipeline)
    sdp = webrtc.get_property("local-description").sdp.as_text()
    log("offer:\n" + sdp)

    session, answer = whip.post_offer(url, sdp)

    result, message = GstSdp.SDPMessage.new_from_text(answer)
    if result != GstSdp.SDPResult.OK:
        fail(f"answer does not parse ({result}):\n{answer}")
    description = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, message)
    promise = Gst.Promise.new()
    webrtc.emit("set-remote-description", description, promise)
    promise_reply(promise, "set-remote-description")
    wait(connected, "the peer connection to connect")

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        check_bus(pipeline)
        state = webrtc.get_property("connection-state")
        if state != GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            fail(f"peer connection {state.value_nick} while publishing")
        time.sleep(0.2)

    whip.delete(session, seconds)

if __name__ == "__main__":
    sys.exit(main())
