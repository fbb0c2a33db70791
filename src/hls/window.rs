//! The sliding window of one rendition: segment numbering, the playlist window and the
//! retention of segments that left it. Pure: no clock, no I/O.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// One published segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number (never reused within a broadcast).
    pub seq: u64,
    /// Exact duration.
    pub duration: Duration,
    /// Wall-clock time of its first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub wallclock: SystemTime,
    /// Starts with a keyframe.
    pub independent: bool,
    /// The CMAF fragment.
    pub data: Bytes,
}

/// The segments of one rendition.
#[derive(Debug)]
pub struct Window {
    /// Listed in the playlist, oldest first.
    live: VecDeque<Segment>,
    /// Left the playlist but still downloadable (HLS2 §6.2.2: a client that loaded the
    /// previous playlist may still ask for them).
    retired: VecDeque<Segment>,
    next_seq: u64,
    window: usize,
    retain: usize,
}

impl Window {
    /// A window listing `window` segments and keeping `retain` more downloadable.
    pub fn new(window: usize, retain: usize) -> Self {
        Self {
            live: VecDeque::new(),
            retired: VecDeque::new(),
            next_seq: 0,
            window: window.max(1),
            retain,
        }
    }

    /// Appends a segment, numbering it; returns its sequence number.
    pub fn push(
        &mut self,
        duration: Duration,
        wallclock: SystemTime,
        independent: bool,
        data: Bytes,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.live.push_back(Segment {
            seq,
            duration,
            wallclock,
            independent,
            data,
        });
        while self.live.len() > self.window {
            if let Some(old) = self.live.pop_front() {
                self.retired.push_back(old);
            }
        }
        while self.retired.len() > self.retain {
            self.retired.pop_front();
        }
        seq
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the number of the first listed segment. It only grows
    /// (HLS2 §6.2.2).
    pub fn media_sequence(&self) -> u64 {
        self.live.front().map_or(self.next_seq, |s| s.seq)
    }

    /// The listed segments, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.live.iter()
    }

    /// Number of listed segments.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether no segment was published yet.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Sequence number the next segment will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A listed or retired segment by sequence number.
    pub fn get(&self, seq: u64) -> Option<&Segment> {
        self.live
            .iter()
            .chain(self.retired.iter())
            .find(|s| s.seq == seq)
    }

    /// Whether `seq` is listed in the playlist (as opposed to retired or unknown).
    pub fn is_listed(&self, seq: u64) -> bool {
        self.live.iter().any(|s| s.seq == seq)
    }

    /// Duration of the longest listed segment.
    pub fn max_duration(&self) -> Duration {
        self.live
            .iter()
            .map(|s| s.duration)
            .max()
            .unwrap_or_default()
    }

    /// Total listed duration.
    pub fn total_duration(&self) -> Duration {
        self.live.iter().map(|s| s.duration).sum()
    }

    /// Bytes held (listed + retired), for memory accounting.
    pub fn bytes(&self) -> usize {
        self.live
            .iter()
            .chain(self.retired.iter())
            .map(|s| s.data.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_n(w: &mut Window, n: usize) {
        for i in 0..n {
            w.push(
                Duration::from_secs(2),
                SystemTime::UNIX_EPOCH + Duration::from_secs(2 * i as u64),
                true,
                Bytes::from(vec![i as u8; 10]),
            );
        }
    }

    #[test]
    fn numbering_starts_at_zero_and_never_reuses() {
        let mut w = Window::new(3, 2);
        assert_eq!(w.media_sequence(), 0);
        assert!(w.is_empty());
        push_n(&mut w, 5);
        let seqs: Vec<u64> = w.segments().map(|s| s.seq).collect();
        assert_eq!(seqs, [2, 3, 4]);
        assert_eq!(w.media_sequence(), 2);
        assert_eq!(w.next_seq(), 5);
    }

    #[test]
    fn retired_segments_stay_downloadable_then_go() {
        let mut w = Window::new(3, 2);
        push_n(&mut w, 5);
        // 0 and 1 left the playlist but are still served.
        assert!(w.get(0).is_some() && w.get(1).is_some());
        assert!(!w.is_listed(1));
        assert!(w.is_listed(2));
        push_n(&mut w, 1);
        // 0 is now beyond the retention.
        assert!(w.get(0).is_none());
        assert!(w.get(1).is_some());
        assert_eq!(w.bytes(), 50);
    }

    #[test]
    fn durations() {
        let mut w = Window::new(6, 0);
        w.push(
            Duration::from_millis(1900),
            SystemTime::UNIX_EPOCH,
            true,
            Bytes::new(),
        );
        w.push(
            Duration::from_millis(2100),
            SystemTime::UNIX_EPOCH,
            true,
            Bytes::new(),
        );
        assert_eq!(w.max_duration(), Duration::from_millis(2100));
        assert_eq!(w.total_duration(), Duration::from_secs(4));
        assert_eq!(w.len(), 2);
    }
}
