//! Audio/video alignment by the publisher's clock. Pure: the pipeline feeds it what the
//! jitter buffers report for each RTCP sender report and applies the offsets it returns.
//!
//! Each jitter buffer maps its stream's RTP timestamps onto the pipeline's running time
//! from that stream's own arrivals, so the two tracks line up only as well as their
//! packets' network and sender-side delays match (a video keyframe paced out over 100 ms
//! arrives later than the audio captured with it). A sender report (RFC 3550 §6.4.1) gives,
//! per stream, the sender's wall clock at one RTP timestamp; with both, "captured together"
//! becomes "played together": for each stream, `running − sender clock` must be the same.
//! The stream that is ahead is delayed (the jitter buffer's `ts-offset`), as rtpbin does
//! for RTP sessions it owns. Offsets only grow, so timestamps never go back; a change
//! below [`THRESHOLD_NS`] is left alone, and one beyond [`MAX_OFFSET_NS`] is refused as
//! implausible (a sender whose clocks disagree by seconds).
//!
//! Reports are noisy in one direction: a sender that stamps a report with the RTP time of
//! the last packet it sent rather than extrapolating to the report's instant (webrtc-rs
//! does; seen here as ±16 ms jumps) gives an RTP time up to a packet interval too early,
//! so `running − sender` comes out too small, never too large. Each stream's value is
//! therefore the largest of its last [`HISTORY`] reports; applying every noisy report
//! would ratchet both offsets (and the latency) up step by step.

/// Corrections smaller than this are not applied: less than a video frame, and within
/// what a sender report's own timing jitter gives.
pub const THRESHOLD_NS: i128 = 20_000_000;

/// The largest delay added to a stream.
pub const MAX_OFFSET_NS: i64 = 1_000_000_000;

/// Reports remembered per stream (one every second or so from most senders).
pub const HISTORY: usize = 8;

/// Reports needed from each stream before anything is corrected: in its first second a
/// jitter buffer is still estimating the skew it reports with (seen with Chromium: audio
/// delayed by 73 ms on the first pair of reports, video by 72 ms 0.7 s later, adding
/// latency to both for nothing).
pub const MIN_REPORTS: usize = 3;

/// Which stream a report belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The audio stream.
    Audio = 0,
    /// The video stream.
    Video = 1,
}

/// What changed after a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Set these offsets (ns): `[audio, video]`.
    Offsets([i64; 2]),
    /// The streams are further apart than [`MAX_OFFSET_NS`]; nothing applied.
    Implausible(i128),
}

/// The alignment state of one broadcast.
#[derive(Debug, Default)]
pub struct LipSync {
    /// `running − sender clock` of each stream's recent reports, ns, without its offset.
    skew: [std::collections::VecDeque<i128>; 2],
    offsets: [i64; 2],
}

impl LipSync {
    /// A report of `track`: its RTP timestamp plays at `running` ns (before the offset this
    /// type asked for) and was captured at `sender` ns of the publisher's clock.
    pub fn on_report(&mut self, track: Track, running: i128, sender: i128) -> Option<Change> {
        let history = &mut self.skew[track as usize];
        if history.len() == HISTORY {
            history.pop_front();
        }
        history.push_back(running - sender);
        if self.skew.iter().any(|h| h.len() < MIN_REPORTS) {
            return None;
        }
        let (Some(&a), Some(&v)) = (self.skew[0].iter().max(), self.skew[1].iter().max()) else {
            return None;
        };
        // > 0: audio plays later than the video captured with it.
        let delta = (a + i128::from(self.offsets[0])) - (v + i128::from(self.offsets[1]));
        if delta.abs() < THRESHOLD_NS {
            return None;
        }
        // The stream that plays early is the one delayed.
        let (early, by) = (usize::from(delta > 0), delta.abs());
        let next = i128::from(self.offsets[early]) + by;
        if next > i128::from(MAX_OFFSET_NS) {
            return Some(Change::Implausible(delta));
        }
        self.offsets[early] = next as i64;
        Some(Change::Offsets(self.offsets))
    }

    /// The offsets in force, `[audio, video]`, ns.
    #[cfg(test)]
    pub fn offsets(&self) -> [i64; 2] {
        self.offsets
    }
}

/// A 64-bit NTP timestamp (RFC 3550 §4: seconds since 1900 in the high word, fraction in
/// the low word) in nanoseconds.
pub fn ntp_to_ns(ntp: u64) -> i128 {
    let secs = i128::from(ntp >> 32);
    let frac = i128::from(ntp & 0xffff_ffff);
    secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
}

/// An RTCP sender report without reception report blocks (RFC 3550 §6.4.1), for the jitter
/// buffer's RTCP input: it reads the SSRC, the NTP and the RTP timestamp.
pub fn sender_report_packet(ssrc: u32, ntp: u64, rtp: u32) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0] = 0x80; // V=2, P=0, RC=0
    p[1] = 200; // PT=SR
    p[2..4].copy_from_slice(&6u16.to_be_bytes()); // length in 32-bit words minus one
    p[4..8].copy_from_slice(&ssrc.to_be_bytes());
    p[8..16].copy_from_slice(&ntp.to_be_bytes());
    p[16..20].copy_from_slice(&rtp.to_be_bytes());
    // Packet and octet counts: unknown here, unused by the jitter buffer.
    p
}

/// The NTP timestamp of a sender report packet.
pub fn sender_report_ntp(packet: &[u8]) -> Option<u64> {
    let b: [u8; 8] = packet.get(8..16)?.try_into().ok()?;
    (packet.get(1) == Some(&200)).then(|| u64::from_be_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i128 = 1_000_000;

    #[test]
    fn the_early_stream_is_delayed_and_offsets_only_grow() {
        let mut s = LipSync::default();
        // Video arrived 120 ms later than the audio captured with it; nothing is decided
        // before three reports of each.
        for _ in 0..MIN_REPORTS {
            assert_eq!(s.on_report(Track::Audio, 1000 * MS, 0), None);
        }
        for _ in 1..MIN_REPORTS {
            assert_eq!(s.on_report(Track::Video, 1120 * MS, 0), None);
        }
        assert_eq!(
            s.on_report(Track::Video, 1120 * MS, 0),
            Some(Change::Offsets([120_000_000, 0]))
        );
        // Jitter below the threshold is left alone; so are reports that come out early
        // (the largest recent value counts).
        assert_eq!(s.on_report(Track::Video, 1130 * MS, 0), None);
        assert_eq!(s.on_report(Track::Audio, 950 * MS, 0), None);
        assert_eq!(s.on_report(Track::Video, 1090 * MS, 0), None);
        // The audio now maps 40 ms later (1160 with its offset, video 1130): the video is
        // delayed by 30 ms, the audio offset stays.
        assert_eq!(
            s.on_report(Track::Audio, 1040 * MS, 0),
            Some(Change::Offsets([120_000_000, 30_000_000]))
        );
        assert_eq!(s.offsets(), [120_000_000, 30_000_000]);
    }

    #[test]
    fn seconds_apart_is_refused() {
        let mut s = LipSync::default();
        for _ in 0..MIN_REPORTS {
            s.on_report(Track::Audio, 0, 0);
        }
        for _ in 1..MIN_REPORTS {
            s.on_report(Track::Video, 5000 * MS, 0);
        }
        assert!(matches!(
            s.on_report(Track::Video, 5000 * MS, 0),
            Some(Change::Implausible(_))
        ));
        assert_eq!(s.offsets(), [0, 0]);
    }

    #[test]
    fn ntp_and_packets() {
        assert_eq!(ntp_to_ns(1 << 32), 1_000_000_000);
        assert_eq!(ntp_to_ns((3 << 32) | (1 << 31)), 3_500_000_000);
        let p = sender_report_packet(0x1234_5678, 0x0102_0304_0506_0708, 99);
        assert_eq!(&p[..4], &[0x80, 200, 0, 6]);
        assert_eq!(sender_report_ntp(&p), Some(0x0102_0304_0506_0708));
        assert_eq!(u32::from_be_bytes([p[16], p[17], p[18], p[19]]), 99);
        assert_eq!(sender_report_ntp(&p[..10]), None);
    }
}
