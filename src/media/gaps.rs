//! Which segments of a broadcast are gaps: the publisher's video stopped reaching us for
//! their whole span. Pure: arrival times and segment numbers in, decisions out.
//!
//! Through a stall every rendition keeps its cadence: `livesync` repeats the last frame
//! (silence for audio) on the clock (ingest.rs, audio.rs, rung.rs), so segments and parts
//! keep coming on the wall clock and keep their numbers in step across renditions. Those
//! made of repeated frames are published as gaps (HLS2 §4.4.4.7 `EXT-X-GAP`, §4.4.4.9
//! `GAP=YES`), which players skip instead of showing a frozen picture.
//!
//! Every rendition must show the same gap at the same media sequence number, but their
//! segment boundaries differ: the transcoded rungs cut exactly on the segment grid, the AAC
//! rendition within half a part of it (audio_cut.rs), the passthrough rung on the
//! publisher's keyframes. So the decision is made per segment *number* n, from the grid
//! slot n of the transcoded rungs, never from a rendition's own boundaries: segment n is a
//! gap in every rendition when slot n begins inside a video silence, at least
//! [`MIN_SILENCE`] after its start and before the first slot boundary at or after its end.
//! The silence is known from packet arrivals, which lead every output by the pipeline's
//! latency, so the decision is already final when a segment's first part goes out, in
//! whichever rendition. A segment whose slot holds the first media after the stall stays a
//! gap to its end: the rungs' next segment starts with a keyframe at the next slot boundary.
//!
//! A simulcast layer the publisher pauses (a browser drops a layer under congestion) is
//! not a gap: the others go on, and its rendition shows its last keyframe repeated (a
//! still picture) until it comes back. Marking that time as gaps in its playlist alone
//! made hls.js stall (media/pipeline.rs says what was measured).

use std::collections::VecDeque;
use std::time::Duration;

/// A video silence shorter than this is a hiccup, not a stall: repeated frames fill it and
/// no gap is shown. Longer than the frame interval of a still screen share (about 1 s).
pub(crate) const MIN_SILENCE: Duration = Duration::from_secs(2);

/// Ended silences remembered (a segment's decision only needs the recent ones).
const KEPT: usize = 16;

/// The silences of one broadcast's video and its segment grid, in running time.
#[derive(Debug)]
pub(crate) struct Gaps {
    /// Length of segment 0 (one part with LL-HLS, mux.rs `split_first_fragment`).
    first: Duration,
    segment: Duration,
    /// Running time of the first video frame muxed: where segment 0 begins.
    origin: Option<Duration>,
    /// Arrival (running time) of the newest video packet.
    last: Option<Duration>,
    /// Ended silences of at least [`MIN_SILENCE`]: (last arrival before, first after).
    ended: VecDeque<(Duration, Duration)>,
}

impl Gaps {
    /// Segments of `segment`, the first one `first` long.
    pub(crate) fn new(segment: Duration, first: Duration) -> Self {
        Self {
            first,
            segment: segment.max(Duration::from_millis(1)),
            origin: None,
            last: None,
            ended: VecDeque::new(),
        }
    }

    /// The first video frame reached a muxer at running time `at` (the first call counts).
    pub(crate) fn set_origin(&mut self, at: Duration) {
        self.origin.get_or_insert(at);
    }

    /// A video packet arrived at running time `at`.
    pub(crate) fn packet(&mut self, at: Duration) {
        if let Some(last) = self.last {
            if at <= last {
                return;
            }
            if at - last >= MIN_SILENCE {
                if self.ended.len() == KEPT {
                    self.ended.pop_front();
                }
                self.ended.push_back((last, at));
            }
        }
        self.last = Some(at);
    }

    /// Where slot `n` begins.
    fn boundary(&self, n: u64) -> Option<Duration> {
        let origin = self.origin?;
        Some(match n {
            0 => origin,
            n => origin + self.first + self.segment * (n - 1) as u32,
        })
    }

    /// The first slot boundary at or after `t`.
    fn boundary_from(&self, t: Duration) -> Option<Duration> {
        let origin = self.origin?;
        if t <= origin {
            return Some(origin);
        }
        let one = origin + self.first;
        if t <= one {
            return Some(one);
        }
        let n = (t - one).as_nanos().div_ceil(self.segment.as_nanos());
        Some(one + self.segment * n as u32)
    }

    /// Whether segment `n` (counted from 0 in every rendition) is a gap. Call it once
    /// slot `n` has begun (when the segment's first part is out).
    pub(crate) fn is_gap(&self, n: u64) -> bool {
        let Some(slot) = self.boundary(n) else {
            return false;
        };
        let starts = |since: Duration| self.boundary_from(since + MIN_SILENCE);
        // The silence still going on (no packet since `last`).
        if let Some(from) = self.last.and_then(starts)
            && slot >= from
        {
            return true;
        }
        self.ended.iter().any(|&(before, after)| {
            match (starts(before), self.boundary_from(after)) {
                (Some(from), Some(until)) => from <= slot && slot < until,
                _ => false,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// 1 s segments after a one-part (200 ms) first segment, from 500 ms: slot n begins
    /// at 0.5 (n = 0), 0.7 + (n − 1) s.
    fn gaps() -> Gaps {
        let mut g = Gaps::new(ms(1000), ms(200));
        g.set_origin(ms(500));
        g
    }

    fn feed(g: &mut Gaps, from: u64, to: u64) {
        for t in (from..to).step_by(33) {
            g.packet(ms(t));
        }
    }

    #[test]
    fn no_silence_no_gap() {
        let mut g = gaps();
        feed(&mut g, 0, 20_000);
        assert!((0..20).all(|n| !g.is_gap(n)));
    }

    #[test]
    fn a_stall_makes_the_slots_from_two_seconds_in_until_the_resume_gaps() {
        let mut g = gaps();
        feed(&mut g, 0, 5_000);
        // Last packet at 4.983 s; nothing until 12.0 s. Slots: 4.7 5.7 6.7 7.7 ...
        // While it lasts: gaps from the first slot at or after 6.983 s (7.7 s, n = 8).
        assert!(!g.is_gap(7));
        assert!(g.is_gap(8));
        assert!(g.is_gap(11));
        feed(&mut g, 12_000, 20_000);
        // After: until the first slot boundary at or after 12.0 (12.7, n = 13).
        let gap: Vec<u64> = (0..20).filter(|&n| g.is_gap(n)).collect();
        assert_eq!(gap, [8, 9, 10, 11, 12]);
    }

    #[test]
    fn a_short_silence_is_no_gap() {
        let mut g = gaps();
        feed(&mut g, 0, 5_000);
        feed(&mut g, 6_900, 10_000);
        assert!((0..10).all(|n| !g.is_gap(n)));
    }

    #[test]
    fn nothing_before_the_grid_is_known() {
        let mut g = Gaps::new(ms(1000), ms(200));
        g.packet(ms(0));
        g.packet(ms(9000));
        assert!(!g.is_gap(3));
    }
}
