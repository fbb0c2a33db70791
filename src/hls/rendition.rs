//! One rendition of a broadcast: its window, init segment, cached playlists, bitrate and
//! the wake-up channel of requests parked on it; and the previous broadcast's segments it
//! still lists after a re-publish. Plain data, no clock, no I/O.

use bytes::Bytes;
use tokio::sync::watch;

use super::bitrate::Bitrate;
use super::doc::Doc;
use super::window::{Segment, Spill, Window};
use crate::media::{RenditionInfo, RenditionKind};

/// One rendition of a broadcast.
pub(super) struct RenditionState {
    /// The previous broadcast's segments, shown before this one's.
    pub(super) carried: Option<Carried>,
    pub(super) info: RenditionInfo,
    pub(super) init: Bytes,
    pub(super) window: Window,
    /// Rendered full and delta playlists, with the stream version they were rendered at.
    /// Full, delta (`_HLS_skip`), MPEG-TS.
    pub(super) cache: [Option<(u64, Doc)>; 3],
    pub(super) bitrate: Bitrate,
    /// What the media layer said about the chunk after the last one (preload hint).
    pub(super) next_starts: Option<bool>,
    /// Wakes requests parked on this rendition (blocking reload, preload hints).
    pub(super) changed: watch::Sender<u64>,
}

impl RenditionState {
    pub(super) fn is_audio(&self) -> bool {
        matches!(self.info.kind, RenditionKind::Audio { .. })
    }

    /// Accounts a segment that just completed (its bitrate feeds BANDWIDTH).
    pub(super) fn note_segment(&mut self, seq: u64, td: u64) {
        if let Some(seg) = self.window.get(seq) {
            self.bitrate.segment(seg.data.len() as u64, seg.duration);
            if seg.duration.as_secs_f64().round() as u64 > td {
                tracing::warn!(
                    rendition = %self.info.name,
                    duration_ms = seg.duration.as_millis() as u64,
                    target = td,
                    "segment longer than the target duration (late keyframe?)"
                );
            }
        }
    }

    pub(super) fn wake(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The previous broadcast's last listed segments of one rendition: a stream name
/// re-published within the grace period lists them before an `EXT-X-DISCONTINUITY`, until
/// the new broadcast fills the window, and keeps them downloadable under their own epoch.
pub(super) struct Carried {
    pub(super) epoch: String,
    pub(super) init: Bytes,
    pub(super) segments: Vec<Segment>,
}

impl Carried {
    /// What `r` of an ended broadcast with `epoch` leaves to the next one: its listed
    /// segments still in memory (spilled files go with their broadcast's directory).
    pub(super) fn from_rendition(epoch: &str, r: &RenditionState) -> Option<Carried> {
        let all: Vec<&Segment> = r.window.segments().collect();
        let start = all
            .iter()
            .rposition(|s| s.spill != Spill::Memory)
            .map_or(0, |i| i + 1);
        let segments: Vec<Segment> = all[start..].iter().map(|s| (*s).clone()).collect();
        (!segments.is_empty() && !r.init.is_empty()).then(|| Carried {
            epoch: epoch.to_string(),
            init: r.init.clone(),
            segments,
        })
    }

    pub(super) fn get(&self, epoch: &str, seq: u64) -> Option<&Segment> {
        (self.epoch == epoch)
            .then(|| self.segments.iter().find(|s| s.seq == seq))
            .flatten()
    }
}
