//! One broadcast's HLS state as plain data: its renditions, the numbering it continues,
//! the previous broadcast's segments it still lists, and how it changes — a new broadcast,
//! an init segment, a published part or segment, the end.
//!
//! Every method takes `&mut self` or `&self` and the time as an argument ([`At`]): no
//! clock, no lock and no I/O in here. The store ([`super::store`]) keeps each stream behind
//! that stream's own lock. The rest of a stream's behaviour works on the same state, each
//! in its own file: its renditions ([`super::rendition`]), what it serves
//! ([`super::serve`]), its playlists ([`super::render`]), its memory budget
//! ([`super::budget`]), its MPEG-TS sources ([`super::remux`]) and its API view
//! ([`super::summary`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::watch;

use super::bitrate::Bitrate;
use super::doc::Doc;
use super::media_playlist::target_duration;
use super::rendition::{Carried, RenditionState};
use super::settings::LlSettings;
use super::spill::Spiller;
use super::summary::IngestSummary;
use super::window::{Part, Window};
use crate::config::HlsConfig;
use crate::keyframes::KeyframeStats;
use crate::media::RenditionInfo;
use crate::metrics::Metrics;
use crate::simulcast::Plan as SimulcastPlan;

/// A moment, as both clocks read it: `instant` for durations, `wall` for what players see
/// (`Last-Modified`, the API's start time). The callers read the clocks (the broadcast
/// task and the ingest registry, through `broadcast::now`); nothing in `hls` does.
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time.
    pub wall: SystemTime,
}

/// What every stream of a store shares: the settings, the spill writer, the counters.
pub(super) struct Shared {
    pub(super) cfg: HlsConfig,
    pub(super) ll: Option<LlSettings>,
    /// The DVR overflow writer (`hls.dvr_overflow = "disk"`).
    pub(super) spill: Option<Spiller>,
    /// Process-wide counters (`/metrics`).
    pub(super) metrics: Metrics,
}

/// Where the next broadcast of a stream name continues.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Continuity {
    /// First media sequence number of the next broadcast.
    pub next_seq: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` of the next broadcast.
    pub discontinuity_seq: u64,
}

impl Continuity {
    /// Where a broadcast continues another node's, from what that node last reported:
    /// its next media sequence number and its discontinuity sequence, `age` ago. The other
    /// node may have published segments since (it reports every few seconds, and may have
    /// died right before its next report); it cannot have published more than one per
    /// `segment_duration` of wall clock plus the one it was cutting (segments are cut on
    /// the wall clock, even through a stall), so the new broadcast starts above all of
    /// them: a player never sees a sequence number twice (HLS2 §6.2.1), and sees one
    /// discontinuity (§4.4.3.3: the sequence counts the discontinuities before the window).
    pub fn resumed(
        next_seq: u64,
        discontinuity_seq: u64,
        age: std::time::Duration,
        segment_duration: std::time::Duration,
    ) -> Continuity {
        let segment_ms = segment_duration.as_millis().max(1);
        let since = u64::try_from(age.as_millis().div_ceil(segment_ms)).unwrap_or(u64::MAX);
        Continuity {
            next_seq: next_seq.saturating_add(since).saturating_add(1),
            discontinuity_seq: discontinuity_seq.saturating_add(1),
        }
    }

    /// The later of two: each number the higher (a broadcast must come after both).
    pub fn later(self, other: Continuity) -> Continuity {
        Continuity {
            next_seq: self.next_seq.max(other.next_seq),
            discontinuity_seq: self.discontinuity_seq.max(other.discontinuity_seq),
        }
    }
}

/// One fragment or part as the muxer produced it.
#[derive(Debug)]
pub struct Chunk {
    /// Starts a new segment (cmafmux fragment start; a keyframe for video).
    pub starts_segment: bool,
    /// Whether the next chunk will start a segment, if known (the preload hint).
    pub next_starts_segment: Option<bool>,
    /// With `starts_segment`: the number of that segment counted from the broadcast's
    /// first, when the media layer knows it (a simulcast rendition: the boundary's, which
    /// every rendition shares, media/align.rs); `None`: the next number.
    pub segment: Option<u64>,
    /// Duration.
    pub duration: Duration,
    /// Wall-clock time of its first sample.
    pub wallclock: SystemTime,
    /// Part of a gap (HLS2 §4.4.4.7, §4.4.4.9): the publisher's media is missing here and
    /// the bytes are what the media layer filled in (repeated frames, silence).
    pub gap: bool,
    /// Server lag of this chunk (video), for the lag percentiles.
    pub lag: Option<Duration>,
    /// The bytes.
    pub data: Bytes,
}

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StoreError {
    /// No broadcast of that name is live in the store.
    #[error("stream {0} is not live")]
    NotLive(String),
    /// A fragment arrived for a rendition without init segment.
    #[error("rendition {0} has no init segment")]
    NoInit(String),
}

/// Lag samples kept per stream for the percentiles.
pub(super) const LAG_SAMPLES: usize = 1024;

/// One broadcast of a stream name.
pub(super) struct StreamState {
    pub(super) epoch: String,
    pub(super) started_at: Instant,
    pub(super) ended_at: Option<Instant>,
    pub(super) target_duration: u64,
    pub(super) ingest: IngestSummary,
    pub(super) renditions: BTreeMap<String, RenditionState>,
    /// Every rendition the broadcast will have, once the media layer planned its ladder.
    /// The multivariant playlist waits for all of them (see `render_master`).
    pub(super) expected: Option<Vec<String>>,
    pub(super) master: Option<Doc>,
    /// The multivariant playlist of the MPEG-TS variants, rendered on request (few players
    /// ask for it) and kept with the `version` it was rendered at.
    pub(super) ts_master: Option<(u64, Doc)>,
    /// When anything of the stream last changed (`Last-Modified` of its playlists).
    pub(super) changed_at: SystemTime,
    /// Bumped on every change of any rendition: cached playlists carry rendition reports
    /// of the others, so any change invalidates them.
    pub(super) version: u64,
    /// Recent server lags (ring buffer): when published, and the lag in microseconds.
    pub(super) lags: VecDeque<(Instant, u32)>,
    /// When the first complete playable state (master playlist) existed.
    pub(super) first_playable: Option<Instant>,
    /// The publisher's keyframes (H.264).
    pub(super) keyframes: Option<KeyframeStats>,
    /// The publisher's simulcast layers, as planned.
    pub(super) simulcast: Option<SimulcastPlan>,
    /// First media sequence number of this broadcast (continues the previous one's).
    pub(super) first_seq: u64,
    /// Broadcasts of this name before this one (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub(super) discontinuity_seq: u64,
    /// Segments dropped to stay within the memory budget.
    pub(super) trimmed_segments: u64,
    /// Segments moved to disk to stay within the memory budget.
    pub(super) spilled_segments: u64,
    /// The previous broadcast's segments per rendition, until that rendition's init arrives.
    pub(super) carried: BTreeMap<String, Carried>,
}

impl StreamState {
    /// A new broadcast with `epoch`, continuing `cont` and listing what `previous` (the
    /// ended broadcast of the same name, if still held) leaves behind.
    pub(super) fn new(
        epoch: String,
        ingest: IngestSummary,
        cont: Continuity,
        previous: Option<&StreamState>,
        cfg: &HlsConfig,
        at: At,
    ) -> StreamState {
        let carried = previous
            .map(|old| {
                old.renditions
                    .iter()
                    .filter_map(|(name, r)| {
                        Carried::from_rendition(&old.epoch, r).map(|c| (name.clone(), c))
                    })
                    .collect()
            })
            .unwrap_or_default();
        StreamState {
            first_seq: cont.next_seq,
            discontinuity_seq: cont.discontinuity_seq,
            epoch,
            started_at: at.instant,
            ended_at: None,
            target_duration: target_duration(cfg.segment_duration),
            ingest,
            renditions: BTreeMap::new(),
            expected: None,
            master: None,
            ts_master: None,
            changed_at: at.wall,
            version: 0,
            lags: VecDeque::with_capacity(LAG_SAMPLES),
            first_playable: None,
            keyframes: None,
            simulcast: None,
            trimmed_segments: 0,
            spilled_segments: 0,
            carried,
        }
    }

    /// Where a following broadcast of this name continues.
    pub(super) fn continuity(&self) -> Continuity {
        let next_seq = self
            .renditions
            .values()
            .map(|r| r.window.next_seq())
            .max()
            .unwrap_or(self.first_seq);
        Continuity {
            next_seq,
            discontinuity_seq: self.discontinuity_seq + 1,
        }
    }

    /// Whether the broadcast is live (not ended).
    pub(super) fn is_live(&self) -> bool {
        self.ended_at.is_none()
    }

    /// Wakes every request parked on any rendition.
    pub(super) fn wake_all(&self) {
        for r in self.renditions.values() {
            r.wake();
        }
    }

    /// Records the renditions the broadcast will have; set once (the rendition set of a
    /// served multivariant playlist never changes during a broadcast).
    pub(super) fn expect(&mut self, renditions: Vec<String>) {
        if self.expected.is_none() {
            self.expected = Some(renditions);
        }
    }

    /// Records a rendition's init segment.
    pub(super) fn init(&mut self, cfg: &HlsConfig, info: RenditionInfo, data: Bytes, at: At) {
        let name = info.name.clone();
        let first_seq = self.first_seq;
        let carried = self.carried.remove(&name);
        let r = self
            .renditions
            .entry(name)
            .or_insert_with(|| RenditionState {
                carried,
                info: info.clone(),
                init: Bytes::new(),
                window: Window::starting_at(cfg.listed_segments(), cfg.retain_segments, first_seq),
                cache: [None, None, None],
                bitrate: Bitrate::default(),
                next_starts: None,
                changed: watch::Sender::new(0),
            });
        r.info = info;
        r.init = data;
        self.version += 1;
        self.changed_at = at.wall;
    }

    /// Publishes what the muxer produced: a part (LL-HLS) or a whole segment. Returns the
    /// segment's sequence number.
    pub(super) fn publish(
        &mut self,
        shared: &Shared,
        stream: &str,
        rendition: &str,
        chunk: Chunk,
        at: At,
    ) -> Result<u64, StoreError> {
        let td = self.target_duration;
        let first_seq = self.first_seq;
        let cfg = &shared.cfg;
        let r = self
            .renditions
            .get_mut(rendition)
            .ok_or_else(|| StoreError::NoInit(rendition.to_string()))?;
        r.bitrate.add(chunk.data.len() as u64, chunk.duration);
        r.next_starts = chunk.next_starts_segment;
        // A late simulcast rendition's first segment takes its boundary's number; not
        // while the previous broadcast's segments are listed before it (the numbers would
        // leave a hole in the playlist).
        if chunk.starts_segment
            && r.carried.is_none()
            && let Some(n) = chunk.segment
        {
            r.window.skip_to(first_seq + n);
        }
        let chunk_lag = chunk.lag;
        let seq = if shared.ll.is_some() {
            // Every audio frame is a sync sample; video parts are independent when they
            // start a segment (keyframes are forced there).
            let independent = chunk.starts_segment || r.is_audio();
            let part = Part {
                duration: chunk.duration,
                independent,
                gap: chunk.gap,
                data: chunk.data,
            };
            let before = r.window.next_seq();
            let pos = r
                .window
                .push_part(chunk.starts_segment, part, chunk.wallclock);
            if r.window.next_seq() != before && pos.msn > 0 {
                r.note_segment(pos.msn - 1, td);
            }
            pos.msn
        } else {
            let seq = r
                .window
                .push_segment(chunk.duration, chunk.wallclock, chunk.gap, chunk.data);
            r.note_segment(seq, td);
            seq
        };
        // The previous broadcast's segments are hidden once this one fills the window, and
        // forgotten once it has also filled the retention behind it (HLS2 §6.2.2).
        if r.carried.is_some()
            && r.window.next_seq() - first_seq
                >= (cfg.listed_segments() + cfg.retain_segments) as u64
        {
            r.carried = None;
        }
        r.wake();
        let trimmed_before = self.trimmed_segments;
        self.enforce_budget(stream, cfg.stream_memory_bytes(), shared.spill.as_ref());
        shared
            .metrics
            .segments_trimmed
            .inc_by(self.trimmed_segments - trimmed_before);
        self.delete_dropped(shared.spill.as_ref());
        self.version += 1;
        self.changed_at = at.wall;
        if let Some(lag) = chunk_lag {
            if self.lags.len() == LAG_SAMPLES {
                self.lags.pop_front();
            }
            self.lags
                .push_back((at.instant, lag.as_micros().min(u128::from(u32::MAX)) as u32));
        }
        self.refresh_master();
        if self.master.is_some() && self.first_playable.is_none() {
            self.first_playable = Some(at.instant);
            // Every media playlist is released at once: wake those parked on any of them.
            self.wake_all();
        }
        Ok(seq)
    }

    /// The publisher is gone: every playlist gets `EXT-X-ENDLIST`.
    pub(super) fn end(&mut self, at: At) {
        if self.ended_at.is_some() {
            return;
        }
        self.ended_at = Some(at.instant);
        let td = self.target_duration;
        for r in self.renditions.values_mut() {
            if let Some(seq) = r.window.open().map(|o| o.seq) {
                r.window.close();
                r.note_segment(seq, td);
            }
            r.wake();
        }
        self.version += 1;
        self.changed_at = at.wall;
        self.refresh_master();
    }
}

#[cfg(test)]
mod continuity_tests {
    use std::time::Duration;

    use super::Continuity;

    #[test]
    fn a_moved_stream_starts_above_what_its_last_node_could_have_published() {
        // Reported 2.5 s ago at 100 with 1 s segments: 101, 102 and 103 may exist since.
        let c = Continuity::resumed(100, 2, Duration::from_millis(2500), Duration::from_secs(1));
        assert_eq!(
            c,
            Continuity {
                next_seq: 104,
                discontinuity_seq: 3
            }
        );
        // Reported just now: the segment being cut.
        let c = Continuity::resumed(100, 2, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(c.next_seq, 101);
        let here = Continuity {
            next_seq: 50,
            discontinuity_seq: 7,
        };
        assert_eq!(
            here.later(c),
            Continuity {
                next_seq: 101,
                discontinuity_seq: 7
            }
        );
    }
}
