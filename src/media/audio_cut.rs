//! Where the AAC rendition's LL-HLS segments begin. Pure: running times in, decisions out.
//!
//! With parts on, whipcast cuts the audio rendition into segments itself instead of
//! trusting cmafmux's fragment flags, for two measured reasons (cmafmux 0.14.5):
//!
//! * After one "drain at timeout" (audio input late, e.g. under CPU load) the muxer's chunk
//!   boundaries no longer line up with its fragment end; a chunk then straddles the end, the
//!   next chunk starts after it, and the fragment is never marked filled again: every later
//!   chunk extends one endless segment (seen as a 62 s audio segment in
//!   `tests/browser_llhls.rs`, and hls.js stalling on it).
//! * Without a timeout it cuts 93 AAC frames (1.984 s) for 2 s segments, so audio segment N
//!   drifts away from video segment N.
//!
//! Every AAC frame is a sync sample, so any CMAF chunk may begin a segment (HLS2 §6.2.5:
//! the server may begin a Partial Segment with an independent frame). Segments here begin at
//! the chunk closest to `first + part + n × segment`: the first segment is one part long, like
//! the video rungs' (mux.rs `split_first_fragment`), and later boundaries stay within half a
//! part of the video's, without drift.

use std::time::Duration;

/// Decides, chunk by chunk, which audio chunk starts a segment, one chunk ahead, so the
/// LL-HLS preload hint can name the next part exactly (HLS2 §6.2.6).
#[derive(Debug)]
pub(crate) struct AudioCutter {
    segment: Duration,
    /// Half a part: a chunk starting this close before a boundary begins the segment.
    slack: Duration,
    part: Duration,
    /// The next boundary (running time); `None` before the first chunk.
    next: Option<Duration>,
    /// The decision taken for the next chunk, and the start it was taken for.
    ahead: Option<(Duration, bool)>,
}

/// What the cutter says about one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cut {
    /// This chunk begins a segment.
    pub starts_segment: bool,
    /// The chunk after it will begin one (if it follows without a gap).
    pub next_starts_segment: bool,
}

impl AudioCutter {
    pub(crate) fn new(segment: Duration, part: Duration) -> Self {
        Self {
            segment,
            slack: part / 2,
            part,
            next: None,
            ahead: None,
        }
    }

    /// The chunk covering `[start, start + duration)`.
    pub(crate) fn chunk(&mut self, start: Duration, duration: Duration) -> Cut {
        let starts_segment = match self.ahead {
            // Follows the previous chunk: keep the decision the hint announced.
            Some((expected, decided)) if expected.abs_diff(start) <= self.slack => {
                if decided {
                    self.advance(start);
                }
                decided
            }
            // The first chunk, or one after a gap: decide afresh.
            _ => self.decide(start),
        };
        let end = start + duration;
        let next_starts_segment = self.next.is_some_and(|next| end + self.slack >= next);
        self.ahead = Some((end, next_starts_segment));
        Cut {
            starts_segment,
            next_starts_segment,
        }
    }

    fn decide(&mut self, start: Duration) -> bool {
        let Some(next) = self.next else {
            self.next = Some(start + self.part);
            return true;
        };
        if start + self.slack < next {
            return false;
        }
        self.advance(start);
        true
    }

    /// A segment begins at `start`: move to the first boundary after it. Boundaries a gap
    /// jumped over are skipped, so one gap costs one short or long segment, not a run.
    fn advance(&mut self, start: Duration) {
        let Some(mut b) = self.next else { return };
        b += self.segment;
        while b <= start + self.slack {
            b += self.segment;
        }
        self.next = Some(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    const CHUNK: Duration = Duration::from_nanos(213_333_333);

    /// Chunks of 10 AAC frames (213.33 ms), as cmafmux makes for 200 ms chunks.
    fn chunk_starts(first: Duration, n: usize) -> Vec<Duration> {
        (0..n).map(|i| first + CHUNK * i as u32).collect()
    }

    /// Feeds contiguous chunks; returns the starts that began segments, checking that every
    /// announced `next_starts_segment` came true.
    fn cuts(c: &mut AudioCutter, starts: &[Duration]) -> Vec<Duration> {
        let mut out = Vec::new();
        let mut announced: Option<bool> = None;
        for (i, s) in starts.iter().enumerate() {
            let dur = starts.get(i + 1).map_or(CHUNK, |n| *n - *s);
            let cut = c.chunk(*s, dur);
            if let Some(a) = announced {
                assert_eq!(a, cut.starts_segment, "hint broken at {s:?}");
            }
            announced = Some(cut.next_starts_segment);
            if cut.starts_segment {
                out.push(*s);
            }
        }
        out
    }

    #[test]
    fn first_segment_is_one_part_then_whole_segments_without_drift() {
        let mut c = AudioCutter::new(ms(2000), ms(200));
        let first = ms(5000);
        let starts = chunk_starts(first, 10 * 60 / 2);
        let cuts = cuts(&mut c, &starts);
        assert_eq!(cuts[0], first);
        assert_eq!(cuts[1] - first, Duration::from_nanos(213_333_333));
        // Every later boundary within half a part of first + 200 ms + n × 2 s.
        for (n, cut) in cuts.iter().skip(1).enumerate() {
            let ideal = first + ms(200) + ms(2000) * n as u32;
            let off = cut.as_secs_f64() - ideal.as_secs_f64();
            assert!(off.abs() <= 0.1 + 1e-9, "segment {n}: {off} s off");
        }
        // No drift: over 64 s, exactly one cut per 2 s after the first part.
        assert_eq!(cuts.len(), 1 + 32);
    }

    #[test]
    fn a_short_chunk_from_a_late_input_does_not_stop_the_cuts() {
        // The chunk phase shifts (a 149 ms chunk), as after cmafmux's timeout drain.
        let mut c = AudioCutter::new(ms(1000), ms(200));
        let mut starts = chunk_starts(ms(0), 25);
        let shift = Duration::from_millis(64);
        for s in starts.iter_mut().skip(12) {
            *s -= shift;
        }
        let cuts = cuts(&mut c, &starts).len();
        // 0, 0.2, 1.2, 2.2, 3.2, 4.2 (the chunks reach ~5.06 s).
        assert_eq!(cuts, 6);
    }

    #[test]
    fn a_gap_costs_one_segment_not_a_burst() {
        let mut c = AudioCutter::new(ms(1000), ms(200));
        let d = ms(213);
        assert!(c.chunk(ms(0), d).starts_segment);
        assert!(c.chunk(ms(213), d).starts_segment);
        assert!(!c.chunk(ms(426), d).starts_segment);
        // 5 s of nothing, then chunks again: one cut, then the regular cadence.
        assert!(c.chunk(ms(5500), d).starts_segment);
        assert!(!c.chunk(ms(5713), d).starts_segment);
        let cut = c.chunk(ms(5926), d);
        assert!(!cut.starts_segment && cut.next_starts_segment);
        assert!(c.chunk(ms(6139), d).starts_segment);
    }
}
