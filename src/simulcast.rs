//! Simulcast layers (RFC 8853) as ladder rungs: when enough of a publisher's layers has
//! been seen to plan, which layer is the top one, and what rendition each becomes. Pure:
//! every call takes `now`.
//!
//! A simulcast publisher encodes the ladder itself: a browser sends up to three layers of
//! one picture (`scaleResolutionDownBy` 1, 2, 4), OBS's WHIP simulcast up to four. With
//! H.264, each layer is remuxed as a rendition of its own, with no transcoding, and the
//! ladder's rungs no layer covers ([`uncovered`]) are transcoded from the top layer. VP8 and
//! VP9 cannot be served to HLS players as they are: only the top layer is decoded and
//! transcoded, as for a publisher without simulcast.
//!
//! Layers do not start together: a browser's bandwidth estimate starts low and turns the
//! upper layers on as it grows (Chromium on loopback: see BENCHMARKS.md), and the
//! rendition set cannot change once the multivariant playlist is served. So the broadcast
//! waits until every offered layer has sent a sequence parameter set (its size), or for
//! [`LAYER_WAIT`] after the first layer appeared; a layer still missing then is left out
//! and named in `/api/streams`.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::media::Rung;

/// The longest a broadcast waits for the offered layers after the first one appeared.
pub const LAYER_WAIT: Duration = Duration::from_secs(6);

/// Without a size to compare (VP8, VP9), how long after the last offered layer appeared
/// their bytes are counted to tell the top one.
const BYTES_WINDOW: Duration = Duration::from_secs(1);

/// What has been seen of one offered layer.
#[derive(Debug, Clone)]
struct Seen {
    rid: String,
    /// When its first packet came.
    since: Option<Instant>,
    /// The size its last SPS declared (H.264).
    size: Option<(u32, u32)>,
    bytes: u64,
}

/// One layer of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedLayer {
    /// Its `rid`.
    pub rid: String,
    /// The rendition it becomes.
    pub rendition: String,
    /// Its size, when known (H.264).
    pub width: Option<u32>,
    /// Its height, when known.
    pub height: Option<u32>,
}

/// What the broadcast does with the layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The layers used, the top one first, then by height (H.264); for VP8/VP9 only the top
    /// one.
    pub layers: Vec<PlannedLayer>,
    /// Offered layers not used: not seen (or without a size) when the plan was made, or
    /// dropped because their codec is decoded from the top layer only.
    pub left_out: Vec<String>,
    /// The ladder's rungs no layer covers, transcoded from the top layer ([`uncovered`]).
    pub transcoded: Vec<String>,
    /// The renditions whose segment boundaries could not always be aligned, since the
    /// broadcast began (empty while all is well).
    pub alignment: Vec<Alignment>,
}

/// How one simulcast rendition kept to the common segment boundaries (media/align.rs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alignment {
    /// The rendition.
    pub rendition: String,
    /// Segments it cut at a keyframe no other rendition had (its keyframes matched none
    /// several times in a row): its segment N may start elsewhere than the others'.
    pub cut_alone: u64,
    /// Times it showed no frames while the others waited at a boundary, which was then
    /// cut without it (a paused layer; a publisher that stopped sending it).
    pub absent: u64,
}

/// How far a layer's height may be from a rung's for the layer to stand for that rung: a
/// rung of 480 lines is covered by a 540-line layer (12.5 %), not by a 360-line one (25 %),
/// and Apple's 234-line rung not by a browser's 180-line layer (23 %).
const COVER_TOLERANCE_PERCENT: u32 = 15;

/// The rungs of `rungs` (highest first) to transcode from the top layer of `plan`: those not
/// above the top layer (scaling up adds no picture) that no layer covers (a layer within
/// [`COVER_TOLERANCE_PERCENT`] of its height). A rung whose name a layer's rendition
/// already has is left out too (a custom ladder's "360p" may be 400 lines high).
pub fn uncovered(rungs: &[Rung], plan: &Plan) -> Vec<Rung> {
    let heights: Vec<u32> = plan.layers.iter().filter_map(|l| l.height).collect();
    let Some(top) = heights.iter().copied().max() else {
        return Vec::new();
    };
    let covered = |h: u32| {
        heights
            .iter()
            .any(|&l| l.abs_diff(h) * 100 <= h * COVER_TOLERANCE_PERCENT)
    };
    let named = |n: &str| plan.layers.iter().any(|l| l.rendition == n);
    let mut out: Vec<Rung> = rungs
        .iter()
        .filter(|r| r.height <= top && !covered(r.height) && !named(&r.name))
        .cloned()
        .collect();
    out.sort_by_key(|r| std::cmp::Reverse(r.height));
    out
}

/// The layers of one broadcast until they are planned.
#[derive(Debug)]
pub struct Layers {
    seen: Vec<Seen>,
    /// Renditions from layers are named by their size: H.264 only.
    by_size: bool,
    first: Option<Instant>,
}

impl Layers {
    /// The layers `offered` (their `rid`s, offer order); `by_size` for H.264.
    pub fn new(offered: &[String], by_size: bool) -> Self {
        Self {
            seen: offered
                .iter()
                .map(|rid| Seen {
                    rid: rid.clone(),
                    since: None,
                    size: None,
                    bytes: 0,
                })
                .collect(),
            by_size,
            first: None,
        }
    }

    /// Whether `rid` is one of the offered layers.
    pub fn offered(&self, rid: &str) -> bool {
        self.seen.iter().any(|s| s.rid == rid)
    }

    /// A packet of layer `rid`: its payload size, and the picture size if it carries an SPS.
    pub fn on_packet(&mut self, rid: &str, bytes: usize, size: Option<(u32, u32)>, now: Instant) {
        let Some(s) = self.seen.iter_mut().find(|s| s.rid == rid) else {
            return;
        };
        s.since.get_or_insert(now);
        self.first.get_or_insert(now);
        s.bytes += bytes as u64;
        if size.is_some() {
            s.size = size;
        }
    }

    /// When the plan is due at the latest (`None` before any layer appeared).
    pub fn deadline(&self) -> Option<Instant> {
        self.first.map(|f| f + LAYER_WAIT)
    }

    /// Whether enough is known to plan at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        let Some(deadline) = self.deadline() else {
            return false;
        };
        if self.by_size {
            let all = self.seen.iter().all(|s| s.size.is_some());
            return all || (now >= deadline && self.seen.iter().any(|s| s.size.is_some()));
        }
        let last = self
            .seen
            .iter()
            .map(|s| s.since)
            .collect::<Option<Vec<_>>>();
        match last.and_then(|v| v.into_iter().max()) {
            Some(last) => now >= last + BYTES_WINDOW || now >= deadline,
            None => now >= deadline,
        }
    }

    /// The plan: for H.264 every layer with a size, tallest first, each named
    /// `{height}p` (`{height}p_{rid}` when two share a height); for VP8/VP9 the layer that
    /// sent the most bytes. `None` when no layer qualifies.
    pub fn plan(&self) -> Option<Plan> {
        let mut used: Vec<&Seen> = if self.by_size {
            let mut v: Vec<&Seen> = self.seen.iter().filter(|s| s.size.is_some()).collect();
            // Tallest first; equal heights by bytes sent (the better-quality one on top).
            v.sort_by_key(|s| {
                let (w, h) = s.size.unwrap_or_default();
                std::cmp::Reverse((h, w, s.bytes))
            });
            v
        } else {
            self.seen
                .iter()
                .filter(|s| s.bytes > 0)
                .max_by_key(|s| s.bytes)
                .into_iter()
                .collect()
        };
        used.dedup_by(|a, b| a.rid == b.rid);
        if used.is_empty() {
            return None;
        }
        let height_count = |h: Option<u32>| {
            used.iter()
                .filter(|s| s.size.map(|(_, sh)| sh) == h)
                .count()
        };
        let layers = used
            .iter()
            .map(|s| {
                let height = s.size.map(|(_, h)| h);
                let rendition = match height {
                    Some(h) if height_count(height) == 1 => format!("{h}p"),
                    Some(h) => format!("{h}p_{}", s.rid),
                    None => format!("layer_{}", s.rid),
                };
                PlannedLayer {
                    rid: s.rid.clone(),
                    rendition,
                    width: s.size.map(|(w, _)| w),
                    height,
                }
            })
            .collect();
        let left_out = self
            .seen
            .iter()
            .filter(|s| !used.iter().any(|u| u.rid == s.rid))
            .map(|s| s.rid.clone())
            .collect();
        Some(Plan {
            layers,
            left_out,
            transcoded: Vec::new(),
            alignment: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rids(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn h264_waits_for_every_size_then_plans_tallest_first() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["h", "m", "l"]), true);
        assert!(!l.ready(t0));
        l.on_packet("l", 900, Some((320, 180)), t0);
        l.on_packet("m", 900, None, t0);
        assert!(!l.ready(t0 + Duration::from_secs(1)));
        l.on_packet("m", 900, Some((640, 360)), t0 + Duration::from_secs(1));
        l.on_packet("h", 900, Some((1280, 720)), t0 + Duration::from_secs(2));
        assert!(l.ready(t0 + Duration::from_secs(2)));
        let plan = l.plan().expect("plan");
        let names: Vec<_> = plan
            .layers
            .iter()
            .map(|p| (p.rid.as_str(), p.rendition.as_str()))
            .collect();
        assert_eq!(names, [("h", "720p"), ("m", "360p"), ("l", "180p")]);
        assert!(plan.left_out.is_empty());
    }

    #[test]
    fn a_layer_that_never_comes_is_left_out_at_the_deadline() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["f", "h", "q"]), true);
        l.on_packet("q", 100, Some((320, 180)), t0);
        l.on_packet("h", 100, Some((640, 360)), t0);
        assert!(!l.ready(t0 + LAYER_WAIT - Duration::from_millis(1)));
        assert!(l.ready(t0 + LAYER_WAIT));
        let plan = l.plan().expect("plan");
        assert_eq!(plan.layers[0].rendition, "360p");
        assert_eq!(plan.left_out, ["f"]);
        // Not even one size by the deadline: nothing to plan yet.
        let mut none = Layers::new(&rids(&["a", "b"]), true);
        none.on_packet("a", 100, None, t0);
        assert!(!none.ready(t0 + LAYER_WAIT * 2));
        assert_eq!(none.plan(), None);
    }

    #[test]
    fn equal_heights_get_the_rid_in_their_names_and_unknown_rids_are_ignored() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["a", "b"]), true);
        l.on_packet("a", 100, Some((640, 360)), t0);
        l.on_packet("b", 900, Some((640, 360)), t0);
        l.on_packet("zz", 900, Some((1920, 1080)), t0);
        assert!(!l.offered("zz"));
        let plan = l.plan().expect("plan");
        let names: Vec<_> = plan.layers.iter().map(|p| p.rendition.as_str()).collect();
        assert_eq!(names, ["360p_b", "360p_a"]);
    }

    fn rung(name: &str, height: u32) -> Rung {
        Rung {
            name: name.into(),
            height,
            bitrate_kbps: 500,
        }
    }

    fn plan_of(layers: &[(&str, Option<u32>)]) -> Plan {
        Plan {
            layers: layers
                .iter()
                .map(|(rendition, height)| PlannedLayer {
                    rid: rendition.to_string(),
                    rendition: rendition.to_string(),
                    width: height.map(|h| h * 16 / 9),
                    height: *height,
                })
                .collect(),
            left_out: Vec::new(),
            transcoded: Vec::new(),
            alignment: Vec::new(),
        }
    }

    #[test]
    fn rungs_no_layer_covers_are_transcoded_none_above_the_top_layer() {
        let ladder = [
            rung("1080p", 1080),
            rung("720p", 720),
            rung("480p", 480),
            rung("360p", 360),
            rung("234p", 234),
        ];
        // A browser's three layers: 720p and 360p are covered, 1080p is above the top.
        let browser = plan_of(&[
            ("720p", Some(720)),
            ("360p", Some(360)),
            ("180p", Some(180)),
        ]);
        let names = |v: Vec<Rung>| v.into_iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(uncovered(&ladder, &browser)), ["480p", "234p"]);
        // Four layers, one of them 540 lines: it stands for the 480-line rung.
        let obs = plan_of(&[
            ("1080p", Some(1080)),
            ("720p", Some(720)),
            ("540p", Some(540)),
            ("360p", Some(360)),
        ]);
        assert_eq!(names(uncovered(&ladder, &obs)), ["234p"]);
        // Only the top layer came: every rung up to its height.
        let one = plan_of(&[("720p", Some(720))]);
        assert_eq!(names(uncovered(&ladder, &one)), ["480p", "360p", "234p"]);
        // A rung named like a layer's rendition is not made twice.
        let odd = [rung("360p", 480), rung("260p", 260)];
        assert_eq!(names(uncovered(&odd, &browser)), ["260p"]);
        // No sizes known (VP8): nothing.
        assert!(uncovered(&ladder, &plan_of(&[("layer_h", None)])).is_empty());
    }

    #[test]
    fn vp8_takes_the_layer_with_the_most_bytes() {
        let t0 = Instant::now();
        let mut l = Layers::new(&rids(&["h", "l"]), false);
        l.on_packet("l", 300, None, t0);
        assert!(!l.ready(t0 + Duration::from_secs(2)));
        l.on_packet("h", 1200, None, t0 + Duration::from_secs(2));
        assert!(!l.ready(t0 + Duration::from_secs(2)));
        assert!(l.ready(t0 + Duration::from_secs(3)));
        let plan = l.plan().expect("plan");
        assert_eq!(plan.layers.len(), 1);
        assert_eq!(plan.layers[0].rid, "h");
        assert_eq!(plan.left_out, ["l"]);
    }
}
