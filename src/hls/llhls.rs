//! Low-Latency HLS media playlists: a small typed model of the tags m3u8-rs lacks
//! (`EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`, `EXT-X-PART`, `EXT-X-PRELOAD-HINT`,
//! `EXT-X-RENDITION-REPORT`, `EXT-X-SKIP`; m3u8-rs #89) and the writer of whole LL media
//! playlists. Pure: takes a [`Window`], returns text. Every rule cites
//! draft-pantos-hls-rfc8216bis (HLS2, the second edition of RFC 8216) by section.

use std::fmt::{self, Display, Write as _};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::window::{Segment, Window};

/// Seconds as an HLS decimal-floating-point: up to 5 decimals, no trailing zeros.
pub fn secs(d: Duration) -> String {
    let s = format!("{:.5}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

fn pdt(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// `EXT-X-SERVER-CONTROL` (HLS2 §4.4.3.8). Identical in every rendition (§6.2.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerControl {
    /// `CAN-SKIP-UNTIL`: the skip boundary, ≥ 6 × target duration.
    pub can_skip_until: Duration,
    /// `HOLD-BACK`: ≥ 3 × target duration.
    pub hold_back: Duration,
    /// `PART-HOLD-BACK`: ≥ 3 × part target (Apple makes 3× a MUST, AUTH 14.3).
    pub part_hold_back: Duration,
}

impl ServerControl {
    /// The values the draft recommends for a target duration and part target.
    pub fn recommended(target_duration: u64, part_target: Duration) -> Self {
        let td = Duration::from_secs(target_duration);
        Self {
            can_skip_until: td * 6,
            hold_back: td * 3,
            part_hold_back: part_target * 3,
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
pub struct PartInf {
    /// `PART-TARGET`: no part is longer.
    pub part_target: Duration,
}

impl Display for PartInf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-PART-INF:PART-TARGET={}", secs(self.part_target))
    }
}

/// `EXT-X-PART` (HLS2 §4.4.4.9).
#[derive(Debug, Clone, PartialEq)]
pub struct PartTag {
    /// `DURATION`.
    pub duration: Duration,
    /// `URI`.
    pub uri: String,
    /// `INDEPENDENT=YES` when the part contains an independent frame.
    pub independent: bool,
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
        Ok(())
    }
}

/// `EXT-X-PRELOAD-HINT:TYPE=PART` (HLS2 §4.4.5.3).
#[derive(Debug, Clone, PartialEq)]
pub struct PreloadHint {
    /// `URI` of the next part; it must equal that part's future `EXT-X-PART` URI.
    pub uri: String,
}

impl Display for PreloadHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"", self.uri)
    }
}

/// `EXT-X-RENDITION-REPORT` (HLS2 §4.4.5.4).
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionReport {
    /// `URI` of the other rendition's playlist, relative to this one.
    pub uri: String,
    /// `LAST-MSN`.
    pub last_msn: u64,
    /// `LAST-PART`.
    pub last_part: Option<usize>,
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
pub struct Skip {
    /// `SKIPPED-SEGMENTS`.
    pub skipped_segments: u64,
}

impl Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#EXT-X-SKIP:SKIPPED-SEGMENTS={}", self.skipped_segments)
    }
}

/// Input for one LL media playlist.
pub struct LlView<'a> {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `PART-TARGET`.
    pub part_target: Duration,
    /// `EXT-X-SERVER-CONTROL` values.
    pub server_control: ServerControl,
    /// The rendition's segments and parts.
    pub window: &'a Window,
    /// Init segment URI.
    pub init_uri: &'a str,
    /// URI of segment `msn`.
    pub segment_uri: &'a dyn Fn(u64) -> String,
    /// URI of part `index` of segment `msn`.
    pub part_uri: &'a dyn Fn(u64, usize) -> String,
    /// Parts per segment, to predict the next part's URI for the preload hint.
    pub parts_per_segment: usize,
    /// What the media layer announced about the next part (starts a segment or not);
    /// overrides the part count when known.
    pub next_starts_segment: Option<bool>,
    /// Earlier broadcasts of this name (`EXT-X-DISCONTINUITY-SEQUENCE`, HLS2 §4.4.3.3):
    /// a re-published stream continues the media sequence numbers.
    pub discontinuity_sequence: u64,
    /// The previous broadcast's last segments, listed before an `EXT-X-DISCONTINUITY`.
    pub prelude: Option<Prelude<'a>>,
    /// Publisher gone: `EXT-X-ENDLIST`, no hint.
    pub ended: bool,
    /// A delta update was requested (`_HLS_skip=YES`).
    pub skip: bool,
    /// Reports for every other rendition.
    pub reports: Vec<RenditionReport>,
}

/// How many leading segments a delta update replaces with `EXT-X-SKIP`: those that end at
/// least `CAN-SKIP-UNTIL` before the end of the playlist (HLS2 §6.2.5.1).
pub fn skippable(window: &Window, can_skip_until: Duration) -> u64 {
    let total = window.total_duration();
    let mut end = Duration::ZERO;
    let mut n = 0;
    for s in window.segments() {
        end += s.duration;
        if total.saturating_sub(end) >= can_skip_until {
            n += 1;
        } else {
            break;
        }
    }
    n
}

/// The previous broadcast's last segments (a stream name re-published within the grace
/// period continues its playlists: HLS2 §4.4.3.3 `EXT-X-DISCONTINUITY-SEQUENCE`, §4.4.4.3
/// `EXT-X-DISCONTINUITY`), listed whole, with their own `EXT-X-MAP`, before the current
/// broadcast's segments. The renderers list them first, then `EXT-X-DISCONTINUITY` and the
/// current `EXT-X-MAP`; `EXT-X-DISCONTINUITY-SEQUENCE` is then the previous broadcast's.
pub struct Prelude<'a> {
    /// The segments still listed, oldest first (non-empty).
    pub segments: &'a [Segment],
    /// The previous broadcast's init segment URI.
    pub init_uri: &'a str,
    /// URI of its segment `msn`.
    pub segment_uri: &'a dyn Fn(u64) -> String,
}

/// The URI the next part will have (HLS2 §6.2.6: the hint must equal the future
/// `EXT-X-PART` URI). The media layer's announcement wins (`next_starts_segment`: the
/// audio cutter decides one chunk ahead, a rung's one-part first segment is known);
/// otherwise segments hold `parts_per_segment` parts, the muxer's own cadence. A publisher
/// keyframe elsewhere abandons the hint (→ 404).
pub fn next_part(
    window: &Window,
    parts_per_segment: usize,
    next_starts_segment: Option<bool>,
) -> (u64, usize) {
    match window.open() {
        Some(o) => {
            let starts = next_starts_segment.unwrap_or(o.parts.len() >= parts_per_segment.max(1));
            if starts {
                (o.seq + 1, 0)
            } else {
                (o.seq, o.parts.len())
            }
        }
        None => (window.next_seq(), 0),
    }
}

/// Renders an LL media playlist (full, or a delta update when `view.skip`).
pub fn render(view: &LlView<'_>) -> Bytes {
    let w = view.window;
    let prelude = view.prelude.as_ref().filter(|p| !p.segments.is_empty());
    // No delta updates while the previous broadcast is listed: EXT-X-SKIP cannot skip
    // across the discontinuity's EXT-X-MAP (a full playlist is always allowed).
    let skipped = if view.skip && !view.ended && prelude.is_none() {
        skippable(w, view.server_control.can_skip_until)
    } else {
        0
    };
    // EXT-X-MAP needs version 6; EXT-X-SKIP needs 9 (HLS2 §8).
    let version = if skipped > 0 { 9 } else { 6 };
    let mut out = String::with_capacity(2048);
    let mut line = |s: &dyn Display| {
        let _ = writeln!(out, "{s}");
    };
    line(&"#EXTM3U");
    line(&format_args!("#EXT-X-VERSION:{version}"));
    line(&format_args!(
        "#EXT-X-TARGETDURATION:{}",
        view.target_duration
    ));
    line(&view.server_control);
    line(&PartInf {
        part_target: view.part_target,
    });
    let (media_sequence, discontinuity_sequence) = match prelude {
        Some(p) => (
            p.segments[0].seq,
            view.discontinuity_sequence.saturating_sub(1),
        ),
        None => (w.media_sequence(), view.discontinuity_sequence),
    };
    line(&format_args!("#EXT-X-MEDIA-SEQUENCE:{media_sequence}"));
    if discontinuity_sequence > 0 {
        line(&format_args!(
            "#EXT-X-DISCONTINUITY-SEQUENCE:{discontinuity_sequence}"
        ));
    }
    line(&"#EXT-X-INDEPENDENT-SEGMENTS");
    if skipped > 0 {
        line(&Skip {
            skipped_segments: skipped,
        });
    }
    if let Some(p) = prelude {
        line(&format_args!("#EXT-X-MAP:URI=\"{}\"", p.init_uri));
        for s in p.segments {
            line(&format_args!(
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                pdt(s.wallclock)
            ));
            line(&format_args!("#EXTINF:{},", secs(s.duration)));
            line(&(p.segment_uri)(s.seq));
        }
        line(&"#EXT-X-DISCONTINUITY");
    }
    line(&format_args!("#EXT-X-MAP:URI=\"{}\"", view.init_uri));

    // Parts are listed for the segments of the last 3 target durations (HLS2 §6.2.2).
    let total = w.total_duration();
    let part_horizon = Duration::from_secs(view.target_duration * 3);
    let mut start = Duration::ZERO;
    let part_tags = |seq: u64, seg: &super::window::Segment, line: &mut dyn FnMut(&dyn Display)| {
        for (i, p) in seg.parts.iter().enumerate() {
            line(&PartTag {
                duration: p.duration,
                uri: (view.part_uri)(seq, i),
                independent: p.independent,
            });
        }
    };
    for (i, s) in w.segments().enumerate() {
        let seg_start = start;
        start += s.duration;
        if (i as u64) < skipped {
            continue;
        }
        line(&format_args!(
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            pdt(s.wallclock)
        ));
        if total.saturating_sub(seg_start) <= part_horizon {
            part_tags(s.seq, s, &mut line);
        }
        line(&format_args!("#EXTINF:{},", secs(s.duration)));
        line(&(view.segment_uri)(s.seq));
    }
    if let Some(o) = w.open() {
        // PDT (and MAP, DISCONTINUITY) of a parent segment go before its first part
        // (HLS2 §4.4.4.9).
        line(&format_args!(
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            pdt(o.wallclock)
        ));
        part_tags(o.seq, o, &mut line);
    }
    if view.ended {
        // Nothing will be added: no hint, no reports (they steer reloads), and ENDLIST.
        line(&"#EXT-X-ENDLIST");
    } else {
        let (msn, idx) = next_part(w, view.parts_per_segment, view.next_starts_segment);
        line(&PreloadHint {
            uri: (view.part_uri)(msn, idx),
        });
        for r in &view.reports {
            line(r);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::window::Part;

    #[test]
    fn tag_golden_text() {
        assert_eq!(secs(Duration::from_millis(200)), "0.2");
        assert_eq!(secs(Duration::from_secs(6)), "6");
        assert_eq!(secs(Duration::from_nanos(213_333_333)), "0.21333");
        assert_eq!(secs(Duration::ZERO), "0");
        let sc = ServerControl::recommended(1, Duration::from_millis(222));
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

    fn part(independent: bool) -> Part {
        Part {
            duration: Duration::from_millis(200),
            independent,
            data: Bytes::from_static(b"x"),
        }
    }

    /// `n` segments of 5 parts each, then 2 parts of an open one.
    fn window(n: usize) -> Window {
        let mut w = Window::new(20, 5);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for s in 0..n {
            for i in 0..5 {
                w.push_part(i == 0, part(i == 0), t0 + Duration::from_secs(s as u64));
            }
        }
        w.push_part(true, part(true), t0 + Duration::from_secs(n as u64));
        w.push_part(false, part(false), t0);
        w
    }

    fn view<'a>(
        w: &'a Window,
        skip: bool,
        ended: bool,
        seg: &'a dyn Fn(u64) -> String,
        part: &'a dyn Fn(u64, usize) -> String,
    ) -> LlView<'a> {
        LlView {
            target_duration: 1,
            part_target: Duration::from_millis(222),
            server_control: ServerControl::recommended(1, Duration::from_millis(222)),
            window: w,
            init_uri: "init-e.mp4",
            segment_uri: seg,
            part_uri: part,
            parts_per_segment: 5,
            next_starts_segment: None,
            discontinuity_sequence: 0,
            prelude: None,
            ended,
            skip,
            reports: vec![RenditionReport {
                uri: "../audio/index.m3u8".into(),
                last_msn: 10,
                last_part: Some(1),
            }],
        }
    }

    #[test]
    fn full_playlist_golden_structure() {
        let w = window(10);
        let seg = |m: u64| format!("seg-e-{m}.m4s");
        let prt = |m: u64, i: usize| format!("part-e-{m}.{i}.m4s");
        let text =
            String::from_utf8(render(&view(&w, false, false, &seg, &prt)).to_vec()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert_eq!(lines[1], "#EXT-X-VERSION:6");
        assert_eq!(lines[2], "#EXT-X-TARGETDURATION:1");
        assert!(lines[3].starts_with("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"));
        assert_eq!(lines[4], "#EXT-X-PART-INF:PART-TARGET=0.222");
        assert_eq!(lines[5], "#EXT-X-MEDIA-SEQUENCE:0");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-e.mp4\"\n"));
        // Parts only for the last 3 target durations: segments 8, 9 and the open 10.
        assert!(!text.contains("part-e-7."));
        assert!(text.contains("#EXT-X-PART:DURATION=0.2,URI=\"part-e-8.0.m4s\",INDEPENDENT=YES\n"));
        assert!(text.contains("#EXT-X-PART:DURATION=0.2,URI=\"part-e-8.1.m4s\"\n"));
        // Parts come before their segment's EXTINF.
        assert!(text.find("part-e-9.4.m4s") < text.find("seg-e-9.m4s"));
        assert!(text.contains("#EXTINF:1,\nseg-e-9.m4s\n"));
        // The open segment: PDT then its parts, no EXTINF.
        assert!(!text.contains("seg-e-10.m4s"));
        let open_pdt = text.rfind("#EXT-X-PROGRAM-DATE-TIME:").expect("pdt");
        assert!(open_pdt < text.find("part-e-10.0.m4s").expect("open part"));
        assert!(text.contains("2023-11-14T22:13:30.000Z"), "{text}");
        // Exactly one hint, for the next part; then the reports.
        assert_eq!(text.matches("#EXT-X-PRELOAD-HINT").count(), 1);
        assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-e-10.2.m4s\"\n"));
        assert!(text.trim_end().ends_with(
            "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=10,LAST-PART=1"
        ));
        assert!(!text.contains("ENDLIST"));
        // m3u8-rs still parses it as an ordinary media playlist (non-LL players ignore the
        // LL tags).
        let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
        assert_eq!(pl.segments.len(), 10);
    }

    #[test]
    fn delta_update_skips_old_segments_and_matches_the_full_playlist() {
        let w = window(12);
        let seg = |m: u64| format!("seg-e-{m}.m4s");
        let prt = |m: u64, i: usize| format!("part-e-{m}.{i}.m4s");
        let full =
            String::from_utf8(render(&view(&w, false, false, &seg, &prt)).to_vec()).expect("utf8");
        let delta =
            String::from_utf8(render(&view(&w, true, false, &seg, &prt)).to_vec()).expect("utf8");
        // 12 complete segments + 0.4 s open = 12.4 s; CAN-SKIP-UNTIL 6 s: segments ending
        // at or before 6.4 s are skipped: 0..=5 → 6.
        assert_eq!(skippable(&w, Duration::from_secs(6)), 6);
        assert!(delta.contains("#EXT-X-VERSION:9\n"));
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"));
        assert!(!delta.contains("seg-e-5.m4s") && delta.contains("seg-e-6.m4s"));
        // Everything after the skipped segments is identical to the full playlist.
        let tail = |t: &str| t[t.find("seg-e-6.m4s").expect("seg 6")..].to_string();
        assert_eq!(tail(&full), tail(&delta));
        // No skip once the stream ended.
        let ended =
            String::from_utf8(render(&view(&w, true, true, &seg, &prt)).to_vec()).expect("utf8");
        assert!(!ended.contains("EXT-X-SKIP"));
        assert!(!ended.contains("PRELOAD-HINT") && !ended.contains("RENDITION-REPORT"));
        assert!(ended.trim_end().ends_with("#EXT-X-ENDLIST"));
    }

    #[test]
    fn prelude_of_the_previous_broadcast_before_a_discontinuity() {
        // The previous broadcast (epoch "old") ended after segment 9; this one starts at 10.
        let mut old = Window::starting_at(6, 0, 8);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        old.push(Duration::from_secs(1), t0, true, Bytes::from_static(b"a"));
        old.push(
            Duration::from_secs(1),
            t0 + Duration::from_secs(1),
            true,
            Bytes::from_static(b"b"),
        );
        let old_segments: Vec<Segment> = old.segments().cloned().collect();
        let mut w = Window::starting_at(6, 0, 10);
        for i in 0..5 {
            w.push_part(i == 0, part(i == 0), t0 + Duration::from_secs(60));
        }
        w.push_part(true, part(true), t0 + Duration::from_secs(61));
        let seg = |n: u64| format!("seg-new-{n}.m4s");
        let prt = |n: u64, i: usize| format!("part-new-{n}.{i}.m4s");
        let old_seg = |n: u64| format!("seg-old-{n}.m4s");
        let mut v = view(&w, true, false, &seg, &prt);
        v.discontinuity_sequence = 3;
        v.init_uri = "init-new.mp4";
        v.prelude = Some(Prelude {
            segments: &old_segments,
            init_uri: "init-old.mp4",
            segment_uri: &old_seg,
        });
        let text = String::from_utf8(render(&v).to_vec()).expect("utf8");
        // The first listed segment is the previous broadcast's: its numbers head the list.
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:8\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
        // No delta update across the discontinuity, even when asked.
        assert!(!text.contains("EXT-X-SKIP") && text.contains("#EXT-X-VERSION:6\n"));
        let order: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("#EXT-X-MAP")
                    || l.starts_with("seg-")
                    || *l == "#EXT-X-DISCONTINUITY"
                    || l.starts_with("#EXT-X-PART:")
            })
            .collect();
        assert_eq!(
            order,
            [
                "#EXT-X-MAP:URI=\"init-old.mp4\"",
                "seg-old-8.m4s",
                "seg-old-9.m4s",
                "#EXT-X-DISCONTINUITY",
                "#EXT-X-MAP:URI=\"init-new.mp4\"",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.0.m4s\",INDEPENDENT=YES",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.1.m4s\"",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.2.m4s\"",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.3.m4s\"",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.4.m4s\"",
                "seg-new-10.m4s",
                "#EXT-X-PART:DURATION=0.2,URI=\"part-new-11.0.m4s\",INDEPENDENT=YES",
            ]
        );
        // An empty prelude is no prelude.
        v.prelude = Some(Prelude {
            segments: &[],
            init_uri: "init-old.mp4",
            segment_uri: &old_seg,
        });
        let text = String::from_utf8(render(&v).to_vec()).expect("utf8");
        assert!(!text.contains("DISCONTINUITY\n") && text.contains("#EXT-X-MEDIA-SEQUENCE:10\n"));
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3\n"));
    }

    #[test]
    fn hint_predicts_the_next_segment_after_a_full_one() {
        let mut w = Window::new(6, 0);
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(next_part(&w, 5, None), (0, 0));
        for i in 0..5 {
            w.push_part(i == 0, part(i == 0), t);
        }
        assert_eq!(next_part(&w, 5, None), (1, 0));
        w.push_part(true, part(true), t);
        assert_eq!(next_part(&w, 5, None), (1, 1));
        w.close();
        assert_eq!(next_part(&w, 5, None), (2, 0));
        // An announcement overrides the count either way.
        assert_eq!(next_part(&w, 5, Some(false)), (2, 0), "no open segment");
        w.push_part(true, part(true), SystemTime::UNIX_EPOCH);
        assert_eq!(next_part(&w, 5, None), (2, 1));
        assert_eq!(next_part(&w, 5, Some(true)), (3, 0));
        assert_eq!(next_part(&w, 1, Some(false)), (2, 1));
    }
}
