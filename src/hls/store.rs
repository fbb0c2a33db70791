//! The in-memory origin store: a thin, read-mostly map from stream name to that stream's
//! state, each behind its own lock (the pattern of mini-redis's `Db`).
//!
//! The map's lock is held only to find, insert or remove a stream (a hash lookup and an
//! `Arc` clone); everything else, rendering and gzip included, happens under the one
//! stream's lock, so streams never wait for each other. Writers are the broadcast tasks
//! (a few times per second per rendition), readers the HTTP handlers; playlists are
//! rendered at most once per change, by the first reader after it, and served as shared
//! `Bytes`. No lock is held across `.await` (there is none in here). Blocking playlist
//! reloads park on a per-rendition `watch` channel: no thread and no polling per parked
//! request. Lock order: the map, then a stream, then the continuity map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{error, warn};

use super::doc::Doc;
use super::media_playlist;
use super::remux::TsSources;
use super::serve::{Readiness, SegmentBody};
use super::settings::LlSettings;
use super::spill::{Job, SpillKey, Spiller, Written};
use super::stream::{At, Chunk, Continuity, Shared, StoreError, StreamState};
use super::summary::{IngestSummary, StreamSummary};
use crate::config::{DvrOverflow, HlsConfig};
use crate::keyframes::KeyframeStats;
use crate::media::RenditionInfo;
use crate::metrics::Metrics;
use crate::simulcast::{Alignment as SimulcastAlignment, Plan as SimulcastPlan};

/// Names whose numbering is remembered after expiry (beyond it, arbitrary old names are
/// forgotten and restart their numbers from 0 under a fresh epoch).
const CONTINUITY_NAMES: usize = 10_000;

/// One stream's slot: its state behind its own lock.
type Slot = Arc<Mutex<StreamState>>;

type Map = Mutex<HashMap<String, Slot>>;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct HlsStore {
    streams: Arc<Map>,
    /// Numbering carried from one broadcast of a name to the next, also after the previous
    /// one expired.
    continuity: Arc<Mutex<HashMap<String, Continuity>>>,
    shared: Arc<Shared>,
}

/// A panic while holding a lock would be a bug in this module; the data (plain maps) is
/// still consistent, so keep serving rather than poisoning every request.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl HlsStore {
    /// An empty store.
    pub fn new(cfg: HlsConfig) -> Self {
        let streams: Arc<Map> = Arc::new(Mutex::new(HashMap::new()));
        let metrics = Metrics::default();
        let spill = (cfg.dvr_overflow == DvrOverflow::Disk)
            .then(|| {
                // Weak: the writer thread must not keep the store alive (it ends when the
                // last store handle, and with it the channel, is dropped).
                let weak: Weak<Map> = Arc::downgrade(&streams);
                let spilled_count = metrics.segments_spilled.clone();
                let done: super::spill::Done = Box::new(move |key, result| {
                    let kept = weak
                        .upgrade()
                        .is_some_and(|streams| spilled(&streams, key, result));
                    if kept {
                        spilled_count.inc();
                    }
                    kept
                });
                Spiller::start(cfg.spill_directory.clone(), done)
                    .map_err(|e| error!(error = %e, "cannot start the DVR spill writer; trimming instead"))
                    .ok()
            })
            .flatten();
        Self {
            streams,
            continuity: Arc::new(Mutex::new(HashMap::new())),
            shared: Arc::new(Shared {
                ll: LlSettings::from_config(&cfg),
                cfg,
                spill,
                metrics,
            }),
        }
    }

    /// The process-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The HLS settings.
    pub fn config(&self) -> &HlsConfig {
        &self.shared.cfg
    }

    /// The LL-HLS settings, when LL-HLS is on.
    pub fn ll(&self) -> Option<&LlSettings> {
        self.shared.ll.as_ref()
    }

    /// The target duration of every playlist.
    pub fn target_duration(&self) -> u64 {
        media_playlist::target_duration(self.shared.cfg.segment_duration)
    }

    /// The slot of `stream`; the map's lock is released before the caller locks the slot.
    fn slot(&self, stream: &str) -> Option<Slot> {
        lock(&self.streams).get(stream).cloned()
    }

    /// Runs `f` on `stream`'s state under that stream's lock only.
    fn read<R>(&self, stream: &str, f: impl FnOnce(&mut StreamState) -> R) -> Option<R> {
        let slot = self.slot(stream)?;
        let mut st = lock(&slot);
        Some(f(&mut st))
    }

    /// Runs `f` on `stream`'s state if it is live.
    fn write<R>(
        &self,
        stream: &str,
        f: impl FnOnce(&mut StreamState, &Shared) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let not_live = || StoreError::NotLive(stream.to_string());
        let slot = self.slot(stream).ok_or_else(not_live)?;
        let mut st = lock(&slot);
        if !st.is_live() {
            return Err(not_live());
        }
        f(&mut st, &self.shared)
    }

    /// Starts a broadcast of `stream`, replacing an ended one of the same name. Returns the
    /// new epoch.
    pub fn begin(&self, stream: &str, ingest: IngestSummary, at: At) -> String {
        self.begin_after(stream, ingest, at, None)
    }

    /// [`HlsStore::begin`], numbered after `elsewhere` too (where the stream stood on
    /// another node of the cluster) when that is later than what this node knows.
    pub fn begin_after(
        &self,
        stream: &str,
        ingest: IngestSummary,
        at: At,
        elsewhere: Option<Continuity>,
    ) -> String {
        let epoch = format!("{:08x}", rand::random::<u32>());
        let mut map = lock(&self.streams);
        let old = map.get(stream).cloned();
        let old = old.as_ref().map(|slot| lock(slot));
        let here = match &old {
            Some(old) => old.continuity(),
            None => lock(&self.continuity)
                .get(stream)
                .copied()
                .unwrap_or_default(),
        };
        let cont = elsewhere.map_or(here, |e| here.later(e));
        let state = StreamState::new(
            epoch.clone(),
            ingest,
            cont,
            old.as_deref(),
            &self.shared.cfg,
            at,
        );
        if let Some(old) = old {
            self.forget_files(stream, &old);
            // Wake anyone parked on the previous broadcast; they will find it gone.
            old.wake_all();
        }
        map.insert(stream.to_string(), Arc::new(Mutex::new(state)));
        epoch
    }

    /// Records the renditions the broadcast will have; the multivariant playlist is served
    /// only once every one of them is playable.
    pub fn expect(&self, stream: &str, renditions: Vec<String>) {
        let _ = self.write(stream, |st, _| {
            st.expect(renditions);
            Ok(())
        });
    }

    /// Records a rendition's init segment.
    pub fn init(
        &self,
        stream: &str,
        info: RenditionInfo,
        data: Bytes,
        at: At,
    ) -> Result<(), StoreError> {
        self.write(stream, |st, shared| {
            st.init(&shared.cfg, info, data, at);
            Ok(())
        })
    }

    /// Publishes what the muxer produced: a part (LL-HLS) or a whole segment. Returns the
    /// segment's sequence number.
    pub fn publish(
        &self,
        stream: &str,
        rendition: &str,
        chunk: Chunk,
        at: At,
    ) -> Result<u64, StoreError> {
        self.write(stream, |st, shared| {
            st.publish(shared, stream, rendition, chunk, at)
        })
    }

    /// The publisher is gone: every playlist gets `EXT-X-ENDLIST`; everything stays served
    /// for the grace period.
    pub fn end(&self, stream: &str, at: At) {
        self.read(stream, |st| st.end(at));
    }

    /// Forgets ended streams whose grace period is over; returns their names.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let grace = self.shared.cfg.grace_period;
        let mut map = lock(&self.streams);
        let gone: Vec<String> = map
            .iter()
            .filter(|(_, slot)| {
                lock(slot)
                    .ended_at
                    .is_some_and(|t| now.duration_since(t) >= grace)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            if let Some(slot) = map.remove(k) {
                let st = lock(&slot);
                self.forget_files(k, &st);
                let mut cont = lock(&self.continuity);
                if cont.len() >= CONTINUITY_NAMES
                    && let Some(victim) = cont.keys().next().cloned()
                {
                    // Bounded memory against a flood of one-off names.
                    cont.remove(&victim);
                }
                cont.insert(k.clone(), st.continuity());
            }
        }
        gone
    }

    /// A broadcast left the store: its spilled files go (the whole broadcast directory).
    fn forget_files(&self, stream: &str, st: &StreamState) {
        if let Some(sp) = &self.shared.spill
            && st.spilled_segments > 0
            && !sp.send(Job::DeleteDir(sp.stream_dir(stream, &st.epoch)))
        {
            warn!(stream, "spill queue full: broadcast directory left behind");
        }
    }

    /// The multivariant playlist, once every planned rendition has a whole segment.
    pub fn master(&self, stream: &str) -> Option<Doc> {
        self.read(stream, |st| st.master.clone())?
    }

    /// A media playlist, once the rendition has media: full, or a delta update when
    /// `skip` (`_HLS_skip=YES`, LL-HLS only, ignored after ENDLIST).
    pub fn media_playlist(&self, stream: &str, rendition: &str, skip: bool) -> Option<Doc> {
        let listed = self.shared.cfg.listed_segments();
        self.read(stream, |st| {
            st.media_playlist(rendition, self.shared.ll.as_ref(), skip, listed)
        })?
    }

    /// The multivariant playlist of the MPEG-TS variants.
    pub fn ts_master(&self, stream: &str) -> Option<Doc> {
        self.read(stream, StreamState::ts_master)?
    }

    /// The MPEG-TS media playlist of a video rendition.
    pub fn ts_playlist(&self, stream: &str, rendition: &str) -> Option<Doc> {
        self.read(stream, |st| st.ts_playlist(rendition))?
    }

    /// The sources of MPEG-TS segment `seq` of video rendition `rendition` (current
    /// broadcast only: that is all the TS playlists list).
    pub fn ts_sources(
        &self,
        stream: &str,
        rendition: &str,
        epoch: &str,
        seq: u64,
    ) -> Option<TsSources> {
        self.read(stream, |st| {
            st.ts_sources(&self.shared.cfg, rendition, epoch, seq)
        })?
    }

    /// Whether a playlist request for segment `msn` (and part `part`) can be answered now
    /// (HLS2 §6.2.5.2). After ENDLIST the parameters are ignored.
    pub fn readiness(
        &self,
        stream: &str,
        rendition: &str,
        msn: u64,
        part: Option<usize>,
    ) -> Readiness {
        self.read(stream, |st| {
            st.readiness(self.shared.ll.as_ref(), rendition, msn, part)
        })
        .unwrap_or(Readiness::NotFound)
    }

    /// A part of the given epoch.
    pub fn part(
        &self,
        stream: &str,
        rendition: &str,
        epoch: &str,
        msn: u64,
        index: usize,
    ) -> Option<Bytes> {
        self.read(stream, |st| st.part(rendition, epoch, msn, index))?
    }

    /// The part the preload hint names (LL-HLS only).
    pub fn next_part(&self, stream: &str, rendition: &str) -> Option<(u64, usize)> {
        let ll = self.shared.ll.as_ref()?;
        self.read(stream, |st| st.next_part(ll, rendition))?
    }

    /// Records the publisher's keyframe figures.
    pub fn set_keyframes(&self, stream: &str, stats: KeyframeStats) {
        self.read(stream, |st| st.keyframes = Some(stats));
    }

    /// Records how `stream`'s simulcast layers were planned (`/api/streams`).
    pub fn set_simulcast(&self, stream: &str, plan: SimulcastPlan) {
        self.read(stream, |st| st.simulcast = Some(plan));
    }

    /// Records the simulcast renditions' alignment troubles so far (`/api/streams`).
    pub fn set_simulcast_alignment(&self, stream: &str, report: Vec<SimulcastAlignment>) {
        self.read(stream, |st| {
            if let Some(plan) = st.simulcast.as_mut() {
                plan.alignment = report;
            }
        });
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE` of the current broadcast of `stream`.
    pub fn discontinuity_sequence(&self, stream: &str) -> u64 {
        self.read(stream, |st| st.discontinuity_seq).unwrap_or(0)
    }

    /// Whether `epoch` is the current broadcast of `stream`.
    pub fn is_epoch(&self, stream: &str, epoch: &str) -> bool {
        self.read(stream, |st| st.epoch == epoch).unwrap_or(false)
    }

    /// An init segment of the given epoch.
    pub fn init_segment(&self, stream: &str, rendition: &str, epoch: &str) -> Option<Bytes> {
        self.read(stream, |st| st.init_segment(rendition, epoch))?
    }

    /// A media segment of the given epoch, listed or retired, with how long it will stay
    /// downloadable (for `Expires`, HLS2 §6.2.2) while the stream is live.
    pub fn media_segment(
        &self,
        stream: &str,
        rendition: &str,
        epoch: &str,
        seq: u64,
    ) -> Option<(SegmentBody, Option<Duration>)> {
        self.read(stream, |st| {
            st.media_segment(&self.shared.cfg, rendition, epoch, seq)
        })?
    }

    /// Where `stream`'s numbering stands: its next media sequence number and its
    /// discontinuity sequence (what the cluster keeps for the node it may move to).
    pub fn progress(&self, stream: &str) -> Option<(u64, u64)> {
        self.read(stream, |st| {
            (st.continuity().next_seq, st.discontinuity_seq)
        })
    }

    /// Whether `stream` is live (published and not ended).
    pub fn is_live(&self, stream: &str) -> bool {
        self.read(stream, |st| st.is_live()).unwrap_or(false)
    }

    /// Every stream, for `/api/streams`, by name.
    pub fn summaries(&self, now: Instant) -> Vec<StreamSummary> {
        // Slots first, then each stream's lock on its own: the map is not held while the
        // summaries are built.
        let mut slots: Vec<(String, Slot)> = lock(&self.streams)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        slots
            .iter()
            .map(|(name, slot)| lock(slot).summary(name, now))
            .collect()
    }
}

/// The spill writer's report for one segment; returns whether the store still wants the
/// file. Runs on the writer thread; takes the map's lock, then the stream's, briefly.
fn spilled(streams: &Map, key: &SpillKey, result: Written) -> bool {
    let Some(slot) = lock(streams).get(&key.stream).cloned() else {
        return false;
    };
    lock(&slot).spilled(key, result)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
