//! A rendition's measured bitrate, what `BANDWIDTH` (the peak segment bitrate) and
//! `AVERAGE-BANDWIDTH` (the average over the broadcast) come from (HLS2 §4.4.6.2). Kept
//! by the origin store and by the packager of recordings and uploads alike.

use std::time::Duration;

/// Bytes and durations seen so far.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Bitrate {
    peak_bps: u64,
    total_bytes: u64,
    total_duration: Duration,
}

fn bps(bytes: u64, d: Duration) -> Option<u64> {
    let secs = d.as_secs_f64();
    (secs > 0.0).then(|| (bytes as f64 * 8.0 / secs) as u64)
}

impl Bitrate {
    /// Media published (a part or a whole segment): counts towards the average.
    pub fn add(&mut self, bytes: u64, duration: Duration) {
        self.total_bytes += bytes;
        self.total_duration += duration;
    }

    /// A segment completed with `bytes` over `duration`: it may raise the peak.
    pub fn segment(&mut self, bytes: u64, duration: Duration) {
        if let Some(b) = bps(bytes, duration) {
            self.peak_bps = self.peak_bps.max(b);
        }
    }

    /// The highest segment bitrate, bit/s.
    pub fn peak_bps(&self) -> u64 {
        self.peak_bps
    }

    /// The average bitrate so far, bit/s (0 before any media).
    pub fn average_bps(&self) -> u64 {
        bps(self.total_bytes, self.total_duration).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_of_segments_average_of_everything() {
        let mut b = Bitrate::default();
        assert_eq!((b.peak_bps(), b.average_bps()), (0, 0));
        b.add(1000, Duration::from_millis(500));
        b.add(3000, Duration::from_millis(500));
        b.segment(4000, Duration::from_secs(1));
        b.add(1000, Duration::from_secs(1));
        b.segment(1000, Duration::from_secs(1));
        b.segment(5, Duration::ZERO);
        assert_eq!(b.peak_bps(), 32_000);
        assert_eq!(b.average_bps(), 20_000);
    }
}
