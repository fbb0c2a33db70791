//! Keyframe steering for the passthrough rung. Pure: every call takes `now`.
//!
//! The passthrough rung can only cut segments on the publisher's own keyframes, and
//! cmafmux ends a fragment at the first keyframe at or after `fragment start + segment
//! duration` (gst-plugin-fmp4 `calculate_fragment_end_pts`: relative to the actual start).
//! So one keyframe request (PLI) is due one segment duration after each cut, plus a frame
//! of margin so the answer cannot arrive early: each segment is then the target plus the
//! publisher's response time. Publishers that ignore PLI (OBS has no PLI handler,
//! obs-studio PR #13090 closed) are detected; whipcast then stops steering, warns, and the
//! segments follow the keyframes the publisher sends, whose interval is reported.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How many unanswered requests in a row mean "this publisher ignores PLI".
const IGNORED_AFTER: u32 = 3;

/// Keyframe intervals remembered for the reported GOP length.
const GOP_HISTORY: usize = 16;

/// Steering mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Requesting keyframes on the segment cadence.
    Steering,
    /// The publisher does not answer PLI; segments follow its own keyframes.
    PublisherGop,
}

/// What `/api/streams` shows about a stream's keyframes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyframeStats {
    /// Steering or following the publisher.
    pub mode: Mode,
    /// Median interval between the publisher's recent keyframes, seconds.
    pub observed_gop_s: Option<f64>,
    /// Keyframe requests sent by the steering.
    pub requests: u32,
    /// Requests answered by a keyframe in time.
    pub answered: u32,
    /// Mean time from request to keyframe, milliseconds.
    pub response_ms: Option<f64>,
}

/// The steering state machine of one stream.
#[derive(Debug)]
pub struct Steering {
    segment: Duration,
    /// Length of the first segment (LL-HLS: one part, see `media::mux`).
    first_segment: Duration,
    cuts: u64,
    margin: Duration,
    answer_timeout: Duration,
    mode: Mode,
    last_keyframe: Option<Instant>,
    /// When the publisher's last video packet came.
    last_media: Option<Instant>,
    last_cut: Option<Instant>,
    due: Option<Instant>,
    pending: Option<Instant>,
    unanswered: u32,
    requests: u32,
    answered: u32,
    response_total: Duration,
    gops: VecDeque<Duration>,
}

impl Steering {
    /// Steering for `segment`-long segments at `fps` frames per second.
    pub fn new(segment: Duration, fps: u32) -> Self {
        let frame = Duration::from_secs(1) / fps.max(1);
        Self {
            segment,
            first_segment: segment,
            cuts: 0,
            margin: frame,
            // A keyframe should follow a PLI within a few frames plus a round trip.
            answer_timeout: (segment / 2).max(Duration::from_millis(500)),
            mode: Mode::Steering,
            last_keyframe: None,
            last_media: None,
            last_cut: None,
            due: None,
            pending: None,
            unanswered: 0,
            requests: 0,
            answered: 0,
            response_total: Duration::ZERO,
            gops: VecDeque::new(),
        }
    }

    /// The first segment is `first` long (the muxer splits it there): the first request
    /// is due `first` after the first keyframe, so the stream is playable that early.
    #[must_use]
    pub fn with_first_segment(mut self, first: Duration) -> Self {
        self.first_segment = first.min(self.segment);
        self
    }

    /// A video packet arrived at `now` (a request is only unanswered if media came
    /// meanwhile: a publisher that sends nothing ignores nothing).
    pub fn on_media(&mut self, now: Instant) {
        self.last_media = Some(now);
    }

    /// A keyframe (a new one: call once per frame) arrived at `now`.
    pub fn on_keyframe(&mut self, now: Instant) {
        if let Some(prev) = self.last_keyframe {
            if self.gops.len() == GOP_HISTORY {
                self.gops.pop_front();
            }
            self.gops.push_back(now.saturating_duration_since(prev));
        }
        self.last_keyframe = Some(now);
        if let Some(asked) = self.pending.take() {
            self.answered += 1;
            self.unanswered = 0;
            self.response_total += now.saturating_duration_since(asked);
        }
        // The muxer cuts here if a whole segment has passed since the last cut.
        let length = |cuts: u64| {
            if cuts == 1 {
                self.first_segment
            } else {
                self.segment
            }
        };
        let cuts = self
            .last_cut
            .is_none_or(|c| now.saturating_duration_since(c) >= length(self.cuts));
        if cuts {
            self.last_cut = Some(now);
            self.cuts += 1;
            if self.mode == Mode::Steering {
                // Right after a short first segment, arrival times and media timestamps
                // have not settled yet (the publisher's encoder is starting): measured, a
                // one-frame margin let the answer land before the muxer's fragment end,
                // costing a 2 s segment. Three frames of margin there.
                let margin = if self.cuts == 2 && self.first_segment < self.segment {
                    self.margin * 3
                } else {
                    self.margin
                };
                self.due = Some(now + length(self.cuts) + margin);
            }
        }
    }

    /// Whether to send a PLI now. Call on every wake-up; see [`Steering::next_wake`].
    pub fn poll(&mut self, now: Instant) -> bool {
        if let Some(asked) = self.pending {
            if now.saturating_duration_since(asked) >= self.answer_timeout {
                self.pending = None;
                // Through a stall of the publisher nothing is ignored: not counted.
                if self.last_media.is_some_and(|m| m > asked) {
                    self.unanswered += 1;
                }
                // Ask again at once: a request can be lost, or dropped by the publisher
                // (Chromium ignores a PLI within 300 ms of the previous one, and answers
                // one PLI with a keyframe on every simulcast layer, measured); waiting for
                // the publisher's own next keyframe instead made a 40 s segment.
                if self.mode == Mode::Steering {
                    self.due = Some(now);
                }
                if self.unanswered >= IGNORED_AFTER && self.mode == Mode::Steering {
                    self.mode = Mode::PublisherGop;
                    self.due = None;
                    tracing::warn!(
                        observed_gop_s = ?self.observed_gop().map(|g| g.as_secs_f64()),
                        "publisher ignores keyframe requests (PLI); segments follow its own keyframes"
                    );
                }
            }
            return false;
        }
        match self.due {
            Some(due) if now >= due => {
                self.due = None;
                self.pending = Some(now);
                self.requests += 1;
                true
            }
            _ => false,
        }
    }

    /// When [`Steering::poll`] next has something to do.
    pub fn next_wake(&self) -> Option<Instant> {
        match (self.pending, self.due) {
            (Some(asked), _) => Some(asked + self.answer_timeout),
            (None, due) => due,
        }
    }

    /// Median of the recent keyframe intervals (robust to the extra keyframes requested at
    /// start and after losses).
    pub fn observed_gop(&self) -> Option<Duration> {
        let mut v: Vec<Duration> = self.gops.iter().copied().collect();
        v.sort_unstable();
        v.get(v.len() / 2).copied()
    }

    /// The current mode.
    #[cfg(test)]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The figures for `/api/streams`.
    pub fn stats(&self) -> KeyframeStats {
        KeyframeStats {
            mode: self.mode,
            observed_gop_s: self.observed_gop().map(|g| g.as_secs_f64()),
            requests: self.requests,
            answered: self.answered,
            response_ms: (self.answered > 0)
                .then(|| self.response_total.as_secs_f64() * 1000.0 / f64::from(self.answered)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: Duration = Duration::from_secs(2);

    #[test]
    fn requests_one_keyframe_per_segment_after_each_cut() {
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30);
        assert!(!s.poll(t0));
        s.on_keyframe(t0);
        let due = s.next_wake().expect("due");
        // One segment plus one frame of margin after the cut.
        assert_eq!(due - t0, SEG + Duration::from_secs(1) / 30);
        assert!(!s.poll(due - Duration::from_millis(1)));
        assert!(s.poll(due));
        assert!(!s.poll(due), "one request per segment");
        // The publisher answers 40 ms later: that keyframe is the next cut.
        let k1 = due + Duration::from_millis(40);
        s.on_keyframe(k1);
        assert_eq!(s.next_wake(), Some(k1 + SEG + Duration::from_secs(1) / 30));
        let st = s.stats();
        assert_eq!((st.requests, st.answered), (1, 1));
        assert!((st.response_ms.expect("ms") - 40.0).abs() < 1e-6);
        assert_eq!(st.mode, Mode::Steering);
    }

    #[test]
    fn a_short_first_segment_is_requested_one_part_after_the_first_keyframe() {
        let part = Duration::from_millis(200);
        let frame = Duration::from_secs(1) / 30;
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30).with_first_segment(part);
        s.on_keyframe(t0);
        assert_eq!(s.next_wake(), Some(t0 + part + frame));
        assert!(s.poll(t0 + part + frame));
        let k1 = t0 + part + frame + Duration::from_millis(30);
        s.on_keyframe(k1);
        // From the second cut on: whole segments (three frames of margin after the first).
        assert_eq!(s.next_wake(), Some(k1 + SEG + frame * 3));
        assert!(s.poll(k1 + SEG + frame * 3));
        let k2 = k1 + SEG + frame * 3 + Duration::from_millis(30);
        s.on_keyframe(k2);
        assert_eq!(s.next_wake(), Some(k2 + SEG + frame));
    }

    #[test]
    fn mid_segment_keyframes_do_not_move_the_cut() {
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30);
        s.on_keyframe(t0);
        let due = s.next_wake().expect("due");
        // A spontaneous keyframe 0.5 s in (e.g. answering a loss PLI) is inside the segment.
        s.on_keyframe(t0 + Duration::from_millis(500));
        assert_eq!(s.next_wake(), Some(due));
        assert_eq!(s.observed_gop(), Some(Duration::from_millis(500)));
    }

    #[test]
    fn an_unanswered_request_is_repeated_at_once() {
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30);
        s.on_keyframe(t0);
        let due = s.next_wake().expect("due");
        assert!(s.poll(due));
        let deadline = s.next_wake().expect("answer deadline");
        assert!(!s.poll(deadline), "the timeout itself sends nothing");
        assert_eq!(s.next_wake(), Some(deadline), "the repeat is due at once");
        assert!(s.poll(deadline));
        s.on_keyframe(deadline + Duration::from_millis(40));
        let st = s.stats();
        assert_eq!((st.requests, st.answered, st.mode), (2, 1, Mode::Steering));
    }

    #[test]
    fn requests_unanswered_through_a_stall_are_not_ignored_ones() {
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30);
        s.on_keyframe(t0);
        let mut now = s.next_wake().expect("due");
        // The publisher stalls: nothing arrives, the request is repeated every timeout.
        for _ in 0..IGNORED_AFTER * 3 {
            assert!(s.poll(now));
            now = s.next_wake().expect("answer deadline");
            assert!(!s.poll(now));
        }
        assert_eq!(s.mode(), Mode::Steering);
        // Media again, and the keyframe answering the next request.
        s.on_media(now);
        assert!(s.poll(now));
        s.on_keyframe(now + Duration::from_millis(30));
        assert_eq!(s.stats().answered, 1);
    }

    #[test]
    fn unanswered_requests_flip_to_publisher_gop() {
        let t0 = Instant::now();
        let mut s = Steering::new(SEG, 30);
        s.on_keyframe(t0);
        let mut now = s.next_wake().expect("due");
        for i in 0..IGNORED_AFTER {
            assert!(s.poll(now), "request {i}");
            // The publisher keeps sending (delta frames).
            s.on_media(now + Duration::from_millis(10));
            now = s.next_wake().expect("answer deadline");
            assert!(!s.poll(now));
            // The publisher's own keyframe arrives later (GOP 4 s), re-arming the cadence.
            now += Duration::from_secs(3);
            if i + 1 < IGNORED_AFTER {
                s.on_keyframe(now);
                now = s.next_wake().expect("due again");
            }
        }
        assert_eq!(s.mode(), Mode::PublisherGop);
        s.on_keyframe(now);
        assert_eq!(s.next_wake(), None, "no more requests once ignored");
        let st = s.stats();
        assert_eq!(st.answered, 0);
        assert_eq!(st.requests, IGNORED_AFTER);
        assert!(st.observed_gop_s.expect("gop") > 3.0);
    }
}
