//! Appsink bridging: each rendition's cmafmux output (one buffer list per fragment or
//! chunk) split into init segment and fragments, timed (running time, wall clock, lag) and
//! handed to the broadcast task over the bounded event channel.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tracing::{debug, warn};

use super::audio_cut::AudioCutter;
use super::mux::Branch;
use super::pipeline::Shared;
use super::{MediaEvent, Origin, RenditionInfo, RenditionKind};

/// Maps running time to wall-clock time once per pipeline, so `EXT-X-PROGRAM-DATE-TIME` is
/// consistent across renditions (HLS2 §6.2.4).
#[derive(Clone, Copy)]
pub(super) struct ClockAnchor {
    running: gst::ClockTime,
    wallclock: SystemTime,
}

fn rendition_info(name: &str, caps: &gst::Caps, shared: &Shared) -> RenditionInfo {
    // RFC 6381 hex digits are case-insensitive; lower case matches Apple's examples.
    let codecs = gstreamer_pbutils::codec_utils_caps_get_mime_codec(caps)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let s = caps.structure(0);
    let is_audio = s.is_some_and(|s| s.name().starts_with("audio/"));
    let ladder = &shared.spec.ladder;
    if is_audio {
        return RenditionInfo {
            name: name.to_string(),
            kind: RenditionKind::Audio {
                channels: s.and_then(|s| s.get::<i32>("channels").ok()).unwrap_or(2) as u32,
                rate: s.and_then(|s| s.get::<i32>("rate").ok()).unwrap_or(48_000) as u32,
                language: ladder.audio.language.clone(),
            },
            codecs,
            bitrate: u64::from(ladder.audio.bitrate_kbps) * 1000,
        };
    }
    let width = s.and_then(|s| s.get::<i32>("width").ok()).unwrap_or(0) as u32;
    let height = s.and_then(|s| s.get::<i32>("height").ok()).unwrap_or(0) as u32;
    let fps = s
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| f64::from(f.numer()) / f64::from(f.denom()))
        .unwrap_or(f64::from(ladder.video.fps));
    let bitrate = ladder
        .rungs
        .iter()
        .find(|r| r.name == name)
        .map(|r| u64::from(r.bitrate_kbps) * 1000)
        .unwrap_or(0);
    RenditionInfo {
        name: name.to_string(),
        kind: RenditionKind::Video { width, height, fps },
        codecs,
        bitrate,
    }
}

/// The appsink callback: split cmafmux output into init segment and fragments, and hand
/// them to the broadcast task. Runs on a streaming thread (blocking send is allowed there).
pub(super) fn connect_appsink(branch: &Branch, name: &str, origin: Origin, shared: &Arc<Shared>) {
    let shared = Arc::clone(shared);
    let name = name.to_string();
    let caps_pad = branch.caps_source.static_pad("src");
    // With parts on, the audio rendition's segment starts are ours (audio_cut.rs).
    let mut audio_cutter = match shared.timing.part {
        Some(part) if origin == Origin::Audio => {
            Some(AudioCutter::new(shared.timing.segment, part))
        }
        _ => None,
    };
    // A rung transcoded for a simulcast publisher has its keyframes where the layers have
    // theirs (align.rs), not one part after its first: its segments start where its
    // chunks say, as the layers' do.
    let aligned = shared
        .align
        .as_ref()
        .is_some_and(|a| a.index_of(&name).is_some());
    let split_first = shared.timing.part.is_some() && origin == Origin::Rung && !aligned;
    let mut seen_chunk = false;
    // This rendition's segment number (from 0) and whether that segment is a gap, decided
    // at its first part from the segment number alone (gaps.rs), so every rendition agrees.
    let mut segment_no: Option<u64> = None;
    let mut in_gap = false;
    branch.appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(list) = sample.buffer_list() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let mut idx = 0;
                let send = |ev: MediaEvent| {
                    shared
                        .events
                        .blocking_send(ev)
                        .map_err(|_| gst::FlowError::Flushing)
                };
                if let Some(first) = list.get(0)
                    && first
                        .flags()
                        .contains(gst::BufferFlags::DISCONT | gst::BufferFlags::HEADER)
                {
                    let data = map_bytes(&[first]);
                    let caps = caps_pad.as_ref().and_then(|p| p.current_caps());
                    let Some(caps) = caps else {
                        warn!(rendition = %name, "no caps for init segment");
                        return Err(gst::FlowError::NotNegotiated);
                    };
                    let info = rendition_info(&name, &caps, &shared);
                    debug!(rendition = %name, codecs = %info.codecs, "init segment");
                    send(MediaEvent::Init { info, data })?;
                    idx = 1;
                }
                if idx >= list.len() {
                    return Ok(gst::FlowSuccess::Ok);
                }
                let Some(head) = list.get(idx) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                let pts = head.pts().unwrap_or(gst::ClockTime::ZERO);
                let running = segment.and_then(|s| s.to_running_time(pts)).unwrap_or(pts);
                let anchor = *shared.anchor.get_or_init(|| anchor_for(sink, running));
                let wallclock = if running >= anchor.running {
                    anchor.wallclock + Duration::from_nanos((running - anchor.running).nseconds())
                } else {
                    anchor.wallclock - Duration::from_nanos((anchor.running - running).nseconds())
                };
                let duration = head.duration().unwrap_or(gst::ClockTime::ZERO);
                // Server lag: from the arrival of the part's last frame (appsrc stamps
                // arrival running time; the last frame starts one frame interval before
                // the part ends; the jitter buffers' ts-offset, if sender reports moved
                // video, is taken back out) to now, when the part is handed to the store.
                let lag = match (sink.clock(), sink.base_time(), &shared.frame_interval) {
                    (Some(clock), Some(base), Some(frame)) if origin.is_video() => {
                        let now_rt = clock.time().checked_sub(base);
                        // Signed: the offset may move video either way.
                        let offset = i128::from(shared.video_offset.load(Ordering::Relaxed));
                        let last_frame = i128::from((running + duration).nseconds())
                            - offset
                            - i128::from(frame.nseconds());
                        now_rt
                            .map(|n| i128::from(n.nseconds()) - last_frame)
                            .filter(|_| last_frame >= 0)
                            .and_then(|lag| u64::try_from(lag).ok())
                            .map(Duration::from_nanos)
                    }
                    _ => None,
                };
                // cmafmux 0.14.5 marks chunks in the buffer flags: a fragment's first chunk
                // starts with a HEADER buffer without DELTA_UNIT; continuation chunks have
                // HEADER|DELTA_UNIT.
                let (starts_segment, next_starts_segment) = match audio_cutter.as_mut() {
                    Some(c) => {
                        let cut = c.chunk(
                            Duration::from_nanos(running.nseconds()),
                            Duration::from_nanos(duration.nseconds()),
                        );
                        (cut.starts_segment, Some(cut.next_starts_segment))
                    }
                    None => {
                        let starts = !head.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        // A transcoded rung's first segment is one part (mux.rs
                        // split_first_fragment): the chunk after the very first starts one.
                        let first = split_first && !std::mem::replace(&mut seen_chunk, true);
                        (starts, first.then_some(true))
                    }
                };
                // A simulcast rendition's first segment is numbered by its boundary, which
                // every rendition shares: one that started late (its layer's first
                // keyframes lost) skips the numbers of the boundaries it missed (the store
                // does so only before its first segment, hls/window.rs `skip_to`).
                let boundary = match &shared.align {
                    Some(align) if segment_no.is_none() && starts_segment && origin.is_video() => {
                        align.boundary_number(running.nseconds())
                    }
                    _ => None,
                };
                if let Ok(mut gaps) = shared.gaps.lock() {
                    if origin.is_video() {
                        gaps.set_origin(Duration::from_nanos(running.nseconds()));
                    }
                    if starts_segment || segment_no.is_none() {
                        let n = boundary.unwrap_or_else(|| segment_no.map_or(0, |n| n + 1));
                        segment_no = Some(n);
                        in_gap = gaps.is_gap(n);
                    }
                }
                // Simulcast: alignment trouble, reported when it changed (align.rs).
                if starts_segment
                    && let Some(report) = shared.align.as_ref().and_then(|a| a.report())
                {
                    send(MediaEvent::Alignment(report))?;
                }
                let bufs: Vec<&gst::BufferRef> =
                    (idx..list.len()).filter_map(|i| list.get(i)).collect();
                send(MediaEvent::Fragment {
                    origin,
                    rendition: name.clone(),
                    pts: Duration::from_nanos(running.nseconds()),
                    duration: Duration::from_nanos(duration.nseconds()),
                    wallclock,
                    gap: in_gap,
                    starts_segment,
                    next_starts_segment,
                    segment: boundary,
                    lag,
                    data: map_bytes(&bufs),
                })?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn anchor_for(sink: &gst_app::AppSink, running: gst::ClockTime) -> ClockAnchor {
    let now = SystemTime::now();
    // running time of "now" = clock time − base time; the fragment started that long ago.
    let now_running = match (sink.clock(), sink.base_time()) {
        (Some(clock), Some(base)) => clock.time().checked_sub(base),
        _ => None,
    };
    let wallclock = match now_running {
        Some(nr) if nr >= running => now - Duration::from_nanos((nr - running).nseconds()),
        _ => now,
    };
    ClockAnchor { running, wallclock }
}

fn map_bytes(buffers: &[&gst::BufferRef]) -> Bytes {
    let total: usize = buffers.iter().map(|b| b.size()).sum();
    let mut out = BytesMut::with_capacity(total);
    for b in buffers {
        if let Ok(map) = b.map_readable() {
            out.extend_from_slice(map.as_slice());
        }
    }
    out.freeze()
}
