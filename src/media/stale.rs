//! Which RTP packets arrive too late to be live. Pure: RTP timestamps and arrival times in,
//! decisions out.
//!
//! Packets are timestamped with their arrival (pipeline.rs `push`) and the jitter buffer
//! maps RTP time onto that. A publisher that stalls and then sends what it held back (a
//! process that was stopped and continued, a mobile link that buffered through an outage)
//! delivers seconds of media within a fraction of a second, with RTP timestamps in the past.
//! rtpjitterbuffer (GStreamer 1.22) then resets its clock skew ("delta - skew too big",
//! more than 1 s) onto the first late packet's *arrival* and stamps the rest of the burst
//! from there by RTP time: measured with tests/timeline.rs (7 s held, then released), the
//! ladder published 7 segments of the held media within 0.6 s, then segments whose media
//! ended up to 1.6 s after the moment they were listed, and every later segment 0.5 s
//! ahead of the wall clock for as long as the stream lasted (`EXT-X-PROGRAM-DATE-TIME` in
//! the future). Held-back media is behind the live edge anyway: such packets are dropped
//! here, before the jitter buffer sees them; the jitter buffer reports them lost, the
//! depayloader asks for a keyframe, and the timeline shows the hole (gaps.rs).

use std::time::Duration;

/// A packet arriving this much later than the stream's fastest delivery so far is stale.
/// Above any jitter a live stream recovers from (the jitter buffer waits 150 ms), below
/// the 1 s at which rtpjitterbuffer resets its clock skew.
pub(crate) const STALE_AFTER: Duration = Duration::from_millis(500);

/// After stale packets, the stream is taken back only from a packet this close to the
/// reference: rtpjitterbuffer re-bases its clock on the first packet after a large gap, so
/// a packet admitted 450 ms late would put everything after it 450 ms ahead of the wall
/// clock (measured: parts listed up to 0.42 s before their media ended).
pub(crate) const RESUME_WITHIN: Duration = Duration::from_millis(100);

/// Stale packets for this long without one on time mean the path (or the publisher's
/// clock) changed for good: the filter takes the new delay as its reference. A held-back
/// burst drains much faster (seconds of media in well under a second, measured).
pub(crate) const REBASE_AFTER: Duration = Duration::from_secs(2);

/// The delay reference is the smallest seen in the current or the previous window of this
/// much arrival time, so it follows a publisher clock that runs slower than ours.
const WINDOW: Duration = Duration::from_secs(10);

/// Stale-packet filter of one RTP stream.
#[derive(Debug)]
pub(crate) struct StaleFilter {
    clock_rate: u64,
    /// Unwrapped RTP timestamp of the last packet (RFC 3550 §5.1 timestamps wrap).
    last_rtp: Option<(u32, i64)>,
    /// Smallest `arrival − RTP time` (ns) of the current and the previous window.
    current: Option<i128>,
    previous: Option<i128>,
    window_started: Duration,
    /// Arrival of the first stale packet of the current run of stale packets.
    stale_since: Option<Duration>,
    /// Packets were dropped: only one within [`RESUME_WITHIN`] resumes the stream.
    resuming: bool,
    dropped: u64,
}

impl StaleFilter {
    /// A filter for a stream with an RTP clock of `clock_rate` Hz.
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: u64::from(clock_rate.max(1)),
            last_rtp: None,
            current: None,
            previous: None,
            window_started: Duration::ZERO,
            stale_since: None,
            resuming: false,
            dropped: 0,
        }
    }

    /// Packets dropped so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether the packet with RTP timestamp `rtp` that arrived at `arrival` (on any
    /// monotonic scale) is live; `false`: drop it.
    pub(crate) fn admit(&mut self, rtp: u32, arrival: Duration) -> bool {
        let ext = match self.last_rtp {
            Some((last, ext)) => ext + i64::from(rtp.wrapping_sub(last) as i32),
            None => i64::from(rtp),
        };
        self.last_rtp = Some((rtp, ext));
        let media_ns = i128::from(ext) * 1_000_000_000 / i128::from(self.clock_rate);
        let offset = arrival.as_nanos() as i128 - media_ns;
        if arrival.saturating_sub(self.window_started) >= WINDOW {
            self.previous = self.current.take();
            self.window_started = arrival;
        }
        let reference = match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let late = reference.map_or(0, |r| offset - r);
        let limit = if self.resuming {
            RESUME_WITHIN
        } else {
            STALE_AFTER
        };
        if late > limit.as_nanos() as i128 {
            let since = *self.stale_since.get_or_insert(arrival);
            if arrival.saturating_sub(since) < REBASE_AFTER {
                self.dropped += 1;
                self.resuming = true;
                return false;
            }
            // Late for good: this delay is the new reference.
            self.current = Some(offset);
            self.previous = None;
            self.window_started = arrival;
        }
        self.stale_since = None;
        self.resuming = false;
        self.current = Some(self.current.map_or(offset, |c| c.min(offset)));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 3000; // 90 kHz, 30 fps

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn live_packets_with_jitter_pass() {
        let mut f = StaleFilter::new(90_000);
        for i in 0..300u32 {
            let jitter = u64::from((i * 37) % 120);
            assert!(f.admit(i * FRAME, ms(u64::from(i) * 1000 / 30 + jitter)));
        }
        assert_eq!(f.dropped(), 0);
    }

    #[test]
    fn a_held_back_burst_is_dropped_and_live_packets_pass_again() {
        let mut f = StaleFilter::new(90_000);
        let mut rtp = 1_000u32;
        let mut t = ms(0);
        for _ in 0..150 {
            assert!(f.admit(rtp, t));
            rtp = rtp.wrapping_add(FRAME);
            t += Duration::from_nanos(33_333_333);
        }
        // 7 s held back: 210 frames arrive within 300 ms...
        let resume = t + ms(7000);
        let mut dropped = 0;
        for i in 0..210u32 {
            if !f.admit(rtp, resume + ms(u64::from(i) * 300 / 210)) {
                dropped += 1;
            }
            rtp = rtp.wrapping_add(FRAME);
        }
        // ...all but the last few, which arrive within RESUME_WITHIN, are stale.
        assert!((200..=210).contains(&dropped), "{dropped} dropped");
        // Then the live pace again (the frames captured during those 300 ms are lost).
        rtp = rtp.wrapping_add(9 * FRAME);
        let mut t = resume + ms(300);
        for _ in 0..30 {
            t += Duration::from_nanos(33_333_333);
            assert!(f.admit(rtp, t));
            rtp = rtp.wrapping_add(FRAME);
        }
    }

    #[test]
    fn loss_then_live_packets_is_not_stale() {
        // Packets lost for 7 s (not held): RTP and arrival move on together.
        let mut f = StaleFilter::new(48_000);
        assert!(f.admit(0, ms(0)));
        assert!(f.admit(960, ms(20)));
        assert!(f.admit(960 + 48_000 * 7, ms(7020)));
    }

    #[test]
    fn a_lasting_delay_becomes_the_reference() {
        let mut f = StaleFilter::new(90_000);
        let mut rtp = u32::MAX - 30 * FRAME; // wraps on the way
        let mut t = ms(0);
        for _ in 0..60 {
            assert!(f.admit(rtp, t));
            rtp = rtp.wrapping_add(FRAME);
            t += Duration::from_nanos(33_333_333);
        }
        // The path gets 800 ms slower and stays so.
        t += ms(800);
        let mut admitted_after = None;
        for i in 0..120 {
            if f.admit(rtp, t) && admitted_after.is_none() {
                admitted_after = Some(i);
            }
            rtp = rtp.wrapping_add(FRAME);
            t += Duration::from_nanos(33_333_333);
        }
        // About REBASE_AFTER of frames dropped, then everything passes.
        let first = admitted_after.expect("admitted again");
        assert!((59..=61).contains(&first), "after {first} frames");
        assert!(f.admit(rtp, t));
    }

    #[test]
    fn a_slow_publisher_clock_is_followed() {
        // The publisher's clock runs 0.1 % slow: 2 s of drift over 2000 s, never stale.
        let mut f = StaleFilter::new(90_000);
        for i in 0..60_000u64 {
            let rtp = (i * 2997) as u32;
            assert!(f.admit(rtp, Duration::from_nanos(i * 33_333_333)), "{i}");
        }
    }
}
