//! What one broadcast tells its readers (the origin's handlers): whether a blocking
//! playlist request can be answered (HLS2 §6.2.5.2), the part the preload hint names, and
//! the init segments, parts and media segments of this broadcast or the carried previous
//! one, with how long a segment stays downloadable. Reads only, no clock, no I/O.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::live;
use super::settings::LlSettings;
use super::stream::StreamState;
use super::window::{Segment, Spill, Window};
use crate::config::HlsConfig;

/// Where a media segment's bytes are, for the HTTP side.
#[derive(Debug, Clone)]
pub enum SegmentBody {
    /// In memory.
    Memory(Bytes),
    /// Spilled to this file (DVR overflow); read it off the runtime's worker threads.
    File(Arc<PathBuf>),
}

/// Where a complete segment's bytes are.
pub(super) fn segment_body(seg: &Segment) -> SegmentBody {
    match &seg.spill {
        Spill::Disk(path) => SegmentBody::File(Arc::clone(path)),
        Spill::Memory | Spill::Pending => SegmentBody::Memory(seg.data.clone()),
    }
}

/// The answer to "can this (blocking) request be served now?".
#[derive(Debug)]
pub enum Readiness {
    /// Serve it.
    Ready,
    /// Not yet: wait for a change on this receiver, then ask again.
    Wait(watch::Receiver<u64>),
    /// Asks for something too far in the future (HLS2 §6.2.5.2: 400).
    TooFar,
    /// No such stream or rendition.
    NotFound,
}

impl StreamState {
    /// Whether a playlist request for segment `msn` (and part `part`) can be answered now
    /// (HLS2 §6.2.5.2). After ENDLIST the parameters are ignored.
    pub(super) fn readiness(
        &self,
        ll: Option<&LlSettings>,
        rendition: &str,
        msn: u64,
        part: Option<usize>,
    ) -> Readiness {
        let Some(r) = self.renditions.get(rendition) else {
            return Readiness::NotFound;
        };
        if self.ended_at.is_some() || (self.master.is_some() && r.window.reached(msn, part)) {
            return Readiness::Ready;
        }
        if let Some(pos) = r.window.position() {
            if msn > pos.msn + 2 {
                return Readiness::TooFar;
            }
            if let (Some(ll), Some(want)) = (ll, part) {
                let per = ll.parts_per_segment as u64;
                let have = pos.msn * per + pos.part.map_or(0, |p| p as u64 + 1);
                let asked = msn * per + want as u64;
                if asked > have + ll.advance_part_limit() {
                    return Readiness::TooFar;
                }
            }
        }
        Readiness::Wait(r.changed.subscribe())
    }

    /// A part of the given epoch.
    pub(super) fn part(
        &self,
        rendition: &str,
        epoch: &str,
        msn: u64,
        index: usize,
    ) -> Option<Bytes> {
        let r = self.renditions.get(rendition)?;
        let part = if self.epoch == epoch {
            r.window.part(msn, index)?
        } else {
            r.carried.as_ref()?.get(epoch, msn)?.parts.get(index)?
        };
        Some(part.data.clone())
    }

    /// The part the preload hint names (LL-HLS only).
    pub(super) fn next_part(&self, ll: &LlSettings, rendition: &str) -> Option<(u64, usize)> {
        if self.ended_at.is_some() {
            return None;
        }
        let r = self.renditions.get(rendition)?;
        Some(live::next_part(
            &r.window,
            ll.parts_per_segment,
            r.next_starts,
        ))
    }

    /// An init segment of the given epoch.
    pub(super) fn init_segment(&self, rendition: &str, epoch: &str) -> Option<Bytes> {
        let r = self.renditions.get(rendition)?;
        if self.epoch == epoch {
            return Some(r.init.clone());
        }
        r.carried
            .as_ref()
            .filter(|c| c.epoch == epoch)
            .map(|c| c.init.clone())
    }

    /// A media segment of the given epoch, listed or retired, with how long it will stay
    /// downloadable (for `Expires`, HLS2 §6.2.2) while the stream is live.
    pub(super) fn media_segment(
        &self,
        cfg: &HlsConfig,
        rendition: &str,
        epoch: &str,
        seq: u64,
    ) -> Option<(SegmentBody, Option<Duration>)> {
        let r = self.renditions.get(rendition)?;
        if self.epoch != epoch {
            // The previous broadcast's, while carried (in memory, final: no expiry known).
            let seg = r.carried.as_ref()?.get(epoch, seq)?;
            return Some((SegmentBody::Memory(seg.data.clone()), None));
        }
        let seg = r.window.get(seq)?;
        Some((segment_body(seg), self.segment_ttl(cfg, &r.window, seq)))
    }

    /// How long segment `seq` of `window` stays downloadable, while the stream is live
    /// (`Expires`, HLS2 §6.2.2): it is dropped once `window + retain` newer segments exist.
    pub(super) fn segment_ttl(
        &self,
        cfg: &HlsConfig,
        window: &Window,
        seq: u64,
    ) -> Option<Duration> {
        let keep = (cfg.listed_segments() + cfg.retain_segments) as u64 + 1;
        let left = (seq + keep).saturating_sub(window.next_seq());
        self.ended_at
            .is_none()
            .then(|| cfg.segment_duration * left as u32)
    }
}
