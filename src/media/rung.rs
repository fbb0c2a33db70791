//! The video ladder's branches off a tee: a transcoded rung (scale → x264enc → cmafmux) and
//! the passthrough rung (the publisher's H.264, remuxed), each ending in its appsink.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video as gst_video;
use tracing::{debug, warn};

use std::sync::Arc;

use super::MediaError;
use super::align::{Align, muxer_timing};
use super::elements::{DROP_BUFFER, add, caps_filter, link, livesync, make, queue, unflag_repeats};
use super::ladder::{Ladder, PlannedRung};
use super::mux::{Branch, MuxTiming, appsink, cmafmux, split_first_fragment};
use super::whole::{Verdict, Whole, looks_whole};

/// One transcoded rung: `queue ! videoscale ! capsfilter ! x264enc ! capsfilter ! h264parse !
/// cmafmux ! appsink`, linked from a new request pad of `tee`.
///
/// Its keyframes: without `align`, cmafmux asks x264enc for one at each fragment boundary
/// of its own grid. With `align` (a rung transcoded from a simulcast publisher's top layer,
/// participant `index`), the keyframes are forced where the layers have theirs
/// ([`Align::force_keys`]) and only those where align.rs puts a boundary common to every
/// rendition reach the muxer as keyframes; it cuts at each, as the layers' muxers do.
pub(crate) fn video_rung(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    rung: &PlannedRung,
    ladder: &Ladder,
    timing: MuxTiming,
    align: Option<(&Arc<Align>, usize)>,
) -> Result<Branch, MediaError> {
    let n = &rung.name;
    let q = queue(&format!("{n}_queue"))?;
    let scale = make("videoscale", &format!("{n}_scale"))?;
    let raw_caps = caps_filter(
        &format!("{n}_raw_caps"),
        gst::Caps::builder("video/x-raw")
            // Without I420 here x264enc negotiates Y444 and encodes High 4:4:4, which no
            // HLS player decodes (measured with GStreamer 1.22).
            .field("format", "I420")
            .field("width", rung.width as i32)
            .field("height", rung.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    )?;
    let fps = ladder.video.fps;
    let mut keyint = fps * (timing.segment.as_millis() as u32).div_ceil(1000).max(1);
    if align.is_some() {
        // The forced keyframes come once per segment (the publisher's, steered by PLI);
        // x264's own would fall between them and cost bits for nothing. Some still come,
        // should the publisher's keyframes stop for long.
        keyint *= 4;
    }
    let enc = gst::ElementFactory::make("x264enc")
        .name(format!("{n}_x264enc"))
        .property("bitrate", rung.bitrate_kbps)
        .property("bframes", 0u32)
        .property("key-int-max", keyint)
        .property_from_str("tune", "zerolatency")
        .property_from_str("speed-preset", &ladder.video.preset)
        // No scene-cut keyframes: keyframes only where cmafmux forces them, so segment
        // boundaries are identical in every rung (HLS2 §6.2.4).
        .property("option-string", "scenecut=0")
        .build()
        .map_err(|source| MediaError::Build {
            what: "x264enc".into(),
            source,
        })?;
    let h264_caps = caps_filter(
        &format!("{n}_h264_caps"),
        gst::Caps::builder("video/x-h264")
            .field("profile", ladder.video.profile.as_str())
            .build(),
    )?;
    let parse = make("h264parse", &format!("{n}_parse"))?;
    let muxer = mux_timing(timing, align.is_some());
    let mux = cmafmux(&format!("{n}_mux"), muxer, align.is_none())?;
    // Before the first-fragment split below, which looks for the first keyframe.
    if let (Some((align, index)), Some(pad)) = (align, parse.static_pad("src")) {
        align.install(&pad, index);
    }
    if let (Some(part), Some(pad)) = (muxer.part, parse.static_pad("src")) {
        split_first_fragment(&mux, &pad, part);
    }
    let sink = appsink(&format!("{n}_sink"));
    branch_from_tee(
        pipeline,
        tee,
        &[
            &q,
            &scale,
            &raw_caps,
            &enc,
            &h264_caps,
            &parse,
            &mux,
            sink.upcast_ref(),
        ],
    )?;
    Ok(Branch {
        appsink: sink,
        caps_source: parse,
    })
}

/// The passthrough rung: the publisher's H.264, remuxed; segments cut on its keyframes.
/// `prefix` names its elements (`source`, or a simulcast layer's `layer1`, …); `align`,
/// for a simulcast layer, leaves it only the keyframes every layer has (align.rs); `frame`
/// is the publisher's nominal frame interval (see [`repeat_keyframes`] on durations).
pub(crate) fn source_rung(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    timing: MuxTiming,
    prefix: &str,
    align: Option<(&Arc<Align>, usize)>,
    frame: gst::ClockTime,
) -> Result<Branch, MediaError> {
    let q = queue(&format!("{prefix}_queue"))?;
    // cmafmux requires DTS on video ("Require DTS for video streams"). The depayloaded stream has PTS only;
    // WebRTC H.264 has no B-frames (OBS forces bf=0, browsers never use them), so DTS = PTS.
    // A buffer with no PTS either (seen after the process stalled for 3 s: the jitter buffer
    // let an untimed buffer through) is dropped: cmafmux answers it with a flow error that
    // ends the broadcast ("Require DTS for video streams"). The next keyframe heals the
    // stream; the decoder branch asks the publisher for one on the resulting corruption.
    if let Some(pad) = q.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, |_pad, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
                && buffer.dts().is_none()
            {
                let Some(pts) = buffer.pts() else {
                    return DROP_BUFFER;
                };
                buffer.make_mut().set_dts(pts);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let sync = livesync(&format!("{prefix}_livesync"))?;
    repeat_keyframes(&sync, frame);
    let muxer = mux_timing(timing, align.is_some());
    let mux = cmafmux(&format!("{prefix}_mux"), muxer, false)?;
    // Before the first-fragment split below, which looks for the first keyframe.
    if let (Some((align, index)), Some(pad)) = (align, q.static_pad("src")) {
        align.install(&pad, index);
    }
    // The first segment ends at the publisher's first keyframe one chunk (a part less
    // VIDEO_EARLY) or more after its first one; broadcast.rs asks for that keyframe
    // (keyframes.rs with_first_segment).
    if let (Some(part), Some(pad)) = (muxer.part, q.static_pad("src")) {
        split_first_fragment(&mux, &pad, part);
    }
    let sink = appsink(&format!("{prefix}_sink"));
    branch_from_tee(pipeline, tee, &[&sync, &q, &mux, sink.upcast_ref()])?;
    Ok(Branch {
        appsink: sink,
        caps_source: q,
    })
}

/// The muxer timing of a rung: the stream's, or for a simulcast participant (`aligned`),
/// one that cuts wherever a keyframe reaches it (align.rs `Cuts`, `muxer_timing`).
fn mux_timing(timing: MuxTiming, aligned: bool) -> MuxTiming {
    if aligned {
        muxer_timing(timing)
    } else {
        timing
    }
    .for_video()
}

/// Through a stall the passthrough rung is kept on the clock like the decoded video
/// (elements.rs `livesync`), but a repeated H.264 access unit is only valid, and the muxer
/// can only cut a segment at it, if it is a keyframe: each repeat becomes a copy of the
/// publisher's last keyframe (with the repeat's timestamps). Until the first keyframe,
/// repeats are dropped. Players skip what these make (gaps.rs); a client that does not
/// know `EXT-X-GAP` decodes a still picture.
///
/// A repeat resets a decoder's references to that keyframe, so the publisher's frames
/// after the stall, when they are predicted from frames before it (a network stall, not
/// an encoder that paused and restarts with a keyframe), or from one `livesync` dropped
/// for arriving behind its repeats, decode wrong until the next keyframe. The first such
/// frame asks the publisher for one (an upstream force-key-unit event: the appsrc turns it
/// into a PLI, bus.rs `watch_keyframe_requests`).
///
/// Durations: RTP says none, and `livesync` stamps a buffer without one with 100 ms
/// (its default, caps without a frame rate). fmp4mux takes the duration of a fragment's
/// last sample from the buffer, only ever lengthening it to the next fragment's start, so
/// every segment's last frame lasted 100 ms: measured, each segment of a 30 fps layer ran
/// 67 ms into the next one's (trun), and hls.js, which places a segment where the previous
/// one's media ended, placed segment starts 67–180 ms off, with overlaps and holes at level
/// switches (tests/simulcast.rs, its debug log). A publisher's frame gets
/// the nominal frame interval `frame` instead: a frame that comes later is stretched to it
/// by fmp4mux; one that comes sooner (jitter, a faster publisher) overlaps by that little.
/// Repeats keep `livesync`'s 100 ms: that is their spacing.
fn repeat_keyframes(sync: &gst::Element, frame: gst::ClockTime) {
    struct Last {
        key: Option<gst::Buffer>,
        repeated: bool,
    }
    let last: std::sync::Mutex<Last> = std::sync::Mutex::new(Last {
        key: None,
        repeated: false,
    });
    let sink = sync.static_pad("sink");
    unflag_repeats(sync, move |buffer, repeat| {
        let Ok(mut last) = last.lock() else {
            return DROP_BUFFER;
        };
        if !repeat {
            buffer.make_mut().set_duration(frame);
            let delta = buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            if !delta {
                last.key = Some(buffer.clone());
            } else if last.repeated
                && let Some(sink) = &sink
            {
                debug!("predicted frames after repeated keyframes: asking for a keyframe");
                request_keyframe(sink);
            }
            last.repeated = false;
            return gst::PadProbeReturn::Ok;
        }
        let Some(key) = last.key.as_ref() else {
            return DROP_BUFFER;
        };
        *buffer = repeat_of(key, buffer);
        last.repeated = true;
        gst::PadProbeReturn::Ok
    });
}

/// Keeps the frames that lost their first slices to packet loss, and the frames predicted
/// from them, out of a publisher's H.264 (whole.rs), on `pad`: the sink pad of the tee
/// after the ingest's parser, so the passthrough rung and the decoder of the rungs
/// transcoded from it see the same frames. Each is replaced by a copy of the last whole
/// keyframe with its own timestamps, marked as a repeat (align.rs
/// [`REPEAT`](super::align::REPEAT)), as `livesync` fills a stall: the rendition keeps its
/// cadence, and a simulcast layer is not taken for absent by the alignment (measured with
/// the frames dropped instead: the top layer and the rung transcoded from it were marked
/// absent, and that rung's segment numbers went one ahead of the layers'). Before any whole
/// keyframe they are dropped (measured with the check on the passthrough branch only: the
/// decoder took a first unit the passthrough dropped, and the rung transcoded from the top
/// simulcast layer began a segment, and its numbering, two seconds before the layers,
/// tests/obs_shaped.rs). The first such frame asks the publisher for a keyframe (an
/// upstream force-key-unit event: the appsrc turns it into a PLI, bus.rs
/// `watch_keyframe_requests`).
pub(crate) fn replace_broken_frames(pad: &gst::Pad, prefix: &str) {
    struct State {
        whole: Whole,
        last_key: Option<gst::Buffer>,
    }
    let state = std::sync::Mutex::new(State {
        whole: Whole::default(),
        last_key: None,
    });
    let prefix = prefix.to_string();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let looks = buffer.map_readable().ok().and_then(|map| looks_whole(&map));
        let Ok(mut state) = state.lock() else {
            return DROP_BUFFER;
        };
        match state.whole.judge(keyframe, looks) {
            Verdict::Pass => {
                if keyframe {
                    state.last_key = Some(buffer.clone());
                }
                gst::PadProbeReturn::Ok
            }
            Verdict::Replace { ask_keyframe } => {
                if ask_keyframe {
                    warn!(
                        branch = %prefix,
                        keyframe,
                        broken = state.whole.broken(),
                        "a frame lost its first slices (packets lost): replaced, with what \
                         follows, by the last whole keyframe until a new one; asking for it"
                    );
                    request_keyframe(pad);
                }
                let Some(key) = state.last_key.as_ref() else {
                    return DROP_BUFFER;
                };
                *buffer = repeat_of(key, buffer);
                gst::PadProbeReturn::Ok
            }
        }
    });
}

/// A copy of keyframe `key` in the place of `at` (its timestamps and duration), marked as
/// a repeat: a frame any decoder decodes where the publisher's is missing or broken. A
/// simulcast layer's alignment tells repeats from keyframes by the mark (align.rs).
fn repeat_of(key: &gst::Buffer, at: &gst::BufferRef) -> gst::Buffer {
    let mut copy = key.copy();
    {
        let b = copy.make_mut();
        b.set_pts(at.pts());
        b.set_dts(at.dts());
        b.set_duration(at.duration());
        b.unset_flags(gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::DISCONT);
        b.set_flags(super::align::REPEAT);
    }
    copy
}

/// Asks the publisher for a keyframe from `sink` (a sink pad of the branch): an upstream
/// force-key-unit event, which the ingest's appsrc turns into a PLI (bus.rs
/// `watch_keyframe_requests`).
fn request_keyframe(sink: &gst::Pad) {
    sink.push_event(
        gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build(),
    );
}

/// Adds `chain` to the pipeline, links it in order, brings it to the pipeline's state (it
/// may be added while the pipeline is already playing) and links `tee` to its first element
/// through a new request pad.
fn branch_from_tee(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    chain: &[&gst::Element],
) -> Result<(), MediaError> {
    let first = chain
        .first()
        .ok_or(MediaError::Missing("a branch's first element"))?;
    add(pipeline, chain)?;
    link(chain)?;
    for e in chain.iter().rev() {
        e.sync_state_with_parent()
            .map_err(|source| MediaError::Build {
                what: format!("sync state {}", e.name()),
                source,
            })?;
    }
    let src = tee
        .request_pad_simple("src_%u")
        .ok_or(MediaError::Missing("a src pad of the tee"))?;
    let sink = first
        .static_pad("sink")
        .ok_or(MediaError::Missing("the branch queue's sink pad"))?;
    src.link(&sink).map_err(|source| MediaError::Link {
        what: format!("tee → {}", first.name()),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod bin_tests;
