//! Two simulcast layers' real passthrough rungs (livesync, the alignment probe, cmafmux),
//! fed the same keyframes on timelines a little apart, as two layers' jitter buffers stamp
//! them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::Align;
use crate::media::mux::MuxTiming;
use crate::media::rung::source_rung;
use crate::media::test_support::{self, chunk};

const FRAME_NS: u64 = 1_000_000_000 / 30;
const MS: u64 = 1_000_000;

/// Frames that are keyframes: 0, 0.3, 1.3, 1.83, 2.33 and 3.37 s.
const KEYFRAMES: [u64; 6] = [0, 9, 39, 55, 70, 101];

/// Layer `layer`'s timestamp of frame `n`: layer 1's are 20 ms late between 0.17 and
/// 1.17 s (within the tolerance of 25 ms: the same pictures).
fn pts(layer: usize, n: u64) -> u64 {
    let late = if layer == 1 && (5..35).contains(&n) {
        20 * MS
    } else {
        0
    };
    // Rounded up, so that 1.3 s is exactly one segment after 0.3 s.
    (n * 1_000_000_000).div_ceil(30) + late
}

/// Regression: layer 1's second keyframe came 20 ms after layer 0's, its third at the same
/// instant as layer 0's, exactly one segment after layer 0's second. Each muxer applied
/// its own rule (cut at the first keyframe one segment after its own last cut), so layer 0
/// cut at 1.3 s and layer 1 did not (1.3 < 0.32 + 1), and from there their segment
/// numbers differed (seen with Chromium's layers in tests/simulcast.rs; with that rule
/// back, this test reads layer 0: 0, 300, 1300, 2333, 3367 ms, layer 1: 0, 320, 2333,
/// 3367). Both must cut at the same instants, and not at the common keyframe 0.53 s after a
/// boundary.
#[test]
fn layers_a_little_apart_are_cut_at_the_same_instants() {
    test_support::init();
    let frames = test_support::generate(
        "videotestsrc pattern=ball num-buffers=110 \
         ! video/x-raw,format=I420,width=160,height=90,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=1 bframes=0 \
         ! video/x-h264,stream-format=byte-stream,alignment=au,profile=constrained-baseline \
         ! appsink name=out",
    );
    assert_eq!(frames.len(), 110);
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(200)),
    };
    let align = Align::new(
        vec!["layer0".into(), "layer1".into()],
        Vec::new(),
        Duration::from_millis(25),
        Duration::from_secs(5),
        timing,
    );
    let pipeline = gst::Pipeline::new();
    let mut inputs = Vec::new();
    let mut sinks = Vec::new();
    for layer in 0..2 {
        let (src, parse, tee) = test_support::h264_into_tee(&pipeline, false);
        // Every frame is an IDR; the publisher's keyframes are the ones not flagged delta.
        parse
            .static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
                if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data {
                    // Frame n's timestamp is n frames, plus less than one (`pts`).
                    let n = buffer.pts().unwrap().nseconds() * 30 / 1_000_000_000;
                    if !KEYFRAMES.contains(&n) {
                        buffer.make_mut().set_flags(gst::BufferFlags::DELTA_UNIT);
                    }
                }
                gst::PadProbeReturn::Ok
            });
        let prefix = format!("layer{layer}");
        let branch = source_rung(
            &pipeline,
            &tee,
            timing,
            &prefix,
            Some((&align, layer)),
            gst::ClockTime::from_nseconds(FRAME_NS),
        )
        .unwrap();
        inputs.push(src);
        sinks.push(branch.appsink);
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    for (layer, src) in inputs.iter().enumerate() {
        for (n, f) in frames.iter().enumerate() {
            let n = n as u64;
            let mut f = f.copy();
            let b = f.get_mut().unwrap();
            let t = gst::ClockTime::from_nseconds(pts(layer, n));
            b.set_pts(t);
            b.set_dts(t);
            b.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
            src.push_buffer(f).unwrap();
        }
        src.end_of_stream().unwrap();
    }
    // An appsink is EOS once its last sample is pulled.
    let mut chunks = vec![Vec::new(), Vec::new()];
    let started = std::time::Instant::now();
    while !sinks.iter().all(|s| s.is_eos()) {
        for (sink, chunks) in sinks.iter().zip(&mut chunks) {
            if let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(10)) {
                chunks.push(chunk(&sample));
            }
        }
        if let Some(msg) = pipeline
            .bus()
            .unwrap()
            .pop_filtered(&[gst::MessageType::Error])
        {
            panic!("{msg:?}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no EOS in 20 s"
        );
    }
    let starts: Vec<Vec<u64>> = chunks
        .iter()
        .map(|chunks| {
            chunks
                .iter()
                .filter(|c| c.starts_fragment())
                .map(|c| (c.pts.nseconds() + MS / 2) / MS)
                .collect()
        })
        .collect();
    test_support::stop(&pipeline);
    // Fragment starts, ms: 0, the one-part first segment, then a segment apart each; not
    // at 1833 (0.53 s after 1300).
    assert_eq!(starts[0], vec![0, 300, 1300, 2333, 3367], "{starts:?}");
    assert_eq!(starts[1], vec![0, 320, 1300, 2333, 3367], "{starts:?}");
}
