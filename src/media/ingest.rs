//! The video ingest bin: RTP `appsrc` → jitter buffer → depayloader → (H.264: parse → tee
//! for the passthrough rung) → decoder → livesync → constant-rate I420 (frame_rate.rs, on one
//! exact grid) → the tee the ladder rungs hang off.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::elements::{
    add, caps_filter, jitterbuffer, link, livesync, make, queue, rtcp_input, rtp_appsrc,
    unflag_repeats,
};
use super::frame_rate::FrameRate;
use super::ladder::Ladder;
use super::rung::replace_broken_frames;
use super::{MediaError, VideoCodec, VideoInput};

/// Name of the video RTP `appsrc`.
pub(crate) const VIDEO_SRC: &str = "video_src";
/// Name of the video sender-report `appsrc`.
pub(crate) const VIDEO_RTCP: &str = "video_rtcp";

/// The video ingest chain, from `appsrc` up to (not including) the tee feeding the rungs.
/// Returns `(appsrc, depayloaded H.264 tee for passthrough if H.264, raw video tail)`.
pub(crate) struct VideoIngest {
    pub appsrc: gst_app::AppSrc,
    /// The publisher's sender reports for the video stream.
    pub rtcp: gst_app::AppSrc,
    /// The jitter buffer (its `ts-offset` aligns video with audio).
    pub jitter: gst::Element,
    /// Parsed H.264 (`stream-format=avc, alignment=au`), for the passthrough rung.
    pub h264_tee: Option<gst::Element>,
    /// Raw I420 video at the ladder frame rate; request pads from it per rung. `None` for a
    /// passthrough-only ladder: nothing to transcode, so nothing is decoded.
    pub raw_tee: Option<gst::Element>,
    /// The decoder (with `raw_tee`): its sink pad sees the publisher's keyframes.
    pub decoder: Option<gst::Element>,
}

/// `from_first_frame`: the decoded video starts at the first decoded frame rather than at
/// running time 0 (simulcast: see below).
pub(crate) fn video_ingest(
    pipeline: &gst::Pipeline,
    input: VideoInput,
    ladder: &Ladder,
    from_first_frame: bool,
) -> Result<VideoIngest, MediaError> {
    let encoding = match input.codec {
        VideoCodec::H264 => "H264",
        VideoCodec::Vp8 => "VP8",
        VideoCodec::Vp9 => "VP9",
    };
    let caps = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("clock-rate", 90_000i32)
        .field("encoding-name", encoding)
        .field("payload", i32::from(input.payload_type))
        .build();
    let appsrc = rtp_appsrc(VIDEO_SRC, &caps);
    let jbuf = jitterbuffer("video_jitter")?;
    let (depay, decoder) = match input.codec {
        VideoCodec::H264 => ("rtph264depay", "avdec_h264"),
        VideoCodec::Vp8 => ("rtpvp8depay", "vp8dec"),
        VideoCodec::Vp9 => ("rtpvp9depay", "vp9dec"),
    };
    let depay = make(depay, "video_depay")?;
    // Ask upstream (→ PLI) for a keyframe whenever a packet is lost.
    if depay.has_property("request-keyframe") {
        depay.set_property("request-keyframe", true);
    }
    // After a loss, nothing until that keyframe: frames referencing lost ones decode to
    // garbage, and the passthrough rung would hand them to players (after a stall, its
    // first segment began with them). livesync repeats the last good frame meanwhile.
    if depay.has_property("wait-for-keyframe") {
        depay.set_property("wait-for-keyframe", true);
    }
    add(pipeline, &[appsrc.upcast_ref(), &jbuf, &depay])?;
    link(&[appsrc.upcast_ref(), &jbuf, &depay])?;
    let rtcp = rtcp_input(pipeline, &jbuf, VIDEO_RTCP)?;

    // H.264 with the passthrough rung: parsed once, then a tee for the source rung (and the
    // decoder, if any rung transcodes).
    let h264_tee = if input.codec == VideoCodec::H264 && ladder.source.enabled {
        let parse = make("h264parse", "video_parse")?;
        let caps = caps_filter(
            "video_parse_caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        )?;
        let tee = make("tee", "h264_tee")?;
        add(pipeline, &[&parse, &caps, &tee])?;
        link(&[&depay, &parse, &caps, &tee])?;
        if let Some(pad) = tee.static_pad("sink") {
            replace_broken_frames(&pad, "source");
        }
        Some(tee)
    } else {
        None
    };
    // A passthrough-only ladder has nothing to transcode: remux only, no decoder (measured,
    // 720p30: 0.060–0.065 instead of 0.093–0.105 cores; BENCHMARKS.md "Passthrough-only").
    if ladder.rungs.is_empty()
        && let Some(tee) = h264_tee
    {
        return Ok(VideoIngest {
            appsrc,
            rtcp,
            jitter: jbuf,
            h264_tee: Some(tee),
            raw_tee: None,
            decoder: None,
        });
    }

    let decoder = make(decoder, "video_decoder")?;
    // Decoders ask upstream for a sync point on corrupt input; we turn that into a PLI.
    if decoder.has_property("automatic-request-sync-points") {
        decoder.set_property("automatic-request-sync-points", true);
    }
    // A publisher sending garbage must cost a keyframe request, not the stream: never turn
    // decode errors into a fatal bus error (GstVideoDecoder default: 10 in a row).
    if decoder.has_property("max-errors") {
        decoder.set_property("max-errors", -1i32);
    }
    // On the clock through a stall: the last frame repeated, not a hole filled in one
    // burst when frames come back (elements.rs `livesync`).
    let sync = livesync("video_livesync")?;
    unflag_repeats(&sync, |_, _| gst::PadProbeReturn::Ok);
    let convert = make("videoconvert", "video_convert")?;
    // The frame rate made constant without look-ahead (frame_rate.rs). From the first frame
    // in simulcast: a simulcast pipeline starts once its layers are planned, and its first
    // keyframe may be a whole GOP later (measured: 2 s with a publisher that ignores
    // keyframe requests); filled from running time 0, the transcoded rungs' first IDR would
    // be two seconds before the layers' first frame, and their segments out of step with
    // the layers'. Without simulcast the first frame is the first packet's, at 0.
    let rate = FrameRate::element("video_rate", from_first_frame);
    // WebRTC frame rates vary; every rung gets the same constant rate so keyframe
    // intervals are exact and identical in every rendition.
    let rate_caps = caps_filter(
        "video_rate_caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("framerate", gst::Fraction::new(ladder.video.fps as i32, 1))
            .build(),
    )?;
    let raw_tee = gst::ElementFactory::make("tee")
        .name("video_tee")
        .property("allow-not-linked", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "tee".into(),
            source,
        })?;
    add(
        pipeline,
        &[&decoder, &sync, &convert, &rate, &rate_caps, &raw_tee],
    )?;
    match &h264_tee {
        Some(tee) => {
            let q = queue("video_decode_queue")?;
            add(pipeline, &[&q])?;
            link(&[tee, &q, &decoder])?;
        }
        None => link(&[&depay, &decoder])?,
    }
    link(&[&decoder, &sync, &convert, &rate, &rate_caps, &raw_tee])?;
    Ok(VideoIngest {
        appsrc,
        rtcp,
        jitter: jbuf,
        h264_tee,
        raw_tee: Some(raw_tee),
        decoder: Some(decoder),
    })
}

/// A simulcast layer besides the top one (RFC 8853): its H.264 RTP, parsed, to a tee for
/// its passthrough rung. Never decoded: the transcoded rungs come from the top layer.
pub(crate) struct LayerIngest {
    pub appsrc: gst_app::AppSrc,
    /// The layer's jitter buffer: it takes the top layer's `ts-offset` (A/V alignment), so
    /// every layer's frames keep the timestamps of the top layer's.
    pub jitter: gst::Element,
    /// Parsed H.264 (`stream-format=avc, alignment=au`).
    pub tee: gst::Element,
}

/// `appsrc → rtpjitterbuffer → rtph264depay → h264parse → tee` for the simulcast layer
/// whose elements are named `{prefix}_…`.
pub(crate) fn layer_ingest(
    pipeline: &gst::Pipeline,
    prefix: &str,
    payload_type: u8,
) -> Result<LayerIngest, MediaError> {
    let caps = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("clock-rate", 90_000i32)
        .field("encoding-name", "H264")
        .field("payload", i32::from(payload_type))
        .build();
    let appsrc = rtp_appsrc(&format!("{prefix}_src"), &caps);
    let jitter = jitterbuffer(&format!("{prefix}_jitter"))?;
    let depay = make("rtph264depay", &format!("{prefix}_depay"))?;
    // As for the top layer (video_ingest): a loss asks for a keyframe, and nothing passes
    // until it comes.
    depay.set_property("request-keyframe", true);
    depay.set_property("wait-for-keyframe", true);
    let parse = make("h264parse", &format!("{prefix}_parse"))?;
    let parse_caps = caps_filter(
        &format!("{prefix}_parse_caps"),
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .build(),
    )?;
    let tee = make("tee", &format!("{prefix}_tee"))?;
    let chain = [
        appsrc.upcast_ref(),
        &jitter,
        &depay,
        &parse,
        &parse_caps,
        &tee,
    ];
    add(pipeline, &chain)?;
    link(&chain)?;
    if let Some(pad) = tee.static_pad("sink") {
        replace_broken_frames(&pad, prefix);
    }
    Ok(LayerIngest {
        appsrc,
        jitter,
        tee,
    })
}

#[cfg(test)]
mod bin_tests;
