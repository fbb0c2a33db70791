//! The audio bin, fed Opus RTP made by a real encoder, with network jitter and a sender
//! whose timestamps jump (DTX, or a clock that jumps).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::audio;
use crate::media::mux::MuxTiming;
use crate::media::test_support::{self, arriving, chunk, record_buffers, rtp_timestamp};

const OPUS_PT: u8 = 111;
/// 150 packets of 20 ms.
const PACKETS: usize = 150;
/// From packet 75 on, the sender's RTP clock is 200 ms ahead (no audio for 200 ms).
const JUMP_AT: usize = 75;
const JUMP: u32 = 48_000 / 5;

#[test]
fn opus_rtp_becomes_aac_with_contiguous_timestamps() {
    test_support::init();
    let packets = test_support::generate(&format!(
        "audiotestsrc wave=sine num-buffers={PACKETS} samplesperbuffer=960 \
         ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=20 \
         ! rtpopuspay pt={OPUS_PT} ! appsink name=out"
    ));
    // opusenc flushes its look-ahead at EOS: one packet more.
    assert!(packets.len() >= PACKETS, "{} packets", packets.len());
    let ladder = test_support::ladder(&[("small", 90, 300)], false);
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(250)),
    };
    let pipeline = gst::Pipeline::new();
    let bin = audio(&pipeline, Some(OPUS_PT), &ladder, timing).unwrap();
    let appsrc = bin.appsrc.clone().unwrap();
    let aac = record_buffers(&bin.branch.caps_source.static_pad("src").unwrap());

    pipeline.set_state(gst::State::Playing).unwrap();
    let first = rtp_timestamp(&packets[0].map_readable().unwrap());
    for (i, p) in packets.iter().enumerate() {
        let mut data = p.map_readable().unwrap().to_vec();
        let mut ts = rtp_timestamp(&data).wrapping_sub(first);
        if i >= JUMP_AT {
            ts += JUMP;
            data[4..8].copy_from_slice(&first.wrapping_add(ts).to_be_bytes());
        }
        // Arrival: the packet's media time plus 0–6 ms of network jitter.
        let jitter = Duration::from_millis((i as u64 * 7_919) % 7);
        let at = Duration::from_micros(u64::from(ts) * 1_000_000 / 48_000) + jitter;
        appsrc
            .push_buffer(arriving(&gst::Buffer::from_slice(data), at))
            .unwrap();
    }
    appsrc.end_of_stream().unwrap();
    let samples = test_support::drain(&pipeline, &bin.branch.appsink);

    let caps = bin
        .branch
        .caps_source
        .static_pad("src")
        .unwrap()
        .current_caps()
        .unwrap();
    test_support::stop(&pipeline);
    let codecs = gstreamer_pbutils::codec_utils_caps_get_mime_codec(&caps).unwrap();
    assert_eq!(codecs.to_lowercase(), "mp4a.40.2", "AAC-LC: {caps}");
    let s = caps.structure(0).unwrap();
    assert_eq!(s.get::<i32>("rate").unwrap(), 48_000);
    assert_eq!(s.get::<i32>("channels").unwrap(), 2);

    // Every AAC frame exactly 1024 samples after the previous (±1 ns of rounding), across
    // the jitter and the 200 ms jump, which is filled rather than left as a gap.
    let frames: Vec<u64> = aac
        .seen()
        .iter()
        .map(|b| b.pts.unwrap().nseconds())
        .collect();
    let at = |k: u64| frames[0] + k * 1024 * 1_000_000_000 / 48_000;
    for (k, pts) in frames.iter().enumerate() {
        assert!(
            pts.abs_diff(at(k as u64)) <= 1,
            "frame {k} at {pts} ns, expected {} ns",
            at(k as u64)
        );
    }
    let expected = (packets.len() as u64 * 960 + u64::from(JUMP)) / 1024;
    assert!(
        frames.len() as u64 + 2 >= expected,
        "{} AAC frames for {expected} frames of input",
        frames.len()
    );

    // The fragments tile the same timeline: each chunk starts where the previous ended.
    let chunks: Vec<_> = samples.iter().map(chunk).collect();
    assert!(chunks.len() >= 12, "{} chunks", chunks.len());
    assert_eq!(chunks[0].pts.nseconds(), frames[0]);
    for pair in chunks.windows(2) {
        assert_eq!(pair[0].pts + pair[0].duration, pair[1].pts, "{pair:?}");
    }
}

/// avenc_aac (FFmpeg) codes 1024 samples of priming first: AAC frame k decodes to input frame
/// k − 1 but carries input frame k's timestamp. The bin moves every timestamp back
/// by 1024 samples, so each AAC frame carries the timestamp of the input it decodes to; the
/// priming frame lands 1024 samples before the first input, or is dropped where that would be
/// before 0.
#[test]
fn aac_frames_carry_the_timestamp_of_the_input_they_decode_to() {
    test_support::init();
    const FRAMES: u64 = 10;
    let samples = |n: u64| gst::ClockTime::from_nseconds(n * 1_000_000_000 / 48_000);
    for start in [gst::ClockTime::ZERO, gst::ClockTime::SECOND] {
        let enc = gst::ElementFactory::make("avenc_aac")
            .property("perfect-timestamp", true)
            .build()
            .unwrap();
        super::remove_encoder_delay(&enc);
        let mut h = gstreamer_check::Harness::with_element(&enc, Some("sink"), Some("src"));
        h.set_src_caps_str("audio/x-raw,format=F32LE,layout=interleaved,rate=48000,channels=2");
        for k in 0..FRAMES {
            // A 1 kHz tone, so every frame carries signal.
            let data: Vec<u8> = (0..1024u64 * 2)
                .flat_map(|i| {
                    let t = (k * 1024 + i / 2) as f32 / 48_000.0;
                    (0.5 * (t * 1_000.0 * std::f32::consts::TAU).sin()).to_le_bytes()
                })
                .collect();
            let mut b = gst::Buffer::from_mut_slice(data);
            let m = b.get_mut().unwrap();
            m.set_pts(start + samples(k * 1024));
            m.set_duration(samples((k + 1) * 1024) - samples(k * 1024));
            h.push(b).unwrap();
        }
        assert!(h.push_event(gst::event::Eos::new()));
        let out: Vec<u64> = std::iter::from_fn(|| h.try_pull())
            .map(|b| b.pts().unwrap().nseconds())
            .collect();
        // The input frames' timestamps, preceded by the priming frame's unless it was dropped.
        let mut expected: Vec<u64> = (0..FRAMES)
            .map(|k| (start + samples(k * 1024)).nseconds())
            .collect();
        if let Some(priming) = start.checked_sub(samples(1024)) {
            expected.insert(0, priming.nseconds());
        }
        assert_eq!(out.len(), expected.len(), "from {start}: {out:?}");
        for (got, want) in out.iter().zip(&expected) {
            // perfect-timestamp rounds where `samples` truncates.
            assert!(
                got.abs_diff(*want) <= 1,
                "from {start}: {out:?} vs {expected:?}"
            );
        }
    }
}
