//! The GStreamer side of A/V alignment (lipsync.rs): each jitter buffer's `handle-sync`
//! answer to an RTCP sender report is read, fed to [`LipSync`], and the offsets it returns
//! are applied as the jitter buffers' `ts-offset`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::{info, warn};

use super::lipsync::{self, Change, LipSync, Track};

/// Aligns audio and video by the publisher's clock (lipsync.rs): each jitter buffer
/// answers a sender report with `handle-sync`, which says what running time it gives the
/// report's RTP timestamp; the stream that plays early gets a `ts-offset`. The video offset
/// in force is kept in `video_offset` (ns): the server lag subtracts it, since it moves video
/// timestamps away from their arrival.
pub(super) fn align_by_sender_reports(
    audio: &gst::Element,
    video: &gst::Element,
    layers: &[gst::Element],
    video_offset: &Arc<AtomicI64>,
) {
    let state = Arc::new(Mutex::new(LipSync::default()));
    let jitters = [audio.downgrade(), video.downgrade()];
    let layers: Vec<_> = layers.iter().map(|j| j.downgrade()).collect();
    for (track, jitter) in [(Track::Audio, audio), (Track::Video, video)] {
        let state = Arc::clone(&state);
        let jitters = jitters.clone();
        let layers = layers.clone();
        let video_offset = Arc::clone(video_offset);
        jitter.connect("handle-sync", false, move |values| {
            let s = values.get(1)?.get::<gst::Structure>().ok()?;
            let (running, sender) = report_times(&s)?;
            let change = state.lock().ok()?.on_report(track, running, sender);
            match change {
                Some(Change::Offsets(offsets)) => {
                    info!(
                        audio_ms = offsets[0] / 1_000_000,
                        video_ms = offsets[1] / 1_000_000,
                        "aligning audio and video by the publisher's sender reports"
                    );
                    for (jitter, offset) in jitters.iter().zip(offsets) {
                        if let Some(j) = jitter.upgrade() {
                            j.set_property("ts-offset", offset);
                        }
                    }
                    for j in layers.iter().filter_map(|j| j.upgrade()) {
                        j.set_property("ts-offset", offsets[1]);
                    }
                    video_offset.store(offsets[1], Ordering::Relaxed);
                }
                Some(Change::Implausible(delta)) => {
                    warn!(
                        apart_ms = (delta / 1_000_000) as i64,
                        "sender reports put audio and video implausibly far apart; not aligned"
                    );
                }
                None => {}
            }
            None
        });
    }
}

/// From a jitter buffer's `handle-sync` structure: the running time (ns, before its
/// `ts-offset`) of the report's RTP timestamp, and the sender's clock at it (ns).
fn report_times(s: &gst::StructureRef) -> Option<(i128, i128)> {
    // u64::MAX is GST_CLOCK_TIME_NONE / "no base yet" (seen: a `base-time` of NONE before
    // the jitter buffer has timed its first packet).
    let base_rtp = s
        .get::<u64>("base-rtptime")
        .ok()
        .filter(|t| *t != u64::MAX)?;
    // The jitter buffer reports its base time plus its (signed) skew estimate as a u64: with
    // a base near running time 0 (ours: the first video packet) and a negative skew it wraps
    // around (seen: 2^64 − a few ms). Read it as the signed value it is.
    let base_time = s.get::<u64>("base-time").ok().filter(|t| *t != u64::MAX)? as i64;
    let rate = s.get::<u32>("clock-rate").ok().filter(|r| *r > 0)?;
    // u64::MAX: the jitter buffer found the report's RTP time implausible.
    let sr_rtp = s
        .get::<u64>("sr-ext-rtptime")
        .ok()
        .filter(|t| *t != u64::MAX)?;
    let buffer = s.get::<gst::Buffer>("sr-buffer").ok()?;
    let map = buffer.map_readable().ok()?;
    let ntp = lipsync::sender_report_ntp(map.as_slice())?;
    let since_base = (i128::from(sr_rtp) - i128::from(base_rtp)) * 1_000_000_000 / i128::from(rate);
    Some((i128::from(base_time) + since_base, lipsync::ntp_to_ns(ntp)))
}
