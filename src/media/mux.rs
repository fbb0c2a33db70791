//! The muxer/appsink side of every branch: `cmafmux` with the stream's fragment and chunk
//! durations, the first-fragment split for LL-HLS, and the `appsink` the fragments leave by.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::MediaError;
use super::elements::running_time;

/// Muxer timing: fragment (= segment) duration and, for LL-HLS, chunk (= part) duration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MuxTiming {
    pub segment: Duration,
    pub part: Option<Duration>,
}

/// How much shorter than the configured part and segment a video muxer's chunk and fragment
/// durations are ([`MuxTiming::for_video`]).
///
/// Why: cmafmux 0.14.5 ends a chunk before the first buffer whose PTS is not below the
/// chunk's start plus `chunk-duration`, and the next chunk starts at that buffer. A
/// publisher's frames (the passthrough rungs, simulcast layers) carry the jitter buffer's
/// timestamps, whose spacing wanders by nanoseconds to microseconds around the nominal
/// frame interval, so at 30 fps the frame due exactly 200 ms after a chunk's first fell on
/// either side of the end: measured, runs of 7-frame parts (0.2333 s) among 6-frame ones,
/// above PART-TARGET (0.222 s), which HLS2 §4.4.4.9 forbids (tests/obs_shaped.rs, before
/// this). Ending chunks 11 ms early puts that frame clearly after the end, and with the
/// default 200 ms parts a part is then the time from its first frame to the first frame at
/// or after 189 ms: at least 85 % of PART-TARGET (0.1887 s, the spec's lower bound for all
/// but a segment's first and last parts) and, when no two frames are more than 33 ms apart
/// (a variable frame rate around 30 fps, as Chromium's), at most PART-TARGET. With a
/// constant frame rate up to 60 fps whose interval divides the part (25, 30, 50, 60 fps for
/// 200 ms), every part is exactly the part duration.
pub(crate) const VIDEO_EARLY: Duration = Duration::from_millis(11);

impl MuxTiming {
    /// The durations a video muxer is given: both [`VIDEO_EARLY`] short. Both, because
    /// cmafmux closes a fragment only when a chunk's end reaches the fragment's end
    /// (measured: a chunk grid off the fragment end skips the boundary); fragment starts
    /// are the keyframes' real timestamps, so the early ends do not accumulate.
    pub(crate) fn for_video(self) -> MuxTiming {
        MuxTiming {
            segment: self.segment.saturating_sub(VIDEO_EARLY),
            part: self.part.map(|p| p.saturating_sub(VIDEO_EARLY)),
        }
    }
}

/// Cuts the muxer's first fragment after one chunk (`after`; a part, less [`VIDEO_EARLY`]
/// for video): `split-at-running-time` for the running time of the first buffer reaching
/// `pad` (the muxer's input) plus `after`.
///
/// Why: a media playlist is served only once it lists a whole segment (hls.js rejects a
/// parts-only playlist with LEVEL_EMPTY_ERROR), so with full-length first segments a
/// viewer waits a whole segment after the first keyframe. A one-part first segment makes the
/// stream playable ~one part after the first keyframe (BENCHMARKS.md "Latency": publish →
/// first playable). HLS2 §4.4.3.1 only bounds segment durations from above
/// (EXT-X-TARGETDURATION), so a short first segment is allowed. Every later fragment starts
/// where the previous ended, so boundaries stay on `first + part + n × segment` (measured in
/// rung/bin_tests.rs: IDRs at 0, 0.2, 1.2, 2.2 s for 1 s segments of 200 ms parts): the same
/// in every video rung, which all see the same first frame. The split (`after`: the
/// muxer's chunk duration) is one chunk from the first buffer, as cmafmux needs (measured
/// with cmafmux 0.14.5: a split off the chunk grid makes it skip the next fragment
/// boundary). cmafmux sends its force-key-unit for
/// the second fragment start after this request is in, so x264enc puts the IDR there.
pub(crate) fn split_first_fragment(mux: &gst::Element, pad: &gst::Pad, after: Duration) {
    let mux = mux.downgrade();
    let after = gst::ClockTime::from_nseconds(after.as_nanos() as u64);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        // The muxer starts at the first keyframe (the passthrough rung may see delta
        // frames before its first IDR).
        if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        let running = running_time(pad, buffer.pts());
        if let (Some(mux), Some(running)) = (mux.upgrade(), running) {
            mux.emit_by_name::<()>("split-at-running-time", &[&(running + after)]);
        }
        gst::PadProbeReturn::Remove
    });
}

pub(crate) fn cmafmux(
    name: &str,
    timing: MuxTiming,
    force_keyunit: bool,
) -> Result<gst::Element, MediaError> {
    let clock = |d: Duration| gst::ClockTime::from_nseconds(d.as_nanos() as u64);
    let mut b = gst::ElementFactory::make("cmafmux")
        .name(name)
        .property("fragment-duration", clock(timing.segment));
    if let Some(part) = timing.part {
        // The fragment's end must be on the chunk grid: the configured part divides the
        // segment exactly (validated in config), and a video muxer's chunk and fragment
        // ends are both VIDEO_EARLY short, so the last chunk of a fragment ends where the
        // fragment does. Off the grid cmafmux 0.14.5 skips fragment boundaries (measured).
        b = b.property("chunk-duration", clock(part));
    }
    b
        // cmafmux sends force-key-unit events upstream at each fragment boundary (by running
        // time), so x264enc puts an IDR at the same timestamp in every rung.
        .property("send-force-keyunit", force_keyunit)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("cmafmux {name}"),
            source,
        })
}

pub(crate) fn appsink(name: &str) -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name(name)
        .buffer_list(true)
        // Live output: never wait on the clock, never drop (fragments are precious).
        .sync(false)
        .build()
}

/// The last element before the muxer: its caps give CODECS, width, height and fps.
pub(crate) struct Branch {
    pub appsink: gst_app::AppSink,
    pub caps_source: gst::Element,
}
