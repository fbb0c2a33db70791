//! What a live media playlist lists, from one rendition's [`Window`]: the window (held back
//! at a given segment for MPEG-TS), the previous broadcast's segments before a
//! discontinuity, and with LL-HLS the parts of the last three target durations, the open
//! segment, the preload hint, the rendition reports and delta updates. The text is written
//! by [`super::media_playlist`]. Pure: takes a window, returns text.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;

use super::media_playlist::{ListType, LowLatency, MediaPlaylist, MediaSegment, OpenSegment, Run};
use super::settings::LlSettings;
use super::tags::{PartInf, PartTag, PreloadHint, RenditionReport};
use super::window::{Segment, Window};

/// Input for one live media playlist.
pub(super) struct LiveView<'a> {
    /// `EXT-X-TARGETDURATION`, fixed for the stream's life (HLS2 §6.2.1).
    pub(super) target_duration: u64,
    /// The rendition's segments (and parts).
    pub(super) window: &'a Window,
    /// URI of the init segment, relative to the playlist; `None` for MPEG-TS segments.
    pub(super) init_uri: Option<&'a str>,
    /// URI of segment `seq`, relative to the playlist.
    pub(super) segment_uri: &'a dyn Fn(u64) -> String,
    /// Earlier broadcasts of this name (`EXT-X-DISCONTINUITY-SEQUENCE`, HLS2 §4.4.3.3):
    /// a re-published stream continues the media sequence numbers.
    pub(super) discontinuity_sequence: u64,
    /// The previous broadcast's last segments, listed before an `EXT-X-DISCONTINUITY`.
    pub(super) prelude: Option<Prelude<'a>>,
    /// Publisher gone: `EXT-X-ENDLIST`.
    pub(super) ended: bool,
    /// List no segment after this one (`None`: all). The MPEG-TS playlists hold back a
    /// segment until the audio muxed into it is complete.
    pub(super) last_seq: Option<u64>,
    /// LL-HLS: parts, hint, reports, delta updates; `None` for a plain playlist.
    pub(super) ll: Option<LlView<'a>>,
}

/// The LL-HLS side of a [`LiveView`].
pub(super) struct LlView<'a> {
    /// Part target, parts per segment, server control.
    pub(super) settings: &'a LlSettings,
    /// URI of part `index` of segment `msn`.
    pub(super) part_uri: &'a dyn Fn(u64, usize) -> String,
    /// What the media layer announced about the next part (starts a segment or not);
    /// overrides the part count when known.
    pub(super) next_starts_segment: Option<bool>,
    /// A delta update was requested (`_HLS_skip=YES`).
    pub(super) skip: bool,
    /// Reports for every other rendition.
    pub(super) reports: &'a [RenditionReport],
}

/// The previous broadcast's last segments (a stream name re-published within the grace
/// period continues its playlists: HLS2 §4.4.3.3 `EXT-X-DISCONTINUITY-SEQUENCE`, §4.4.4.3
/// `EXT-X-DISCONTINUITY`), listed whole, with their own `EXT-X-MAP`, before the current
/// broadcast's segments; `EXT-X-MEDIA-SEQUENCE` and `EXT-X-DISCONTINUITY-SEQUENCE` are then
/// the previous broadcast's.
pub(super) struct Prelude<'a> {
    /// The segments still listed, oldest first (none: no prelude).
    pub(super) segments: &'a [Segment],
    /// The previous broadcast's init segment URI.
    pub(super) init_uri: &'a str,
    /// URI of its segment `msn`.
    pub(super) segment_uri: &'a dyn Fn(u64) -> String,
}

/// How many leading segments a delta update replaces with `EXT-X-SKIP`: those that end at
/// least `CAN-SKIP-UNTIL` before the end of the playlist (HLS2 §6.2.5.1).
pub(super) fn skippable(window: &Window, can_skip_until: Duration) -> u64 {
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

/// The URI the next part will have (HLS2 §6.2.6: the hint must equal the future
/// `EXT-X-PART` URI). The media layer's announcement wins (`next_starts_segment`: the
/// audio cutter decides one chunk ahead, a rung's one-part first segment is known);
/// otherwise segments hold `parts_per_segment` parts, the muxer's own cadence. A publisher
/// keyframe elsewhere abandons the hint (→ 404).
pub(super) fn next_part(
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

/// Renders a live media playlist: plain or LL-HLS, full or (LL-HLS) a delta update.
pub(super) fn render(view: &LiveView<'_>) -> Bytes {
    let w = view.window;
    let prelude = view.prelude.as_ref().filter(|p| !p.segments.is_empty());
    let ll = view.ll.as_ref();
    // No delta updates while the previous broadcast is listed: EXT-X-SKIP cannot skip
    // across the discontinuity's EXT-X-MAP (a full playlist is always allowed).
    let skipped = match ll {
        Some(ll) if ll.skip && !view.ended && prelude.is_none() => {
            skippable(w, ll.settings.server_control.can_skip_until)
        }
        _ => 0,
    };
    let (media_sequence, discontinuity_sequence) = match prelude {
        Some(p) => (
            p.segments[0].seq,
            view.discontinuity_sequence.saturating_sub(1),
        ),
        None => (w.media_sequence(), view.discontinuity_sequence),
    };
    let part_tags = |seg: &Segment| -> Vec<PartTag> {
        let Some(ll) = ll else {
            return Vec::new();
        };
        seg.parts
            .iter()
            .enumerate()
            .map(|(i, p)| PartTag {
                duration: p.duration,
                uri: (ll.part_uri)(seg.seq, i),
                independent: p.independent,
                gap: p.gap,
            })
            .collect()
    };
    // Parts are listed for the segments of the last 3 target durations (HLS2 §6.2.2).
    let total = w.total_duration();
    let part_horizon = Duration::from_secs(view.target_duration * 3);
    let mut start = Duration::ZERO;
    let mut segments = Vec::with_capacity(w.len());
    for (i, s) in w.segments().enumerate() {
        let seg_start = start;
        start += s.duration;
        if (i as u64) < skipped || view.last_seq.is_some_and(|last| s.seq > last) {
            continue;
        }
        let parts = if total.saturating_sub(seg_start) <= part_horizon {
            part_tags(s)
        } else {
            Vec::new()
        };
        segments.push(MediaSegment {
            wallclock: s.wallclock,
            gap: s.gap,
            parts,
            duration: s.duration,
            uri: Cow::Owned((view.segment_uri)(s.seq)),
        });
    }
    let previous = prelude.map(|p| Run {
        init_uri: Some(p.init_uri),
        segments: p
            .segments
            .iter()
            .map(|s| MediaSegment {
                wallclock: s.wallclock,
                gap: s.gap,
                parts: Vec::new(),
                duration: s.duration,
                uri: Cow::Owned((p.segment_uri)(s.seq)),
            })
            .collect(),
    });
    let open = ll.and(w.open()).map(|o| OpenSegment {
        wallclock: o.wallclock,
        parts: part_tags(o),
    });
    // Once ended nothing will be added: no hint, no reports (they steer reloads).
    let (hint, reports) = match ll {
        Some(ll) if !view.ended => {
            let (msn, idx) = next_part(w, ll.settings.parts_per_segment, ll.next_starts_segment);
            (
                Some(PreloadHint {
                    uri: (ll.part_uri)(msn, idx),
                }),
                ll.reports,
            )
        }
        _ => (None, &[][..]),
    };
    MediaPlaylist {
        target_duration: view.target_duration,
        media_sequence,
        discontinuity_sequence,
        list_type: ListType::Live,
        low_latency: ll.map(|ll| LowLatency {
            server_control: ll.settings.server_control,
            part_inf: PartInf {
                part_target: ll.settings.part_target,
            },
            start_offset: ll.settings.start_offset,
        }),
        skipped,
        previous,
        current: Run {
            init_uri: view.init_uri,
            segments,
        },
        open,
        hint,
        reports,
        ended: view.ended,
    }
    .write()
}

#[cfg(test)]
#[path = "live_tests.rs"]
mod tests;
