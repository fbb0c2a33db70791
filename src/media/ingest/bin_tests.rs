//! The ingest bin, fed H.264 RTP made by a real encoder and payloader, stamped with
//! arrival times as `Pipeline::push` stamps them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::video_ingest;
use crate::media::mux::MuxTiming;
use crate::media::rung::source_rung;
use crate::media::test_support::{self, arriving, chunk, record_buffers, rtp_timestamp};
use crate::media::{VideoCodec, VideoInput};

const H264_PT: u8 = 102;

/// `seconds` of 160x90 H.264 at `fps` (a keyframe every second), as RTP packets. OpenH264,
/// the encoder of Chromium's H.264: its stream says no frame rate (no VUI timing), so
/// neither do the depayloaded caps (x264's does).
fn h264_rtp(fps: u32, seconds: u32) -> Vec<gst::Buffer> {
    test_support::generate(&format!(
        "videotestsrc pattern=smpte horizontal-speed=2 num-buffers={} \
         ! video/x-raw,format=I420,width=160,height=90,framerate={fps}/1 \
         ! openh264enc gop-size={fps} ! video/x-h264,profile=constrained-baseline \
         ! rtph264pay pt={H264_PT} mtu=1200 config-interval=-1 ! appsink name=out",
        fps * seconds
    ))
}

/// Pushes `packets` with arrival = RTP time (plus 0.1 ms per packet of a frame), then EOS.
fn push_all(src: &gst_app::AppSrc, packets: &[gst::Buffer]) {
    let first = rtp_timestamp(&packets[0].map_readable().unwrap());
    for (i, p) in packets.iter().enumerate() {
        let ts = rtp_timestamp(&p.map_readable().unwrap()).wrapping_sub(first);
        let at = Duration::from_micros(u64::from(ts) * 1_000_000 / 90_000 + (i as u64 % 8) * 100);
        src.push_buffer(arriving(p, at)).unwrap();
    }
    src.end_of_stream().unwrap();
}

const INPUT: VideoInput = VideoInput {
    codec: VideoCodec::H264,
    payload_type: H264_PT,
};

/// The passthrough path: depayloaded H.264 has PTS only, and cmafmux refuses video without
/// DTS ("Require DTS for video streams"), which would end every passthrough broadcast.
#[test]
fn passthrough_h264_gets_dts_and_is_cut_on_its_keyframes() {
    test_support::init();
    let ladder = test_support::ladder(&[], true);
    let pipeline = gst::Pipeline::new();
    let ingest = video_ingest(&pipeline, INPUT, &ladder, false).unwrap();
    assert!(
        ingest.raw_tee.is_none(),
        "passthrough only: nothing decoded"
    );
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: None,
    };
    let branch = source_rung(
        &pipeline,
        ingest.h264_tee.as_ref().unwrap(),
        timing,
        "source",
        None,
        gst::ClockTime::SECOND / 30,
    )
    .unwrap();
    let muxed = record_buffers(&branch.caps_source.static_pad("src").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    push_all(&ingest.appsrc, &h264_rtp(30, 3));
    let samples = test_support::drain(&pipeline, &branch.appsink);

    let caps = branch
        .caps_source
        .static_pad("src")
        .unwrap()
        .current_caps()
        .unwrap();
    test_support::stop(&pipeline);
    let muxed = muxed.seen();
    assert_eq!(muxed.len(), 90, "every frame depayloaded once");
    assert!(muxed.iter().all(|b| b.dts.is_some() && b.dts == b.pts));
    let codecs = gstreamer_pbutils::codec_utils_caps_get_mime_codec(&caps).unwrap();
    assert!(
        codecs.starts_with("avc1.42"),
        "constrained baseline: {codecs}"
    );

    let chunks: Vec<_> = samples.iter().map(chunk).collect();
    assert_eq!(
        chunks[0].init.as_deref(),
        Some(&["ftyp".to_string(), "moov".to_string()][..])
    );
    let keyframes: Vec<u64> = muxed
        .iter()
        .filter(|b| b.keyframe)
        .map(|b| b.running.unwrap().nseconds())
        .collect();
    assert_eq!(keyframes.len(), 3, "{keyframes:?}");
    // Cut only on the publisher's keyframes (the first of them at least one segment after
    // the fragment's start: which one depends on the arrival jitter).
    assert!(chunks.len() >= 2, "{chunks:?}");
    assert!(chunks.iter().all(|c| c.starts_fragment()), "{chunks:?}");
    for c in &chunks {
        assert!(
            keyframes.contains(&c.pts.nseconds()),
            "{c:?} vs {keyframes:?}"
        );
    }
    assert_eq!(chunks[0].pts, gst::ClockTime::ZERO);
    // Each fragment ends where the next one starts: RTP gives a frame no duration, and the
    // 100 ms `livesync` stamped on it made every fragment's last frame run 67 ms into the
    // next fragment (rung.rs `repeat_keyframes`).
    // Within 1 ms: fmp4mux rounds each sample duration to its timescale (10000 for caps
    // without a frame rate), 30 × 0.03 ms short per second.
    for pair in chunks.windows(2) {
        let end = pair[0].decode_start + pair[0].decode_duration;
        let per_ms = pair[0].decode_duration / pair[0].duration.mseconds().max(1);
        assert!(
            end.abs_diff(pair[1].decode_start) <= per_ms,
            "fragment ends at {end}, the next starts at {}: {pair:?}",
            pair[1].decode_start
        );
    }
}

/// The decode path: 15 fps H.264 RTP comes out of the raw tee as I420 at the ladder's 30
/// fps, every frame on the 30 fps grid from running time 0.
#[test]
fn h264_rtp_is_decoded_to_constant_rate_i420_on_the_frame_grid() {
    test_support::init();
    let ladder = test_support::ladder(&[("x", 90, 100)], false);
    let pipeline = gst::Pipeline::new();
    let ingest = video_ingest(&pipeline, INPUT, &ladder, false).unwrap();
    assert!(ingest.h264_tee.is_none());
    let tee = ingest.raw_tee.unwrap();
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline.add(&sink).unwrap();
    tee.link(&sink).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    push_all(&ingest.appsrc, &h264_rtp(15, 2));
    let samples = test_support::drain(&pipeline, &sink);
    test_support::stop(&pipeline);

    let caps = samples[0].caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<&str>("format").unwrap(), "I420");
    assert_eq!(s.get::<i32>("width").unwrap(), 160);
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(30, 1)
    );
    let pts: Vec<u64> = samples
        .iter()
        .map(|s| s.buffer().unwrap().pts().unwrap().nseconds())
        .collect();
    assert!(pts.len() >= 58, "{} frames for 2 s", pts.len());
    for (n, t) in pts.iter().enumerate() {
        let n = n as u64 + pts[0] * 30 / 1_000_000_000;
        assert_eq!(*t, n * 1_000_000_000 / 30, "frame {n}");
    }
}
