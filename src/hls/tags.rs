//! Tag text of the media playlist: the number and date formats, and a small typed model of
//! the Low-Latency tags (`EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`, `EXT-X-PART`,
//! `EXT-X-PRELOAD-HINT`, `EXT-X-RENDITION-REPORT`, `EXT-X-SKIP`) with their exact text.
//! Pure. Every rule cites draft-pantos-hls-rfc8216bis (HLS2, the second edition of RFC 8216)
//! by section.

use std::fmt::{self, Display};
use std::time::{Duration, SystemTime};

/// Seconds as an HLS decimal-floating-point (HLS2 §4.2): up to 5 decimals, no trailing zeros.
pub(super) fn secs(d: Duration) -> String {
    let s = format!("{:.5}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

/// An `EXT-X-PROGRAM-DATE-TIME` value (HLS2 §4.4.4.6): ISO 8601 in UTC, milliseconds.
pub(super) fn pdt(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `EXT-X-SERVER-CONTROL` (HLS2 §4.4.3.8). Identical in every rendition (§6.2.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ServerControl {
    /// `CAN-SKIP-UNTIL`: the skip boundary, ≥ 6 × target duration.
    pub(super) can_skip_until: Duration,
    /// `HOLD-BACK`: ≥ 3 × target duration.
    pub(super) hold_back: Duration,
    /// `PART-HOLD-BACK`: ≥ 3 × part target (Apple makes 3× a MUST, AUTH 14.3).
    pub(super) part_hold_back: Duration,
}

impl ServerControl {
    /// The draft's recommended skip boundary and hold-back for a target duration, and
    /// `PART-HOLD-BACK` = `part_hold_back_factor` × part target (HLS2 §4.4.3.8 recommends
    /// 3, requires at least 2), rounded to the millisecond.
    pub(super) fn new(
        target_duration: u64,
        part_target: Duration,
        part_hold_back_factor: f64,
    ) -> Self {
        let td = Duration::from_secs(target_duration);
        let ms = (part_target.as_secs_f64() * part_hold_back_factor * 1000.0).round() as u64;
        Self {
            can_skip_until: td * 6,
            hold_back: td * 3,
            part_hold_back: Duration::from_millis(ms),
        }
    }
}

impl Display for ServerControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={},HOLD-BACK={},PART-HOLD-BACK={}",
            secs(self.can_skip_until),
            secs(self.hold_back),
            secs(self.part_hold_back)
        )
    }
}

/// `EXT-X-PART-INF` (HLS2 §4.4.3.7).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct PartInf {
    /// `PART-TARGET`: no part is longer.
    pub(super) part_target: Duration,
}

impl Display for PartInf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-PART-INF:PART-TARGET={}", secs(self.part_target))
    }
}

/// `EXT-X-PART` (HLS2 §4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PartTag {
    /// `DURATION`.
    pub(super) duration: Duration,
    /// `URI`.
    pub(super) uri: String,
    /// `INDEPENDENT=YES` when the part contains an independent frame.
    pub(super) independent: bool,
    /// `GAP=YES`: the part is not available (HLS2 §4.4.4.9).
    pub(super) gap: bool,
}

impl Display for PartTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#EXT-X-PART:DURATION={},URI=\"{}\"",
            secs(self.duration),
            self.uri
        )?;
        if self.independent {
            f.write_str(",INDEPENDENT=YES")?;
        }
        if self.gap {
            f.write_str(",GAP=YES")?;
        }
        Ok(())
    }
}

/// `EXT-X-PRELOAD-HINT:TYPE=PART` (HLS2 §4.4.5.3).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct PreloadHint {
    /// `URI` of the next part; it must equal that part's future `EXT-X-PART` URI.
    pub(super) uri: String,
}

impl Display for PreloadHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", self.uri)
    }
}

/// `EXT-X-RENDITION-REPORT` (HLS2 §4.4.5.4).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct RenditionReport {
    /// `URI` of the other rendition's playlist, relative to this one.
    pub(super) uri: String,
    /// `LAST-MSN`.
    pub(super) last_msn: u64,
    /// `LAST-PART`.
    pub(super) last_part: Option<usize>,
}

impl Display for RenditionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={}",
            self.uri, self.last_msn
        )?;
        if let Some(p) = self.last_part {
            write!(f, ",LAST-PART={p}")?;
        }
        Ok(())
    }
}

/// `EXT-X-SKIP` (HLS2 §4.4.5.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Skip {
    /// `SKIPPED-SEGMENTS`.
    pub(super) skipped_segments: u64,
}

impl Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", self.skipped_segments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_golden_text() {
        assert_eq!(secs(Duration::from_millis(200)), "0.2");
        assert_eq!(secs(Duration::from_secs(6)), "6");
        assert_eq!(secs(Duration::from_nanos(213_333_333)), "0.21333");
        assert_eq!(secs(Duration::ZERO), "0");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(pdt(t), "2023-11-14T22:13:20.123Z");
        let sc = ServerControl::new(1, Duration::from_millis(222), 3.0);
        assert_eq!(
            sc.to_string(),
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6,HOLD-BACK=3,PART-HOLD-BACK=0.666"
        );
        assert_eq!(
            PartInf {
                part_target: Duration::from_millis(222)
            }
            .to_string(),
            "#EXT-X-PART-INF:PART-TARGET=0.222"
        );
        let p = PartTag {
            duration: Duration::from_millis(200),
            uri: "part-e-3.0.m4s".into(),
            independent: true,
            gap: false,
        };
        assert_eq!(
            p.to_string(),
            "#EXT-X-PART:DURATION=0.2,URI=\"part-e-3.0.m4s\",INDEPENDENT=YES"
        );
        let p = PartTag {
            independent: false,
            ..p
        };
        assert_eq!(
            p.to_string(),
            "#EXT-X-PART:DURATION=0.2,URI=\"part-e-3.0.m4s\""
        );
        let p = PartTag { gap: true, ..p };
        assert_eq!(
            p.to_string(),
            "#EXT-X-PART:DURATION=0.2,URI=\"part-e-3.0.m4s\",GAP=YES"
        );
        assert_eq!(
            PreloadHint {
                uri: "part-e-3.1.m4s".into()
            }
            .to_string(),
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-e-3.1.m4s\""
        );
        let r = RenditionReport {
            uri: "../240p/index.m3u8".into(),
            last_msn: 12,
            last_part: Some(3),
        };
        assert_eq!(
            r.to_string(),
            "#EXT-X-RENDITION-REPORT:URI=\"../240p/index.m3u8\",LAST-MSN=12,LAST-PART=3"
        );
        assert_eq!(
            RenditionReport {
                last_part: None,
                ..r
            }
            .to_string(),
            "#EXT-X-RENDITION-REPORT:URI=\"../240p/index.m3u8\",LAST-MSN=12"
        );
        assert_eq!(
            Skip {
                skipped_segments: 4
            }
            .to_string(),
            "#EXT-X-SKIP:SKIPPED-SEGMENTS=4"
        );
    }
}
