//! A small, independent parser of LL-HLS media playlists for the tests (m3u8-rs has no LL
//! tags). Deliberately separate from whipcast's writer, so a writer bug cannot hide behind
//! a shared parser.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq)]
pub struct LlPart {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub independent: bool,
    /// `GAP=YES` (HLS2 §4.4.4.9): the part is missing.
    pub gap: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlSegment {
    pub msn: u64,
    pub duration: f64,
    pub uri: String,
    pub pdt: Option<String>,
    /// Tagged `EXT-X-GAP` (HLS2 §4.4.4.7): the segment is missing.
    pub gap: bool,
    /// After an `EXT-X-DISCONTINUITY` (HLS2 §4.4.4.3).
    pub discontinuity: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub uri: String,
    pub last_msn: u64,
    pub last_part: Option<usize>,
}

#[derive(Debug, Clone, Default)]
pub struct LlPlaylist {
    pub version: u32,
    pub target_duration: u64,
    pub media_sequence: u64,
    pub server_control: HashMap<String, String>,
    pub part_target: f64,
    pub skipped: u64,
    pub map_uri: Option<String>,
    pub segments: Vec<LlSegment>,
    pub parts: Vec<LlPart>,
    pub hints: Vec<String>,
    pub reports: Vec<Report>,
    pub ended: bool,
    pub independent_segments: bool,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// Sequence number of the segment (or open segment) after an `EXT-X-DISCONTINUITY`.
    pub discontinuity_at: Option<u64>,
    /// Every `EXT-X-MAP` URI, in order.
    pub maps: Vec<String>,
}

/// `A=B,C="d,e"` attribute lists.
pub fn attrs(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some((k, v)) = rest.split_once('=') else {
            break;
        };
        let (value, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').unwrap();
            (q[..end].to_string(), q[end + 1..].trim_start_matches(','))
        } else {
            match v.split_once(',') {
                Some((a, b)) => (a.to_string(), b),
                None => (v.to_string(), ""),
            }
        };
        out.insert(k.to_string(), value);
        rest = tail;
    }
    out
}

impl LlPlaylist {
    pub fn parse(text: &str) -> LlPlaylist {
        assert!(text.starts_with("#EXTM3U\n"), "{text}");
        let mut p = LlPlaylist::default();
        let mut msn = None::<u64>;
        let mut pending_dur = None::<f64>;
        let mut pending_pdt = None::<String>;
        let mut pending_gap = false;
        let mut pending_discontinuity = false;
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("#EXT-X-VERSION:") {
                p.version = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                p.target_duration = v.parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = v.parse().unwrap();
                msn = Some(p.media_sequence);
            } else if let Some(v) = line.strip_prefix("#EXT-X-SERVER-CONTROL:") {
                p.server_control = attrs(v);
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART-INF:") {
                p.part_target = attrs(v)["PART-TARGET"].parse().unwrap();
            } else if let Some(v) = line.strip_prefix("#EXT-X-SKIP:") {
                p.skipped = attrs(v)["SKIPPED-SEGMENTS"].parse().unwrap();
                msn = Some(msn.unwrap() + p.skipped);
            } else if let Some(v) = line.strip_prefix("#EXT-X-MAP:") {
                p.map_uri = Some(attrs(v)["URI"].clone());
                p.maps.push(attrs(v)["URI"].clone());
            } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
                p.discontinuity_sequence = v.parse().unwrap();
            } else if line == "#EXT-X-DISCONTINUITY" {
                p.discontinuity_at = msn;
                pending_discontinuity = true;
            } else if line == "#EXT-X-GAP" {
                pending_gap = true;
            } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pending_pdt = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("#EXT-X-PART:") {
                let a = attrs(v);
                p.parts.push(LlPart {
                    msn: msn.unwrap(),
                    duration: a["DURATION"].parse().unwrap(),
                    uri: a["URI"].clone(),
                    independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
                    gap: a.get("GAP").is_some_and(|v| v == "YES"),
                });
            } else if let Some(v) = line.strip_prefix("#EXTINF:") {
                pending_dur = Some(
                    v.trim_end_matches(',')
                        .split(',')
                        .next()
                        .unwrap()
                        .parse()
                        .unwrap(),
                );
            } else if let Some(v) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                let a = attrs(v);
                assert_eq!(a["TYPE"], "PART");
                p.hints.push(a["URI"].clone());
            } else if let Some(v) = line.strip_prefix("#EXT-X-RENDITION-REPORT:") {
                let a = attrs(v);
                p.reports.push(Report {
                    uri: a["URI"].clone(),
                    last_msn: a["LAST-MSN"].parse().unwrap(),
                    last_part: a.get("LAST-PART").map(|v| v.parse().unwrap()),
                });
            } else if line == "#EXT-X-ENDLIST" {
                p.ended = true;
            } else if line == "#EXT-X-INDEPENDENT-SEGMENTS" {
                p.independent_segments = true;
            } else if !line.starts_with('#') && !line.is_empty() {
                let m = msn.unwrap();
                p.segments.push(LlSegment {
                    msn: m,
                    duration: pending_dur.take().expect("EXTINF before URI"),
                    uri: line.to_string(),
                    pdt: pending_pdt.take(),
                    gap: std::mem::take(&mut pending_gap),
                    discontinuity: std::mem::take(&mut pending_discontinuity),
                });
                msn = Some(m + 1);
            }
        }
        p
    }

    /// Sequence number and part index of the newest part listed.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        let last = self.parts.last()?;
        let idx = self.parts.iter().filter(|p| p.msn == last.msn).count() - 1;
        Some((last.msn, idx))
    }

    /// The last media sequence number: of the open segment if parts follow the last
    /// complete one, else of the last complete segment.
    pub fn last_msn(&self) -> u64 {
        let seg = self.segments.last().map(|s| s.msn);
        let part = self.parts.last().map(|p| p.msn);
        seg.max(part).unwrap_or(self.media_sequence)
    }
}
