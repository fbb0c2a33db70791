//! The video ingest bin: RTP `appsrc` → jitter buffer → depayloader → (H.264: parse → tee
//! for the passthrough rung) → decoder → livesync → constant-rate I420 → the tee the ladder
//! rungs hang off, with the frame-grid snap that keeps every rung's timestamps exact.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
#[cfg(test)]
use gstreamer_video as gst_video;

use super::elements::{
    add, caps_filter, jitterbuffer, link, livesync, make, queue, rtcp_input, rtp_appsrc,
    unflag_repeats,
};
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
    // On the clock through a stall: the last frame repeated, not a hole that videorate
    // fills in one burst when frames come back (elements.rs `livesync`).
    let sync = livesync("video_livesync")?;
    unflag_repeats(&sync, |_, _| gst::PadProbeReturn::Ok);
    let convert = make("videoconvert", "video_convert")?;
    let rate = make("videorate", "video_rate")?;
    // videorate fills from the segment start (running time 0) up to the first frame with
    // copies of it. Without simulcast the first frame is the first packet's, at 0. A
    // simulcast pipeline starts once its layers are planned, and its first keyframe may be
    // a whole GOP later (measured: 2 s with a publisher that ignores keyframe requests):
    // the transcoded rungs' first IDR would be at 0, two seconds before the layers' first
    // frame, and their segments out of step with the layers'.
    if from_first_frame {
        rate.set_property("skip-to-first", true);
    }
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
    if let Some(pad) = rate_caps.static_pad("src") {
        snap_to_frame_grid(&pad, ladder.video.fps);
    }
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

/// Frame `n` of a constant `fps` stream starting at 0: its timestamp and duration in ns, as
/// videorate computes them when it never re-bases (`n · 10⁹ / fps`, truncated).
fn frame_slot(n: u64, fps: u32) -> (u64, u64) {
    let at = |n: u64| (u128::from(n) * 1_000_000_000 / u128::from(fps)) as u64;
    (at(n), at(n + 1) - at(n))
}

/// The frame of the `fps` grid nearest to `pts_ns`: its timestamp and duration.
fn nearest_frame(pts_ns: u64, fps: u32) -> (u64, u64) {
    let n = (u128::from(pts_ns) * u128::from(fps) + 500_000_000) / 1_000_000_000;
    frame_slot(n as u64, fps)
}

/// Puts every frame leaving videorate back on one exact grid from running time 0.
///
/// videorate re-bases its output on every caps change (a publisher changing resolution,
/// which browsers do as their bandwidth estimate grows): the base moves by
/// `count · 10⁹ / fps` truncated and the count restarts, so from then on a frame lands 1 ns
/// early whenever the two truncations add up (measured, GStreamer 1.22: a frame due at
/// 20.000000000 s stamped 19.999999999 s). cmafmux then keeps that frame in the chunk
/// before the boundary, which becomes one frame longer than PART-TARGET (RFC 8216bis
/// §4.4.4.9 forbids a part above it), the next one frame shorter. The grid's origin is
/// running time 0, the first video packet (`MediaSpec::epoch`), where videorate starts.
fn snap_to_frame_grid(pad: &gst::Pad, fps: u32) {
    if fps == 0 {
        return;
    }
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        let (at, duration) = nearest_frame(pts.nseconds(), fps);
        if at != pts.nseconds()
            || buffer.duration() != Some(gst::ClockTime::from_nseconds(duration))
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(at));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod bin_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_snap_to_the_grid_from_zero() {
        assert_eq!(frame_slot(0, 30), (0, 33_333_333));
        assert_eq!(frame_slot(1, 30), (33_333_333, 33_333_333));
        assert_eq!(frame_slot(2, 30), (66_666_666, 33_333_334));
        assert_eq!(
            nearest_frame(19_999_999_999, 30),
            (20_000_000_000, 33_333_333)
        );
        assert_eq!(
            nearest_frame(20_033_333_332, 30),
            (20_033_333_333, 33_333_333)
        );
        assert_eq!(nearest_frame(66_666_667, 30), (66_666_666, 33_333_334));
        // Six frames make a 200 ms part exactly, wherever the part starts.
        for start in [0u64, 474, 600, 601, 602] {
            let (a, _) = frame_slot(start, 30);
            let (b, _) = frame_slot(start + 6, 30);
            assert_eq!(b - a, 200_000_000, "from frame {start}");
        }
    }

    /// The real videorate, fed frames whose size changes every 10 frames (as a browser's
    /// encoder does): without the probe some output timestamps fall 1 ns before the grid
    /// (GStreamer 1.22); with it every one is on it.
    #[test]
    fn videorate_output_stays_on_the_grid_across_caps_changes() {
        gst::init().expect("gstreamer");
        let run = |snap: bool| -> Vec<(u64, u64)> {
            let pipeline = gst::Pipeline::new();
            let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
            let rate = make("videorate", "rate").expect("videorate");
            let caps = caps_filter(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .expect("capsfilter");
            let sink = gst_app::AppSink::builder().sync(false).build();
            pipeline
                .add_many([src.upcast_ref(), &rate, &caps, sink.upcast_ref()])
                .expect("add");
            gst::Element::link_many([src.upcast_ref(), &rate, &caps, sink.upcast_ref()])
                .expect("link");
            if snap {
                snap_to_frame_grid(&caps.static_pad("src").expect("src pad"), 30);
            }
            pipeline.set_state(gst::State::Playing).expect("play");
            // Irregular input timestamps (network arrival), sizes changing every 10 frames.
            for i in 0u64..120 {
                let (w, h) = if (i / 10) % 2 == 0 {
                    (64, 36)
                } else {
                    (96, 54)
                };
                let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
                    .fps(gst::Fraction::new(30, 1))
                    .build()
                    .expect("info")
                    .to_caps()
                    .expect("caps");
                src.set_caps(Some(&caps));
                let size = (w * h * 3 / 2) as usize;
                let mut buffer = gst::Buffer::with_size(size).expect("buffer");
                let jitter = (i * 7_919_000) % 9_000_000;
                buffer
                    .get_mut()
                    .expect("writable")
                    .set_pts(gst::ClockTime::from_nseconds(i * 33_333_333 + jitter));
                src.push_buffer(buffer).expect("push");
            }
            src.end_of_stream().expect("eos");
            let mut out = Vec::new();
            while let Ok(sample) = sink.pull_sample() {
                let b = sample.buffer().expect("buffer");
                out.push((
                    b.pts().expect("pts").nseconds(),
                    b.duration().expect("duration").nseconds(),
                ));
            }
            pipeline.set_state(gst::State::Null).expect("stop");
            out
        };
        let off_grid = |frames: &[(u64, u64)]| {
            frames
                .iter()
                .filter(|(pts, _)| nearest_frame(*pts, 30).0 != *pts)
                .count()
        };
        let raw = run(false);
        assert!(raw.len() > 100, "{} frames", raw.len());
        assert!(
            off_grid(&raw) > 0,
            "videorate kept the grid by itself: the probe would be unneeded"
        );
        let snapped = run(true);
        assert_eq!(off_grid(&snapped), 0, "{snapped:?}");
        for w in snapped.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous: {w:?}");
        }
    }
}
