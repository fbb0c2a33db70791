//! Small typed element constructors shared by every bin: make, add, link, caps filters,
//! queues, the RTP/RTCP `appsrc`s and the jitter buffer, and the plugin check at start.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::MediaError;

/// Elements whose absence makes whipcast useless; checked once at start.
pub(crate) const REQUIRED_ELEMENTS: &[&str] = &[
    "appsrc",
    "appsink",
    "rtpjitterbuffer",
    "rtph264depay",
    "rtpvp8depay",
    "rtpvp9depay",
    "rtpopusdepay",
    "h264parse",
    "avdec_h264",
    "vp8dec",
    "vp9dec",
    "opusdec",
    "videoconvert",
    "videoscale",
    "videorate",
    "x264enc",
    "audioconvert",
    "audioresample",
    "audiorate",
    "audiotestsrc",
    "avenc_aac",
    "cmafmux",
    "tee",
    "queue",
    "livesync",
];

/// Jitter-buffer latency: enough to reorder and recover a NACKed packet on a decent link,
/// small enough not to matter against segment durations.
const JITTER_LATENCY_MS: u32 = 150;

pub(crate) fn make(factory: &str, name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("{factory} ({name})"),
            source,
        })
}

pub(crate) fn link(elements: &[&gst::Element]) -> Result<(), MediaError> {
    gst::Element::link_many(elements.iter().copied()).map_err(|source| MediaError::Build {
        what: "link".into(),
        source,
    })
}

pub(crate) fn add(bin: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), MediaError> {
    bin.add_many(elements.iter().copied())
        .map_err(|source| MediaError::Build {
            what: "add".into(),
            source,
        })
}

pub(crate) fn caps_filter(name: &str, caps: gst::Caps) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make("capsfilter")
        .name(name)
        .property("caps", caps)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("capsfilter {name}"),
            source,
        })
}

pub(crate) fn rtp_appsrc(name: &str, caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(caps)
        .is_live(true)
        .format(gst::Format::Time)
        // Buffers carry their network arrival time (pipeline.rs `push`), not the time they
        // were pushed.
        .do_timestamp(false)
        // Bounded: ~2 s of 5 Mbit/s video. If the pipeline stalls, `push_buffer` fails
        // rather than growing memory; the broadcast ends that stream only.
        .max_bytes(2 * 1024 * 1024)
        .block(false)
        .build()
}

/// The RTCP input of a jitter buffer: an appsrc for the publisher's sender reports, linked
/// to the buffer's `sink_rtcp` pad. The buffer answers each with a `handle-sync` signal
/// that maps the report onto its output timeline (lipsync.rs).
pub(crate) fn rtcp_input(
    pipeline: &gst::Pipeline,
    jbuf: &gst::Element,
    name: &str,
) -> Result<gst_app::AppSrc, MediaError> {
    let src = gst_app::AppSrc::builder()
        .name(name)
        .caps(&gst::Caps::new_empty_simple("application/x-rtcp"))
        .is_live(true)
        .format(gst::Format::Time)
        .max_bytes(64 * 1024)
        .block(false)
        .build();
    add(pipeline, &[src.upcast_ref()])?;
    let sink = jbuf
        .request_pad_simple("sink_rtcp")
        .ok_or(MediaError::Missing("the jitter buffer's sink_rtcp pad"))?;
    let srcpad = src
        .static_pad("src")
        .ok_or(MediaError::Missing("the appsrc's src pad"))?;
    srcpad.link(&sink).map_err(|source| MediaError::Link {
        what: format!("{name} → sink_rtcp"),
        source,
    })?;
    Ok(src)
}

pub(crate) fn jitterbuffer(name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make("rtpjitterbuffer")
        .name(name)
        .property("latency", JITTER_LATENCY_MS)
        .property("do-lost", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "rtpjitterbuffer".into(),
            source,
        })
}

/// How late a decoded frame (or audio buffer) may be before `livesync` repeats the previous
/// one in its place. Above the decode time of a loaded 2-core machine, so a slow frame is
/// not replaced; a stall of the publisher is filled within this.
///
/// The same on remuxed branches (the passthrough rung, a simulcast layer), though a
/// rendition's parts stop while `livesync` waits: measured on a simulcast layer that
/// stopped (tests/simulcast_layer_pause.rs), a player's blocking reload for the next part
/// waited 748 ms — hls.js allows max(3 × PART-TARGET, 0.8 × TARGETDURATION) before a
/// `levelLoadTimeOut`, 0.8 s with 1 s segments. 150 ms there cut that wait to 495–534 ms and
/// removed hls.js' stall as Chromium's layer stopped, but in tests/simulcast.rs the paused
/// layer's segments after the pause were then a whole segment off the others' in about a
/// third of the runs (a repeat kept as a boundary up to a frame interval after the others'
/// keyframes; moving it onto their instant did not cure it). Not understood yet.
const LIVESYNC_LATENCY: gst::ClockTime = gst::ClockTime::from_mseconds(400);

/// `livesync` (gst-plugins-rs): passes buffers on as they come and, when the next one is
/// more than [`LIVESYNC_LATENCY`] late on the clock (on top of the upstream latency),
/// repeats the last one (silence for raw audio) with the GAP flag, one buffer duration at a
/// time, for as long as nothing comes; what then arrives behind the timeline it kept is
/// dropped. So a stream that stalls keeps
/// its running time tied to the clock and its cadence, instead of a hole that videorate
/// (or audiorate, or the decoder's loss concealment) fills all at once when media comes
/// back: measured before (tests/timeline.rs, 7 s without packets), every rung published
/// 7 one-second segments of repeated frames within 0.4 s, and the audio 7 segments at once.
/// `sync=false`: no buffer waits for the clock, so it adds no latency; only a repeat does.
pub(crate) fn livesync(name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make("livesync")
        .name(name)
        .property("latency", LIVESYNC_LATENCY.nseconds())
        .property("sync", false)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("livesync {name}"),
            source,
        })
}

/// What a buffer probe returns to drop its buffer. Not `Drop`: gstreamer-rs takes the
/// buffer out of the probe info (and frees it), and GStreamer 1.22 core then unrefs the
/// NULL left there, one `gst_mini_object_unref` CRITICAL per dropped buffer (measured on
/// the passthrough rung's drops, whole.rs). `Handled`: the probe consumed it, and the push
/// returns OK.
pub(crate) const DROP_BUFFER: gst::PadProbeReturn = gst::PadProbeReturn::Handled;

/// Clears the GAP flag `livesync` puts on the buffers it repeats, on `element`'s source
/// pad, after `on_repeat` had a look at each of them (`true`: it was a repeat). The repeats
/// are ordinary media for the encoders and muxers downstream; which segments they make
/// gaps of is decided from the packet arrivals (gaps.rs).
pub(crate) fn unflag_repeats(
    element: &gst::Element,
    on_repeat: impl Fn(&mut gst::Buffer, bool) -> gst::PadProbeReturn + Send + Sync + 'static,
) {
    let Some(pad) = element.static_pad("src") else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let repeat = buffer.flags().contains(gst::BufferFlags::GAP);
        if repeat {
            buffer.make_mut().unset_flags(gst::BufferFlags::GAP);
        }
        on_repeat(buffer, repeat)
    });
}

pub(crate) fn queue(name: &str) -> Result<gst::Element, MediaError> {
    // Each branch runs on its own thread; 1 s of buffering absorbs encoder jitter.
    gst::ElementFactory::make("queue")
        .name(name)
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", gst::ClockTime::SECOND)
        .build()
        .map_err(|source| MediaError::Build {
            what: "queue".into(),
            source,
        })
}

/// The running time of a buffer timestamped `pts` on `pad`, by the pad's segment (`None`
/// without a time segment or outside it).
pub(crate) fn running_time(pad: &gst::Pad, pts: Option<gst::ClockTime>) -> Option<gst::ClockTime> {
    pad.sticky_event::<gst::event::Segment>(0).and_then(|ev| {
        ev.segment()
            .downcast_ref::<gst::format::Time>()
            .and_then(|seg| seg.to_running_time(pts))
    })
}
