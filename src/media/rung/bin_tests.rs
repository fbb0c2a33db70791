//! The transcoded rung, fed raw I420 frames through a tee as the ingest bin feeds it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::video_rung;
use crate::media::ladder::PlannedRung;
use crate::media::mux::MuxTiming;
use crate::media::test_support::{self, chunk, record_buffers};

const FPS: u64 = 30;
const FRAMES: u64 = 100; // 3.33 s

fn frame_time(n: u64) -> gst::ClockTime {
    gst::ClockTime::from_nseconds(n * 1_000_000_000 / FPS)
}

#[test]
fn rung_outputs_playable_h264_on_the_segment_grid_in_cmaf_chunks() {
    test_support::init();
    let ladder = test_support::ladder(&[("small", 90, 300)], false);
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(200)),
    };
    let rung = PlannedRung {
        name: "small".into(),
        width: 160,
        height: 90,
        bitrate_kbps: 300,
    };
    let (w, h) = (320u32, 180u32);
    let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
        .fps(gst::Fraction::new(FPS as i32, 1))
        .build()
        .unwrap()
        .to_caps()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let tee = gst::ElementFactory::make("tee").build().unwrap();
    pipeline.add_many([src.upcast_ref(), &tee]).unwrap();
    src.link(&tee).unwrap();
    let branch = video_rung(&pipeline, &tee, &rung, &ladder, timing, None).unwrap();
    let encoded = record_buffers(&branch.caps_source.static_pad("src").unwrap());

    pipeline.set_state(gst::State::Playing).unwrap();
    let size = (w * h * 3 / 2) as usize;
    for n in 0..FRAMES {
        // A moving gradient, so the encoder has something to code.
        let data: Vec<u8> = (0..size).map(|i| (i as u64 + n * 3) as u8).collect();
        let mut buffer = gst::Buffer::from_mut_slice(data);
        let b = buffer.get_mut().unwrap();
        b.set_pts(frame_time(n));
        b.set_duration(frame_time(n + 1) - frame_time(n));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let samples = test_support::drain(&pipeline, &branch.appsink);

    // H.264 a browser plays: the configured profile (never High 4:4:4, what x264enc picks
    // from non-I420 input) at the configured size.
    let caps = samples[0].caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(s.name(), "video/quicktime", "{caps}");
    let h264 = branch
        .caps_source
        .static_pad("src")
        .unwrap()
        .current_caps()
        .unwrap();
    test_support::stop(&pipeline);
    let s = h264.structure(0).unwrap();
    assert_eq!(ladder.video.profile, "high");
    assert_eq!(s.get::<&str>("profile").unwrap(), "high", "{h264}");
    assert_eq!(s.get::<i32>("width").unwrap(), 160);
    assert_eq!(s.get::<i32>("height").unwrap(), 90);
    let codecs = gstreamer_pbutils::codec_utils_caps_get_mime_codec(&h264).unwrap();
    // RFC 6381: avc1.PPCCLL, profile_idc 0x64 = High (High 4:4:4 Predictive is 0xF4).
    assert!(codecs.to_lowercase().starts_with("avc1.64"), "{codecs}");

    // Keyframes only on the grid: the first frame, the one-part first segment's end, then
    // every segment duration from there.
    let keyframes: Vec<u64> = encoded
        .seen()
        .iter()
        .filter(|b| b.keyframe)
        .map(|b| b.running.unwrap().mseconds())
        .collect();
    assert_eq!(keyframes, [0, 200, 1200, 2200, 3200], "keyframes (ms)");

    // cmafmux output as the store reads it: the init segment first (HEADER|DISCONT, ftyp +
    // moov), every sample one chunk ending in MARKER, fragment starts (HEADER without
    // DELTA_UNIT, styp first) exactly at the keyframes, continuation chunks HEADER|DELTA_UNIT.
    let chunks: Vec<_> = samples.iter().map(chunk).collect();
    assert_eq!(
        chunks[0].init.as_deref(),
        Some(&["ftyp".to_string(), "moov".to_string()][..])
    );
    assert!(chunks[1..].iter().all(|c| c.init.is_none()));
    for c in &chunks {
        assert!(
            c.flags.last().unwrap().contains(gst::BufferFlags::MARKER),
            "{c:?}"
        );
        let head = c.flags[usize::from(c.init.is_some())];
        assert!(head.contains(gst::BufferFlags::HEADER), "{c:?}");
        if c.starts_fragment() {
            assert_eq!(c.boxes[0], "styp", "{c:?}");
        } else {
            assert_eq!(c.boxes[0], "moof", "{c:?}");
        }
    }
    let starts: Vec<u64> = chunks
        .iter()
        .filter(|c| c.starts_fragment())
        .map(|c| c.pts.mseconds())
        .collect();
    assert_eq!(starts, keyframes, "fragment starts (ms)");
    // Every chunk but the last is one part long, back to back.
    for pair in chunks.windows(2) {
        assert_eq!(pair[0].pts + pair[0].duration, pair[1].pts, "{pair:?}");
        assert_eq!(pair[0].duration.mseconds(), 200, "{pair:?}");
    }
}

/// Counts the keyframe requests (upstream force-key-unit events) that reach `pad`.
fn keyframe_requests(pad: &gst::Pad) -> Arc<AtomicUsize> {
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_pad, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data
            && gst_video::UpstreamForceKeyUnitEvent::parse(ev).is_ok()
        {
            seen.fetch_add(1, Ordering::SeqCst);
        }
        gst::PadProbeReturn::Ok
    });
    requests
}

/// A network stall on the passthrough rung: `livesync` fills it with copies of the last
/// keyframe, and the publisher's first predicted frame after it, which a decoder can no
/// longer decode right (its references were replaced by the copies), asks upstream for a
/// keyframe: an upstream force-key-unit event, which the ingest's appsrc turns into a PLI.
#[test]
fn the_first_predicted_frame_after_repeats_asks_for_a_keyframe() {
    test_support::init();
    // One keyframe, then predicted frames only.
    let frames = test_support::generate(
        "videotestsrc num-buffers=40 pattern=ball \
         ! video/x-raw,format=I420,width=160,height=90,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=1000 \
         ! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=out",
    );
    assert_eq!(frames.len(), 40);
    assert!(!frames[0].flags().contains(gst::BufferFlags::DELTA_UNIT));
    assert!(
        frames[1..]
            .iter()
            .all(|f| f.flags().contains(gst::BufferFlags::DELTA_UNIT))
    );

    let pipeline = gst::Pipeline::new();
    let (src, _parse, tee) = test_support::h264_into_tee(&pipeline, true);
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(200)),
    };
    let branch = super::source_rung(
        &pipeline,
        &tee,
        timing,
        "source",
        None,
        gst::ClockTime::SECOND / FPS,
    )
    .unwrap();
    branch.appsink.set_drop(true);
    branch.appsink.set_max_buffers(1);
    let requests = keyframe_requests(&src.static_pad("src").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    let send = |frames: &[gst::Buffer]| {
        for f in frames {
            // Stamped on arrival (`do-timestamp`), as the ingest's jitter buffer does.
            let mut f = f.copy();
            let b = f.get_mut().unwrap();
            b.set_pts(gst::ClockTime::NONE);
            b.set_dts(gst::ClockTime::NONE);
            src.push_buffer(f).unwrap();
            std::thread::sleep(Duration::from_millis(33));
        }
    };
    send(&frames[..20]);
    let before = requests.load(Ordering::SeqCst);
    // The stall: longer than livesync's wait, so the last keyframe is repeated.
    std::thread::sleep(Duration::from_millis(1000));
    send(&frames[20..]);
    std::thread::sleep(Duration::from_millis(100));
    let sync = pipeline.by_name("source_livesync").unwrap();
    let duplicated = sync.property::<u64>("duplicate");
    let after = requests.load(Ordering::SeqCst);
    test_support::stop(&pipeline);
    assert!(
        duplicated > 5,
        "livesync repeated {duplicated} frames in the stall"
    );
    assert_eq!(before, 0, "no keyframe asked for before the stall");
    assert_eq!(
        after, 1,
        "one keyframe asked for after it, at the first predicted frame"
    );
}

/// Packet loss took a keyframe's first slice: what survived of it, and the frames
/// predicted from it, never reach the muxer (whole.rs): copies of the last whole keyframe,
/// marked as repeats, take their places; the first of them asks upstream for a keyframe
/// (the appsrc turns it into a PLI); the next whole keyframe goes through. Fed straight
/// into the tee in AVC form, as the ingest's parser hands it on (a parser here would
/// judge the broken unit itself).
#[test]
fn a_keyframe_missing_its_first_slice_is_replaced_with_its_frames_until_a_whole_one() {
    test_support::init();
    // Keyframes at frames 0, 10 and 20; four slices a frame, as a browser's encoder makes
    // several per frame.
    let pipeline = gst::parse::launch(
        "videotestsrc num-buffers=30 pattern=ball \
         ! video/x-raw,format=I420,width=160,height=96,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 \
           option-string=\"slices=4\" \
         ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=out",
    )
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let out = pipeline
        .by_name("out")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    let samples = test_support::drain(&pipeline, &out);
    test_support::stop(&pipeline);
    assert_eq!(samples.len(), 30);
    let caps = samples[0].caps().unwrap().to_owned();
    let frames: Vec<gst::Buffer> = samples.iter().map(|s| s.buffer_owned().unwrap()).collect();
    // Frame 10 without its first IDR slice (AVC form: 4-byte lengths).
    let data = frames[10].map_readable().unwrap().to_vec();
    let (mut broken, mut at, mut dropped_slice) = (Vec::new(), 0, false);
    while at + 4 <= data.len() {
        let len = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        let unit = &data[at..at + 4 + len];
        if unit[4] & 0x1f == 5 && !dropped_slice {
            dropped_slice = true;
        } else {
            broken.extend_from_slice(unit);
        }
        at += 4 + len;
    }
    assert!(dropped_slice, "frame 10 is a keyframe");

    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let tee = gst::ElementFactory::make("tee").build().unwrap();
    pipeline.add_many([src.upcast_ref(), &tee]).unwrap();
    src.link(&tee).unwrap();
    let timing = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(200)),
    };
    let branch = super::source_rung(
        &pipeline,
        &tee,
        timing,
        "source",
        None,
        gst::ClockTime::SECOND / FPS,
    )
    .unwrap();
    // The check, where the ingest puts it: on the tee's sink pad.
    super::replace_broken_frames(&tee.static_pad("sink").unwrap(), "source");
    // What gets past the check, on the passthrough branch: frame number, marked as a
    // repeat, size.
    let passed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = passed.clone();
    pipeline
        .by_name("source_livesync")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let n = (b.pts().unwrap().nseconds() * FPS + 500_000_000) / 1_000_000_000;
                let repeat = b.flags().contains(crate::media::align::REPEAT);
                record.lock().unwrap().push((n, repeat, b.size()));
            }
            gst::PadProbeReturn::Ok
        });
    let requests = keyframe_requests(&src.static_pad("src").unwrap());
    pipeline.set_state(gst::State::Playing).unwrap();
    for (n, f) in frames.iter().enumerate() {
        let mut f = if n == 10 {
            let mut b = gst::Buffer::from_mut_slice(broken.clone());
            b.get_mut().unwrap().set_flags(f.flags());
            b
        } else {
            f.copy()
        };
        let b = f.get_mut().unwrap();
        b.set_pts(frame_time(n as u64));
        b.set_dts(frame_time(n as u64));
        src.push_buffer(f).unwrap();
    }
    src.end_of_stream().unwrap();
    test_support::drain(&pipeline, &branch.appsink);
    test_support::stop(&pipeline);

    let passed = passed.lock().unwrap().clone();
    let expected: Vec<(u64, bool, usize)> = (0..30)
        .map(|n| match n {
            10..20 => (n as u64, true, frames[0].size()),
            _ => (n as u64, false, frames[n].size()),
        })
        .collect();
    assert_eq!(
        passed, expected,
        "(frame, a repeat, size) past the check: frames 10-19 are copies of keyframe 0"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 1, "one keyframe asked for");
}
