//! The in-memory origin store: every stream's renditions, windows and rendered playlists.
//!
//! A read-mostly store behind one `std::sync::Mutex` (mini-redis `Db` pattern): writers are
//! the broadcast tasks (a few times per second per rendition), readers the HTTP handlers.
//! Playlists are rendered at most once per change (lazily, by the first reader after it)
//! and served as shared `Bytes`. The lock is never held across `.await` (there is none
//! inside). Blocking playlist reloads park on a per-rendition `watch` channel: no thread
//! and no polling per parked request.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{error, warn};

use super::doc::Doc;
use super::llhls::{self, LlView, RenditionReport, ServerControl};
use super::playlist::{self, MasterEntry, MediaView};
use super::spill::{Job, SpillKey, Spiller};
use super::window::{Part, Segment, Spill, Window};
use crate::config::{DvrOverflow, HlsConfig};
use crate::keyframes::KeyframeStats;
use crate::media::{RenditionInfo, RenditionKind};
use crate::metrics::{self, Metrics};
use crate::output::{OutputSnapshot, OutputStatus};

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct HlsStore {
    inner: Arc<Mutex<HashMap<String, StreamState>>>,
    /// Numbering carried from one broadcast of a name to the next, also after the previous
    /// one expired. Locked only after `inner`, never the other way round.
    continuity: Arc<Mutex<HashMap<String, Continuity>>>,
    cfg: Arc<HlsConfig>,
    ll: Option<LlSettings>,
    /// The DVR overflow writer (`hls.dvr_overflow = "disk"`).
    spill: Option<Spiller>,
    /// Process-wide counters (`/metrics`); the other modules reach them through the store.
    metrics: Metrics,
}

/// Where a media segment's bytes are, for the HTTP side.
#[derive(Debug, Clone)]
pub enum SegmentBody {
    /// In memory.
    Memory(Bytes),
    /// Spilled to this file (DVR overflow); read it off the runtime's worker threads.
    File(Arc<PathBuf>),
}

/// Where the next broadcast of a stream name continues.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Continuity {
    /// First media sequence number of the next broadcast.
    next_seq: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` of the next broadcast.
    discontinuity_seq: u64,
}

/// Names whose numbering is remembered after expiry (beyond it, arbitrary old names are
/// forgotten and restart their numbers from 0 under a fresh epoch).
const CONTINUITY_NAMES: usize = 10_000;

/// A video rung's MPEG-TS media playlist, beside its `index.m3u8`.
pub const TS_PLAYLIST: &str = "index-ts.m3u8";

/// What the origin remuxes an MPEG-TS segment from ([`super::ts::remux`]).
pub struct TsSources {
    /// The video rung's init section and segment.
    pub video: (Bytes, SegmentBody),
    /// The audio rendition's init section and the audio segments that overlap the video
    /// segment in time (the remux keeps the samples inside it). Audio segments are cut on
    /// their own grid, and a passthrough rung's on the publisher's keyframes, so the same
    /// number does not mean the same time.
    pub audio: Option<(Bytes, Vec<SegmentBody>)>,
    /// How long the segment stays downloadable (as for the fMP4 segment).
    pub ttl: Option<Duration>,
}

/// Slack when matching audio to video by wall-clock time: both come from one clock anchor,
/// so a few milliseconds of rounding; the remux then cuts exactly on media timestamps.
const TS_AUDIO_SLACK: Duration = Duration::from_millis(100);

fn segment_end(s: &Segment) -> SystemTime {
    s.wallclock + s.duration
}

/// Where a complete segment's bytes are.
fn segment_body(seg: &Segment) -> SegmentBody {
    match &seg.spill {
        Spill::Disk(path) => SegmentBody::File(Arc::clone(path)),
        Spill::Memory | Spill::Pending => SegmentBody::Memory(seg.data.clone()),
    }
}

/// Whether the stream's audio is complete up to the end of video segment `video` (always
/// true without audio, or once the stream ended): until then its MPEG-TS segment is held
/// back, because a segment served without its audio would be cached as it is.
fn audio_covers(st: &StreamState, video: &Segment) -> bool {
    let Some(audio) = st.renditions.values().find(|a| a.is_audio()) else {
        return true;
    };
    st.ended_at.is_some()
        || audio
            .window
            .segments()
            .last()
            .is_some_and(|a| segment_end(a) + Duration::from_millis(5) >= segment_end(video))
}

impl StreamState {
    /// Where a following broadcast of this name continues.
    fn continuity(&self) -> Continuity {
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
}

/// One fragment or part as the muxer produced it.
#[derive(Debug)]
pub struct Chunk {
    /// Starts a new segment (cmafmux fragment start; a keyframe for video).
    pub starts_segment: bool,
    /// Whether the next chunk will start a segment, if known (the preload hint).
    pub next_starts_segment: Option<bool>,
    /// Duration.
    pub duration: Duration,
    /// Wall-clock time of its first sample.
    pub wallclock: SystemTime,
    /// Server lag of this chunk (video), for the lag percentiles.
    pub lag: Option<Duration>,
    /// The bytes.
    pub data: Bytes,
}

/// Keeps `st` within `budget` bytes of memory. With a spiller (`dvr_overflow = "disk"`)
/// that works, the oldest in-memory segments are queued for the disk until what stays in
/// memory fits (their bytes go once written, see [`spilled`]). Otherwise the oldest segments
/// are dropped: each time from the rendition whose oldest segment is oldest, so the
/// renditions keep covering about the same time span. Segments are immutable and never
/// renamed, so a CDN that cached one keeps serving it; only the origin forgets it.
fn enforce_budget(st: &mut StreamState, stream: &str, budget: usize, spill: Option<&Spiller>) {
    let mut held: usize = st.renditions.values().map(|r| r.window.bytes()).sum();
    if held <= budget {
        return;
    }
    if let Some(sp) = spill.filter(|sp| !sp.failed()) {
        let mut pending: usize = st
            .renditions
            .values()
            .map(|r| r.window.pending_bytes())
            .sum();
        while held - pending > budget {
            let oldest = st
                .renditions
                .iter_mut()
                .filter_map(|(name, r)| {
                    r.window
                        .oldest_in_memory()
                        .map(|(seq, t)| (t, seq, name, r))
                })
                .min_by_key(|(t, ..)| *t);
            let Some((_, seq, name, r)) = oldest else {
                break;
            };
            let key = SpillKey {
                stream: stream.to_string(),
                epoch: st.epoch.clone(),
                rendition: name.clone(),
                seq,
            };
            let Some(data) = r.window.spill_begin(seq) else {
                break;
            };
            let len = data.len();
            let path = Arc::new(sp.path(&key));
            if !sp.send(Job::Write { key, path, data }) {
                // The disk is behind: keep it in memory for now, retry on the next publish.
                r.window.spill_failed(seq);
                break;
            }
            pending += len;
        }
        return;
    }
    let mut trimmed = 0usize;
    while held > budget {
        let oldest = st
            .renditions
            .values_mut()
            .filter_map(|r| r.window.oldest_wallclock().map(|t| (t, r)))
            .min_by_key(|(t, _)| *t);
        let Some((_, r)) = oldest else { break };
        let Some(freed) = r.window.trim_oldest() else {
            // Down to the minimum listed segments in the oldest rendition: try no further
            // (a budget this small is a configuration problem, logged below).
            break;
        };
        held -= freed;
        trimmed += 1;
    }
    if trimmed > 0 {
        st.trimmed_segments += trimmed as u64;
        if st.trimmed_segments == trimmed as u64 {
            warn!(
                budget_mib = budget >> 20,
                "stream memory budget reached: dropping the oldest segments (hls.stream_memory_mib)"
            );
        }
    }
}

/// The spill writer's report for one segment; returns whether the store still wants the
/// file. Runs on the writer thread; takes the store's lock briefly.
fn spilled(
    inner: &Mutex<HashMap<String, StreamState>>,
    key: &SpillKey,
    result: Result<Arc<PathBuf>, ()>,
) -> bool {
    let mut map = inner.lock().unwrap_or_else(|p| p.into_inner());
    let Some(st) = map.get_mut(&key.stream).filter(|st| st.epoch == key.epoch) else {
        return false;
    };
    let Some(r) = st.renditions.get_mut(&key.rendition) else {
        return false;
    };
    match result {
        Ok(path) => {
            let kept = r.window.spill_done(key.seq, path).is_some();
            if kept {
                st.spilled_segments += 1;
            }
            kept
        }
        Err(()) => {
            r.window.spill_failed(key.seq);
            false
        }
    }
}

/// Hands the files of spilled segments that left a window to the writer for deletion.
fn delete_dropped(st: &mut StreamState, spill: Option<&Spiller>) {
    let Some(sp) = spill else { return };
    for r in st.renditions.values_mut() {
        for path in r.window.take_dropped_files() {
            if !sp.send(Job::Delete(Arc::clone(&path))) {
                warn!(path = %path.display(), "spill queue full: file left behind");
            }
        }
    }
}

/// Lag samples kept per stream for the percentiles.
const LAG_SAMPLES: usize = 1024;

/// What the ingest side tells the store about a new broadcast.
#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    /// `whip` or `websocket`.
    pub signaling: &'static str,
    /// Video codec name.
    pub video_codec: String,
    /// Whether the publisher sends audio.
    pub audio: bool,
}

/// A stream as `/api/streams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// Stream name.
    pub name: String,
    /// `live` or `ended`.
    pub state: &'static str,
    /// Broadcast epoch (part of every media URL).
    pub epoch: String,
    /// Seconds since the publish started.
    pub uptime_s: f64,
    /// Ingest details.
    pub ingest: IngestSummary,
    /// Renditions published.
    pub renditions: Vec<RenditionSummary>,
    /// Multivariant playlist path.
    pub master: String,
    /// Server lag of video parts/segments: arrival of their last frame → published.
    pub lag_ms: LagSummary,
    /// Seconds from publish to the first playable multivariant playlist.
    pub first_playable_s: Option<f64>,
    /// The publisher's keyframes: observed GOP, steering requests and answers.
    pub keyframes: Option<KeyframeStats>,
    /// Recording and object-storage outputs of this broadcast, with their failures.
    pub outputs: Vec<OutputSnapshot>,
    /// Bytes of media held in memory for this stream (all renditions).
    pub memory_bytes: usize,
    /// Segments dropped early to stay within `hls.stream_memory_mib`.
    pub trimmed_segments: u64,
    /// Segments moved to disk to stay within it (`hls.dvr_overflow = "disk"`).
    pub spilled_segments: u64,
}

/// Percentiles of the recent server lags.
#[derive(Debug, Clone, Serialize, Default)]
pub struct LagSummary {
    /// Median, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Samples (most recent, up to 1024).
    pub samples: usize,
}

fn lag_summary(lags: &std::collections::VecDeque<u32>) -> LagSummary {
    if lags.is_empty() {
        return LagSummary::default();
    }
    let mut v: Vec<u32> = lags.iter().copied().collect();
    v.sort_unstable();
    let pct = |p: f64| f64::from(v[((v.len() - 1) as f64 * p).round() as usize]) / 1000.0;
    LagSummary {
        p50: pct(0.50),
        p99: pct(0.99),
        samples: v.len(),
    }
}

/// One rendition in [`StreamSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct RenditionSummary {
    /// Name.
    pub name: String,
    /// RFC 6381 codecs.
    pub codecs: String,
    /// Width (video).
    pub width: Option<u32>,
    /// Height (video).
    pub height: Option<u32>,
    /// Segments published so far.
    pub segments: u64,
    /// Average measured bitrate, bit/s.
    pub average_bps: u64,
}

struct StreamState {
    epoch: String,
    started: SystemTime,
    started_at: Instant,
    ended_at: Option<Instant>,
    target_duration: u64,
    ingest: IngestSummary,
    renditions: BTreeMap<String, RenditionState>,
    /// Every rendition the broadcast will have, once the media layer planned its ladder.
    /// The multivariant playlist waits for all of them (see [`render_master`]).
    expected: Option<Vec<String>>,
    master: Option<Doc>,
    /// The multivariant playlist of the MPEG-TS variants, rendered on request (few players
    /// ask for it) and kept with the `version` it was rendered at.
    ts_master: Option<(u64, Doc)>,
    /// When anything of the stream last changed (`Last-Modified` of its playlists).
    changed_at: SystemTime,
    /// Bumped on every change of any rendition: cached playlists carry rendition reports
    /// of the others, so any change invalidates them.
    version: u64,
    /// Recent server lags (ring buffer), in microseconds.
    lags: std::collections::VecDeque<u32>,
    /// When the first complete playable state (master playlist) existed.
    first_playable: Option<Instant>,
    /// The publisher's keyframes (H.264).
    keyframes: Option<KeyframeStats>,
    /// First media sequence number of this broadcast (continues the previous one's).
    first_seq: u64,
    /// Broadcasts of this name before this one (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_seq: u64,
    /// Status of the broadcast's recording / object-storage outputs.
    outputs: Vec<OutputStatus>,
    /// Segments dropped to stay within the memory budget.
    trimmed_segments: u64,
    /// Segments moved to disk to stay within the memory budget.
    spilled_segments: u64,
    /// The previous broadcast's segments per rendition, until that rendition's init arrives.
    carried: BTreeMap<String, Carried>,
}

/// The previous broadcast's last listed segments of one rendition: a stream name
/// re-published within the grace period lists them before an `EXT-X-DISCONTINUITY`, until
/// the new broadcast fills the window, and keeps them downloadable under their own epoch.
struct Carried {
    epoch: String,
    init: Bytes,
    segments: Vec<Segment>,
}

impl Carried {
    /// What `r` of an ended broadcast with `epoch` leaves to the next one: its listed
    /// segments still in memory (spilled files go with their broadcast's directory).
    fn from_rendition(epoch: &str, r: &RenditionState) -> Option<Carried> {
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

    fn get(&self, epoch: &str, seq: u64) -> Option<&Segment> {
        (self.epoch == epoch)
            .then(|| self.segments.iter().find(|s| s.seq == seq))
            .flatten()
    }
}

struct RenditionState {
    /// The previous broadcast's segments, shown before this one's.
    carried: Option<Carried>,
    info: RenditionInfo,
    init: Bytes,
    window: Window,
    /// Rendered full and delta playlists, with the stream version they were rendered at.
    /// Full, delta (`_HLS_skip`), MPEG-TS.
    cache: [Option<(u64, Doc)>; 3],
    peak_bps: u64,
    total_bytes: u64,
    total_duration: Duration,
    /// What the media layer said about the chunk after the last one (preload hint).
    next_starts: Option<bool>,
    /// Wakes requests parked on this rendition (blocking reload, preload hints).
    changed: watch::Sender<u64>,
}

/// LL-HLS settings derived once from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LlSettings {
    /// Configured part duration (the muxer's chunk duration).
    pub part_duration: Duration,
    /// `PART-TARGET`: no part is longer.
    pub part_target: Duration,
    /// Parts per segment on the muxer's own cadence.
    pub parts_per_segment: usize,
    /// `EXT-X-SERVER-CONTROL` values.
    pub server_control: ServerControl,
}

/// One AAC-LC frame at 48 kHz: 1024 samples.
const AAC_FRAME: Duration = Duration::from_nanos(21_333_334);

impl LlSettings {
    /// `None` when LL-HLS is off (`hls.part_duration = "0s"`).
    pub fn from_config(cfg: &HlsConfig) -> Option<LlSettings> {
        if cfg.part_duration.is_zero() {
            return None;
        }
        // Audio parts are whole AAC frames, which do not divide e.g. 200 ms: they come out
        // one frame longer or shorter than the chunk duration. PART-TARGET must bound every
        // part (HLS2 §4.4.4.9), so it is the chunk duration plus one frame, rounded up to
        // the millisecond; video parts (exactly the chunk duration) stay above 85 % of it.
        let ms = (cfg.part_duration + AAC_FRAME).as_micros().div_ceil(1000) as u64;
        let part_target = Duration::from_millis(ms);
        let td = playlist::target_duration(cfg.segment_duration);
        Some(LlSettings {
            part_duration: cfg.part_duration,
            part_target,
            parts_per_segment: (cfg.segment_duration.as_nanos() / cfg.part_duration.as_nanos())
                as usize,
            server_control: ServerControl::recommended(td, part_target),
        })
    }

    /// HLS2 §6.2.5.2 Advance Part Limit: how far ahead of the newest part a request may be.
    pub fn advance_part_limit(&self) -> u64 {
        let t = self.part_target.as_secs_f64();
        if t < 1.0 { (3.0 / t) as u64 } else { 3 }
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

impl RenditionState {
    fn average_bps(&self) -> u64 {
        let secs = self.total_duration.as_secs_f64();
        if secs > 0.0 {
            (self.total_bytes as f64 * 8.0 / secs) as u64
        } else {
            0
        }
    }

    fn is_audio(&self) -> bool {
        matches!(self.info.kind, RenditionKind::Audio { .. })
    }
}

/// Renders (or returns the cached) media playlist of `name`.
fn render_media(
    st: &mut StreamState,
    name: &str,
    ll: Option<&LlSettings>,
    skip: bool,
    listed: usize,
) -> Option<Doc> {
    let version = st.version;
    let ended = st.ended_at.is_some();
    let slot = usize::from(skip && ll.is_some() && !ended);
    // The cached text first: this runs for every playlist request, the rest only once per
    // change (BENCHMARKS.md "Origin throughput").
    {
        let r = st.renditions.get(name)?;
        // Served once a whole segment is listed: hls.js reports a parts-only playlist as
        // LEVEL_EMPTY_ERROR and backs off its reloads (seen as 30 s start-up stalls). And
        // only once the multivariant playlist is: until then the target duration is not
        // fixed (see `release`), and it must never change (HLS2 §6.2.1).
        if !r.window.has_complete() || st.master.is_none() {
            return None;
        }
        if let Some((v, text)) = &r.cache[slot]
            && *v == version
        {
            return Some(text.clone());
        }
    }
    let reports: Vec<RenditionReport> = match ll {
        Some(_) => st
            .renditions
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .filter_map(|(n, r)| {
                r.window.position().map(|p| RenditionReport {
                    uri: format!("../{n}/index.m3u8"),
                    last_msn: p.msn,
                    last_part: p.part,
                })
            })
            .collect(),
        None => Vec::new(),
    };
    let epoch = st.epoch.clone();
    let td = st.target_duration;
    let changed_at = st.changed_at;
    let discontinuity_sequence = st.discontinuity_seq;
    let r = st.renditions.get_mut(name)?;
    let init_uri = init_name(&epoch);
    let seg_uri = |seq: u64| segment_name(&epoch, seq);
    // The previous broadcast's segments fill what this one leaves of the window.
    let (old_epoch, carried): (String, &[Segment]) = match &r.carried {
        Some(c) => {
            let n = listed.saturating_sub(r.window.len()).min(c.segments.len());
            (c.epoch.clone(), &c.segments[c.segments.len() - n..])
        }
        None => (String::new(), &[]),
    };
    let old_init_uri = init_name(&old_epoch);
    let old_seg_uri = |seq: u64| segment_name(&old_epoch, seq);
    let prelude = (!carried.is_empty()).then_some(llhls::Prelude {
        segments: carried,
        init_uri: &old_init_uri,
        segment_uri: &old_seg_uri,
    });
    let text = match ll {
        Some(ll) => {
            let part_uri = |seq: u64, i: usize| part_name(&epoch, seq, i);
            llhls::render(&LlView {
                target_duration: td,
                part_target: ll.part_target,
                server_control: ll.server_control,
                window: &r.window,
                init_uri: &init_uri,
                segment_uri: &seg_uri,
                part_uri: &part_uri,
                parts_per_segment: ll.parts_per_segment,
                next_starts_segment: r.next_starts,
                discontinuity_sequence,
                prelude,
                ended,
                skip: slot == 1,
                reports,
            })
        }
        None => playlist::media(&MediaView {
            target_duration: td,
            window: &r.window,
            init_uri: Some(&init_uri),
            segment_uri: &seg_uri,
            discontinuity_sequence,
            prelude,
            ended,
            last_seq: None,
        }),
    };
    let doc = Doc::new(text, changed_at);
    r.cache[slot] = Some((version, doc.clone()));
    Some(doc)
}

/// Renders (or returns the cached) MPEG-TS media playlist of video rendition `name`: the
/// same window as its fMP4 playlist, `.ts` names, no `EXT-X-MAP`, no LL-HLS tags. The
/// previous broadcast's segments (re-publish) are not listed: they are fMP4 of another
/// epoch; the discontinuity sequence still counts that broadcast.
fn render_ts_media(st: &mut StreamState, name: &str) -> Option<Doc> {
    let version = st.version;
    let r = st.renditions.get(name)?;
    if !r.window.has_complete() || !matches!(r.info.kind, RenditionKind::Video { .. }) {
        return None;
    }
    if let Some((v, text)) = &r.cache[2]
        && *v == version
    {
        return Some(text.clone());
    }
    let epoch = st.epoch.clone();
    let seg_uri = |seq: u64| ts_segment_name(&epoch, seq);
    // Held back at the live edge until the audio muxed into it is complete.
    let last_seq = r
        .window
        .segments()
        .rev()
        .find(|v| audio_covers(st, v))
        .map(|v| v.seq)?;
    let text = playlist::media(&MediaView {
        target_duration: st.target_duration,
        window: &r.window,
        init_uri: None,
        segment_uri: &seg_uri,
        discontinuity_sequence: st.discontinuity_seq,
        prelude: None,
        ended: st.ended_at.is_some(),
        last_seq: Some(last_seq),
    });
    let doc = Doc::new(text, st.changed_at);
    if let Some(r) = st.renditions.get_mut(name) {
        r.cache[2] = Some((version, doc.clone()));
    }
    Some(doc)
}

/// The init segment's file name in a broadcast.
pub fn init_name(epoch: &str) -> String {
    format!("init-{epoch}.mp4")
}

/// A segment's file name. The epoch makes names unique across broadcasts of one stream
/// name, so a cache never serves an old broadcast's bytes under a new playlist.
pub fn segment_name(epoch: &str, seq: u64) -> String {
    format!("seg-{epoch}-{seq}.m4s")
}

/// A part's file name: part `index` of segment `seq`.
pub fn part_name(epoch: &str, seq: u64, index: usize) -> String {
    format!("part-{epoch}-{seq}.{index}.m4s")
}

/// An MPEG-TS segment's file name (the same segment, remuxed; see [`super::ts`]).
pub fn ts_segment_name(epoch: &str, seq: u64) -> String {
    format!("seg-{epoch}-{seq}.ts")
}

/// Parses `seg-{epoch}-{seq}.ts`.
pub fn parse_ts_segment_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".ts")?;
    let (epoch, seq) = rest.rsplit_once('-')?;
    Some((epoch, seq.parse().ok()?))
}

/// Parses `part-{epoch}-{seq}.{index}.m4s`.
pub fn parse_part_name(name: &str) -> Option<(&str, u64, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".m4s")?;
    let (epoch, pos) = rest.rsplit_once('-')?;
    let (seq, index) = pos.split_once('.')?;
    Some((epoch, seq.parse().ok()?, index.parse().ok()?))
}

/// Parses `seg-{epoch}-{seq}.m4s`.
pub fn parse_segment_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".m4s")?;
    let (epoch, seq) = rest.rsplit_once('-')?;
    Some((epoch, seq.parse().ok()?))
}

/// Parses `init-{epoch}.mp4`.
pub fn parse_init_name(name: &str) -> Option<&str> {
    name.strip_prefix("init-")?.strip_suffix(".mp4")
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

impl HlsStore {
    /// An empty store.
    pub fn new(cfg: HlsConfig) -> Self {
        let inner = Arc::new(Mutex::new(HashMap::new()));
        let metrics = Metrics::default();
        let spill = (cfg.dvr_overflow == DvrOverflow::Disk)
            .then(|| {
                // Weak: the writer thread must not keep the store alive (it ends when the
                // last store handle, and with it the channel, is dropped).
                let weak: Weak<Mutex<HashMap<String, StreamState>>> = Arc::downgrade(&inner);
                let counters = metrics.clone();
                let done: super::spill::Done = Box::new(move |key, result| {
                    let kept = weak
                        .upgrade()
                        .is_some_and(|inner| spilled(&inner, key, result));
                    if kept {
                        metrics::inc(&counters.segments_spilled);
                    }
                    kept
                });
                Spiller::start(cfg.spill_directory.clone(), done)
                    .map_err(|e| error!(error = %e, "cannot start the DVR spill writer; trimming instead"))
                    .ok()
            })
            .flatten();
        Self {
            ll: LlSettings::from_config(&cfg),
            inner,
            continuity: Arc::new(Mutex::new(HashMap::new())),
            cfg: Arc::new(cfg),
            spill,
            metrics,
        }
    }

    /// The process-wide counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, StreamState>> {
        // A panic while holding the lock would be a bug in this file; the data (plain maps)
        // is still consistent, so keep serving rather than poisoning every request.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The HLS settings.
    pub fn config(&self) -> &HlsConfig {
        &self.cfg
    }

    /// The LL-HLS settings, when LL-HLS is on.
    pub fn ll(&self) -> Option<&LlSettings> {
        self.ll.as_ref()
    }

    /// The target duration of every playlist.
    pub fn target_duration(&self) -> u64 {
        playlist::target_duration(self.cfg.segment_duration)
    }

    /// Starts a broadcast of `stream`, replacing an ended one of the same name. Returns the
    /// new epoch.
    pub fn begin(&self, stream: &str, ingest: IngestSummary, now: Instant) -> String {
        let epoch = format!("{:08x}", rand::random::<u32>());
        let mut map = self.lock();
        let cont = match map.get(stream) {
            Some(old) => old.continuity(),
            None => self
                .continuity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(stream)
                .copied()
                .unwrap_or_default(),
        };
        let carried: BTreeMap<String, Carried> = map
            .get(stream)
            .map(|old| {
                old.renditions
                    .iter()
                    .filter_map(|(name, r)| {
                        Carried::from_rendition(&old.epoch, r).map(|c| (name.clone(), c))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state = StreamState {
            first_seq: cont.next_seq,
            discontinuity_seq: cont.discontinuity_seq,
            epoch: epoch.clone(),
            started: SystemTime::now(),
            started_at: now,
            ended_at: None,
            target_duration: playlist::target_duration(self.cfg.segment_duration),
            ingest,
            renditions: BTreeMap::new(),
            expected: None,
            master: None,
            ts_master: None,
            changed_at: SystemTime::now(),
            version: 0,
            lags: std::collections::VecDeque::with_capacity(LAG_SAMPLES),
            first_playable: None,
            keyframes: None,
            outputs: Vec::new(),
            trimmed_segments: 0,
            spilled_segments: 0,
            carried,
        };
        if let Some(old) = map.insert(stream.to_string(), state) {
            self.forget_files(stream, &old);
            // Wake anyone parked on the previous broadcast; they will find it gone.
            for r in old.renditions.values() {
                r.changed.send_modify(|v| *v += 1);
            }
        }
        epoch
    }

    /// Records the renditions the broadcast will have; the multivariant playlist is served
    /// only once every one of them is playable. Set once: the rendition set of a served
    /// multivariant playlist never changes during a broadcast.
    pub fn expect(&self, stream: &str, renditions: Vec<String>) {
        let mut map = self.lock();
        if let Ok(st) = live(&mut map, stream)
            && st.expected.is_none()
        {
            st.expected = Some(renditions);
        }
    }

    /// Records a rendition's init segment.
    pub fn init(&self, stream: &str, info: RenditionInfo, data: Bytes) -> Result<(), StoreError> {
        let mut map = self.lock();
        let st = live(&mut map, stream)?;
        let cfg = &self.cfg;
        let name = info.name.clone();
        let first_seq = st.first_seq;
        let carried = st.carried.remove(&name);
        let r = st.renditions.entry(name).or_insert_with(|| RenditionState {
            carried,
            info: info.clone(),
            init: Bytes::new(),
            window: Window::starting_at(cfg.listed_segments(), cfg.retain_segments, first_seq),
            cache: [None, None, None],
            peak_bps: 0,
            total_bytes: 0,
            total_duration: Duration::ZERO,
            next_starts: None,
            changed: watch::Sender::new(0),
        });
        r.info = info;
        r.init = data;
        st.version += 1;
        st.changed_at = SystemTime::now();
        Ok(())
    }

    /// Publishes what the muxer produced: a part (LL-HLS) or a whole segment. Returns the
    /// segment's sequence number.
    pub fn publish(&self, stream: &str, rendition: &str, chunk: Chunk) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let st = live(&mut map, stream)?;
        let td = st.target_duration;
        let r = st
            .renditions
            .get_mut(rendition)
            .ok_or_else(|| StoreError::NoInit(rendition.to_string()))?;
        r.total_bytes += chunk.data.len() as u64;
        r.next_starts = chunk.next_starts_segment;
        r.total_duration += chunk.duration;
        let chunk_lag = chunk.lag;
        let seq = if self.ll.is_some() {
            // Every audio frame is a sync sample; video parts are independent when they
            // start a segment (keyframes are forced there).
            let independent = chunk.starts_segment || r.is_audio();
            let part = Part {
                duration: chunk.duration,
                independent,
                data: chunk.data,
            };
            let before = r.window.next_seq();
            let pos = r
                .window
                .push_part(chunk.starts_segment, part, chunk.wallclock);
            if r.window.next_seq() != before && pos.msn > 0 {
                note_segment(r, pos.msn - 1, td);
            }
            pos.msn
        } else {
            let seq = r.window.push(
                chunk.duration,
                chunk.wallclock,
                chunk.starts_segment,
                chunk.data,
            );
            note_segment(r, seq, td);
            seq
        };
        // The previous broadcast's segments are hidden once this one fills the window, and
        // forgotten once it has also filled the retention behind it (HLS2 §6.2.2).
        if r.carried.is_some()
            && r.window.next_seq() - st.first_seq
                >= (self.cfg.listed_segments() + self.cfg.retain_segments) as u64
        {
            r.carried = None;
        }
        r.changed.send_modify(|v| *v += 1);
        let trimmed_before = st.trimmed_segments;
        enforce_budget(
            st,
            stream,
            self.cfg.stream_memory_bytes(),
            self.spill.as_ref(),
        );
        metrics::add(
            &self.metrics.segments_trimmed,
            st.trimmed_segments - trimmed_before,
        );
        delete_dropped(st, self.spill.as_ref());
        st.version += 1;
        st.changed_at = SystemTime::now();
        if let Some(lag) = chunk_lag {
            if st.lags.len() == LAG_SAMPLES {
                st.lags.pop_front();
            }
            st.lags
                .push_back(lag.as_micros().min(u128::from(u32::MAX)) as u32);
        }
        refresh_master(st);
        if st.master.is_some() && st.first_playable.is_none() {
            st.first_playable = Some(Instant::now());
            // Every media playlist is released at once: wake those parked on any of them.
            for r in st.renditions.values() {
                r.changed.send_modify(|v| *v += 1);
            }
        }
        Ok(seq)
    }

    /// The publisher is gone: every playlist gets `EXT-X-ENDLIST`; everything stays served
    /// for the grace period.
    pub fn end(&self, stream: &str, now: Instant) {
        let mut map = self.lock();
        if let Some(st) = map.get_mut(stream)
            && st.ended_at.is_none()
        {
            st.ended_at = Some(now);
            let td = st.target_duration;
            for r in st.renditions.values_mut() {
                if let Some(seq) = r.window.open().map(|o| o.seq) {
                    r.window.close();
                    note_segment(r, seq, td);
                }
                r.changed.send_modify(|v| *v += 1);
            }
            st.version += 1;
            st.changed_at = SystemTime::now();
            refresh_master(st);
        }
    }

    /// Forgets ended streams whose grace period is over; returns their names.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let grace = self.cfg.grace_period;
        let mut map = self.lock();
        let gone: Vec<String> = map
            .iter()
            .filter(|(_, s)| s.ended_at.is_some_and(|t| now.duration_since(t) >= grace))
            .map(|(k, _)| k.clone())
            .collect();
        let mut cont = self.continuity.lock().unwrap_or_else(|p| p.into_inner());
        for k in &gone {
            if let Some(st) = map.remove(k) {
                self.forget_files(k, &st);
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
        if let Some(sp) = &self.spill
            && st.spilled_segments > 0
            && !sp.send(Job::DeleteDir(sp.stream_dir(stream, &st.epoch)))
        {
            warn!(stream, "spill queue full: broadcast directory left behind");
        }
    }

    /// The multivariant playlist, once at least one video rung has a segment.
    pub fn master(&self, stream: &str) -> Option<Doc> {
        self.lock().get(stream)?.master.clone()
    }

    /// A media playlist, once the rendition has media: full, or a delta update when
    /// `skip` (`_HLS_skip=YES`, LL-HLS only, ignored after ENDLIST).
    pub fn media_playlist(&self, stream: &str, rendition: &str, skip: bool) -> Option<Doc> {
        let mut map = self.lock();
        let st = map.get_mut(stream)?;
        render_media(
            st,
            rendition,
            self.ll.as_ref(),
            skip,
            self.cfg.listed_segments(),
        )
    }

    /// The multivariant playlist of the MPEG-TS variants.
    pub fn ts_master(&self, stream: &str) -> Option<Doc> {
        let mut map = self.lock();
        let st = map.get_mut(stream)?;
        if let Some((v, doc)) = &st.ts_master
            && *v == st.version
        {
            return Some(doc.clone());
        }
        let text = render_master(st, true)?;
        // Same text, same entity tag and modification time (as for the fMP4 master).
        let doc = match st.ts_master.take() {
            Some((_, doc)) if doc.body == text => doc,
            _ => Doc::new(text, SystemTime::now()),
        };
        st.ts_master = Some((st.version, doc.clone()));
        Some(doc)
    }

    /// The MPEG-TS media playlist of a video rendition.
    pub fn ts_playlist(&self, stream: &str, rendition: &str) -> Option<Doc> {
        render_ts_media(self.lock().get_mut(stream)?, rendition)
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
        let map = self.lock();
        let st = map.get(stream).filter(|st| st.epoch == epoch)?;
        let r = st.renditions.get(rendition)?;
        if !matches!(r.info.kind, RenditionKind::Video { .. }) {
            return None;
        }
        let video = r.window.get(seq)?;
        if !audio_covers(st, video) {
            return None;
        }
        let (from, to) = (
            video.wallclock.checked_sub(TS_AUDIO_SLACK)?,
            segment_end(video) + TS_AUDIO_SLACK,
        );
        let audio = match st.renditions.values().find(|a| a.is_audio()) {
            None => None,
            Some(a) => {
                let bodies: Vec<SegmentBody> = a
                    .window
                    .held()
                    .filter(|s| s.wallclock < to && segment_end(s) > from)
                    .map(segment_body)
                    .collect();
                // The stream has audio but none is held for this time any more: better a
                // 404 than a silent segment a cache keeps for a year.
                if bodies.is_empty() {
                    return None;
                }
                Some((a.init.clone(), bodies))
            }
        };
        Some(TsSources {
            video: (r.init.clone(), segment_body(video)),
            audio,
            ttl: self.segment_ttl(st, &r.window, seq),
        })
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
        let map = self.lock();
        let Some(st) = map.get(stream) else {
            return Readiness::NotFound;
        };
        let Some(r) = st.renditions.get(rendition) else {
            return Readiness::NotFound;
        };
        if st.ended_at.is_some() || (st.master.is_some() && r.window.reached(msn, part)) {
            return Readiness::Ready;
        }
        if let Some(pos) = r.window.position() {
            if msn > pos.msn + 2 {
                return Readiness::TooFar;
            }
            if let (Some(ll), Some(want)) = (self.ll.as_ref(), part) {
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
    pub fn part(
        &self,
        stream: &str,
        rendition: &str,
        epoch: &str,
        msn: u64,
        index: usize,
    ) -> Option<Bytes> {
        let map = self.lock();
        let st = map.get(stream)?;
        let r = st.renditions.get(rendition)?;
        let part = if st.epoch == epoch {
            r.window.part(msn, index)?
        } else {
            r.carried.as_ref()?.get(epoch, msn)?.parts.get(index)?
        };
        Some(part.data.clone())
    }

    /// The part the preload hint names (LL-HLS only).
    pub fn next_part(&self, stream: &str, rendition: &str) -> Option<(u64, usize)> {
        let ll = self.ll.as_ref()?;
        let map = self.lock();
        let st = map.get(stream)?;
        if st.ended_at.is_some() {
            return None;
        }
        let r = st.renditions.get(rendition)?;
        Some(llhls::next_part(
            &r.window,
            ll.parts_per_segment,
            r.next_starts,
        ))
    }

    /// Records the publisher's keyframe figures.
    pub fn set_keyframes(&self, stream: &str, stats: KeyframeStats) {
        if let Some(st) = self.lock().get_mut(stream) {
            st.keyframes = Some(stats);
        }
    }

    /// Attaches the status handles of a broadcast's outputs (shown in `/api/streams`).
    pub fn set_outputs(&self, stream: &str, outputs: Vec<OutputStatus>) {
        if let Some(st) = self.lock().get_mut(stream) {
            st.outputs = outputs;
        }
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE` of the current broadcast of `stream`.
    pub fn discontinuity_sequence(&self, stream: &str) -> u64 {
        self.lock().get(stream).map_or(0, |s| s.discontinuity_seq)
    }

    /// Whether `epoch` is the current broadcast of `stream`.
    pub fn is_epoch(&self, stream: &str, epoch: &str) -> bool {
        self.lock().get(stream).is_some_and(|s| s.epoch == epoch)
    }

    /// An init segment of the given epoch.
    pub fn init_segment(&self, stream: &str, rendition: &str, epoch: &str) -> Option<Bytes> {
        let map = self.lock();
        let st = map.get(stream)?;
        let r = st.renditions.get(rendition)?;
        if st.epoch == epoch {
            return Some(r.init.clone());
        }
        r.carried
            .as_ref()
            .filter(|c| c.epoch == epoch)
            .map(|c| c.init.clone())
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
        let map = self.lock();
        let st = map.get(stream)?;
        let r = st.renditions.get(rendition)?;
        if st.epoch != epoch {
            // The previous broadcast's, while carried (in memory, final: no expiry known).
            let seg = r.carried.as_ref()?.get(epoch, seq)?;
            return Some((SegmentBody::Memory(seg.data.clone()), None));
        }
        let seg = r.window.get(seq)?;
        Some((segment_body(seg), self.segment_ttl(st, &r.window, seq)))
    }

    /// How long segment `seq` of `window` stays downloadable, while the stream is live
    /// (`Expires`, HLS2 §6.2.2): it is dropped once `window + retain` newer segments exist.
    fn segment_ttl(&self, st: &StreamState, window: &Window, seq: u64) -> Option<Duration> {
        let keep = (self.cfg.listed_segments() + self.cfg.retain_segments) as u64 + 1;
        let left = (seq + keep).saturating_sub(window.next_seq());
        st.ended_at
            .is_none()
            .then(|| self.cfg.segment_duration * left as u32)
    }

    /// Whether `stream` is live (published and not ended).
    pub fn is_live(&self, stream: &str) -> bool {
        self.lock()
            .get(stream)
            .is_some_and(|s| s.ended_at.is_none())
    }

    /// Every stream, for `/api/streams`.
    pub fn summaries(&self, now: Instant) -> Vec<StreamSummary> {
        let map = self.lock();
        let mut out: Vec<StreamSummary> = map
            .iter()
            .map(|(name, st)| StreamSummary {
                name: name.clone(),
                state: if st.ended_at.is_some() {
                    "ended"
                } else {
                    "live"
                },
                epoch: st.epoch.clone(),
                uptime_s: st
                    .ended_at
                    .unwrap_or(now)
                    .duration_since(st.started_at)
                    .as_secs_f64(),
                ingest: st.ingest.clone(),
                renditions: st
                    .renditions
                    .values()
                    .map(|r| {
                        let (width, height) = match r.info.kind {
                            RenditionKind::Video { width, height, .. } => {
                                (Some(width), Some(height))
                            }
                            RenditionKind::Audio { .. } => (None, None),
                        };
                        RenditionSummary {
                            name: r.info.name.clone(),
                            codecs: r.info.codecs.clone(),
                            width,
                            height,
                            segments: r.window.next_seq(),
                            average_bps: r.average_bps(),
                        }
                    })
                    .collect(),
                master: format!("/hls/{name}/master.m3u8"),
                lag_ms: lag_summary(&st.lags),
                keyframes: st.keyframes.clone(),
                outputs: st.outputs.iter().map(OutputStatus::snapshot).collect(),
                memory_bytes: st.renditions.values().map(|r| r.window.bytes()).sum(),
                trimmed_segments: st.trimmed_segments,
                spilled_segments: st.spilled_segments,
                first_playable_s: st
                    .first_playable
                    .map(|t| t.duration_since(st.started_at).as_secs_f64()),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Wall-clock start of a stream (for the API).
    pub fn started(&self, stream: &str) -> Option<SystemTime> {
        self.lock().get(stream).map(|s| s.started)
    }
}

/// Accounts a segment that just completed (its bitrate feeds BANDWIDTH).
fn note_segment(r: &mut RenditionState, seq: u64, td: u64) {
    if let Some(seg) = r.window.get(seq) {
        let secs = seg.duration.as_secs_f64();
        if secs > 0.0 {
            r.peak_bps = r.peak_bps.max((seg.data.len() as f64 * 8.0 / secs) as u64);
        }
        if seg.duration.as_secs_f64().round() as u64 > td {
            tracing::warn!(
                rendition = %r.info.name,
                duration_ms = seg.duration.as_millis() as u64,
                target = td,
                "segment longer than the target duration (late keyframe?)"
            );
        }
    }
}

fn live<'a>(
    map: &'a mut HashMap<String, StreamState>,
    stream: &str,
) -> Result<&'a mut StreamState, StoreError> {
    match map.get_mut(stream) {
        Some(st) if st.ended_at.is_none() => Ok(st),
        _ => Err(StoreError::NotLive(stream.to_string())),
    }
}

/// Re-renders the multivariant playlist; keeps the previous `Doc` (entity tag and
/// modification time) when the text did not change.
fn refresh_master(st: &mut StreamState) {
    let Some(text) = render_master(st, false) else {
        return;
    };
    if st.master.is_none() {
        release(st);
    }
    if st.master.as_ref().is_some_and(|m| m.body == text) {
        return;
    }
    st.master = Some(Doc::new(text, SystemTime::now()));
}

/// The stream's playlists are about to be served for the first time: fix the target
/// duration, which must never change (HLS2 §6.2.1) and must be at least every segment's
/// duration rounded (§4.4.3.1). The transcoded rungs cut on the configured grid; the
/// passthrough rung can only cut on the publisher's keyframes, and a publisher that ignores
/// keyframe requests (OBS) has a GOP of its own, seen by now in the passthrough rung's first
/// whole segment (from its first keyframe to its second). So the target is the configured
/// one or that GOP rounded up, whichever is longer. A publisher whose GOP grows later still
/// gets a warning per long segment (`note_segment`).
fn release(st: &mut StreamState) {
    let longest = st
        .renditions
        .values()
        .flat_map(|r| r.window.segments())
        .filter(|s| s.seq >= st.first_seq)
        .map(|s| s.duration)
        .max()
        .unwrap_or_default();
    let td = playlist::target_duration(longest);
    if td > st.target_duration {
        tracing::info!(
            configured = st.target_duration,
            target = td,
            longest_ms = longest.as_millis() as u64,
            "target duration raised to the publisher's keyframe interval"
        );
        st.target_duration = td;
    }
}

fn render_master(st: &StreamState, ts: bool) -> Option<Bytes> {
    let playlist_name = if ts { TS_PLAYLIST } else { "index.m3u8" };
    let entry = |r: &'_ RenditionState| -> Option<(bool, String)> {
        // Only renditions whose media playlist is served (a whole segment listed).
        if !r.window.has_complete() {
            return None;
        }
        Some((
            matches!(r.info.kind, RenditionKind::Video { .. }),
            format!("{}/{playlist_name}", r.info.name),
        ))
    };
    // All or nothing: players (hls.js, Safari) read the multivariant playlist once and a
    // CDN caches it, so a first version without the audio group or a rung would stay with
    // early viewers for the whole session. Until every planned rendition has a whole
    // segment the answer is a 404 (no-store), then the set is fixed.
    let expected = st.expected.as_ref()?;
    let mut video: Vec<(&RenditionState, String)> = Vec::new();
    let mut audio: Option<(&RenditionState, String)> = None;
    for name in expected {
        let r = st.renditions.get(name)?;
        match entry(r)? {
            (true, uri) => video.push((r, uri)),
            (false, uri) => audio = Some((r, uri)),
        }
    }
    if video.is_empty() {
        return None;
    }
    // Highest resolution first: players that ignore BANDWIDTH start with the first
    // variant; hls.js picks by bandwidth estimate anyway.
    video.sort_by_key(|(r, _)| match r.info.kind {
        RenditionKind::Video { height, .. } => std::cmp::Reverse(height),
        RenditionKind::Audio { .. } => std::cmp::Reverse(0),
    });
    fn to_entry<'a>((r, uri): &(&'a RenditionState, String)) -> MasterEntry<'a> {
        MasterEntry {
            info: &r.info,
            uri: uri.clone(),
            peak_bps: r.peak_bps,
            average_bps: r.average_bps(),
        }
    }
    let video_entries: Vec<MasterEntry<'_>> = video.iter().map(to_entry).collect();
    let audio_entry = audio.as_ref().map(to_entry);
    Some(if ts {
        playlist::master_muxed(&video_entries, audio_entry.as_ref())
    } else {
        playlist::master(&video_entries, audio_entry.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HlsConfig {
        HlsConfig {
            window_segments: 3,
            retain_segments: 2,
            ..HlsConfig::default()
        }
    }

    fn info(name: &str, video: bool) -> RenditionInfo {
        RenditionInfo {
            name: name.into(),
            kind: if video {
                RenditionKind::Video {
                    width: 640,
                    height: 360,
                    fps: 30.0,
                }
            } else {
                RenditionKind::Audio {
                    channels: 2,
                    rate: 48_000,
                    language: "und".into(),
                }
            },
            codecs: if video { "avc1.64001e" } else { "mp4a.40.2" }.into(),
            bitrate: 600_000,
        }
    }

    fn ingest() -> IngestSummary {
        IngestSummary {
            signaling: "whip",
            video_codec: "H264".into(),
            audio: true,
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_segment_name(&segment_name("ab12", 42)),
            Some(("ab12", 42))
        );
        assert_eq!(parse_init_name(&init_name("ab12")), Some("ab12"));
        assert_eq!(parse_segment_name("seg-x.m4s"), None);
        assert_eq!(parse_segment_name("seg-a-b.m4s"), None);
        assert_eq!(parse_init_name("init.mp4"), None);
    }

    fn chunk(starts: bool, ms: u64, data: &'static [u8]) -> Chunk {
        Chunk {
            starts_segment: starts,
            next_starts_segment: None,
            duration: Duration::from_millis(ms),
            wallclock: SystemTime::UNIX_EPOCH,
            lag: Some(Duration::from_millis(ms / 4)),
            data: Bytes::from_static(data),
        }
    }

    fn text(d: Option<Doc>) -> String {
        String::from_utf8(d.expect("playlist").body.to_vec()).expect("utf8")
    }

    #[test]
    fn lifecycle_plain_hls() {
        let cfg = HlsConfig {
            part_duration: Duration::ZERO,
            ..cfg()
        };
        let s = HlsStore::new(cfg.clone());
        assert!(s.ll().is_none());
        let t0 = Instant::now();
        let epoch = s.begin("cam", ingest(), t0);
        assert!(s.master("cam").is_none());
        assert_eq!(
            s.publish("cam", "360p", chunk(true, 2000, b"")),
            Err(StoreError::NoInit("360p".into()))
        );
        s.init("cam", info("360p", true), Bytes::from_static(b"init"))
            .expect("init");
        s.init("cam", info("audio", false), Bytes::from_static(b"ainit"))
            .expect("init");
        assert!(
            s.media_playlist("cam", "360p", false).is_none(),
            "no segment yet"
        );
        s.expect("cam", vec!["audio".into(), "360p".into()]);
        for _ in 0..6 {
            s.publish("cam", "360p", chunk(true, 2000, b"0123456789"))
                .expect("segment");
        }
        // Video is playable, audio is not yet: no multivariant playlist (it would be one
        // without the audio group, and players read it once).
        assert!(s.master("cam").is_none(), "master without its audio");
        s.publish("cam", "audio", chunk(true, 2000, b"a"))
            .expect("segment");
        let master = text(s.master("cam"));
        assert!(master.contains("360p/index.m3u8") && master.contains("audio/index.m3u8"));
        let pl = text(s.media_playlist("cam", "360p", false));
        assert!(pl.contains(&segment_name(&epoch, 5)));
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3"));
        assert!(!pl.contains("EXT-X-PART"), "plain HLS has no parts");
        // Retired segment 1 still downloadable, 0 gone, wrong epoch unknown.
        assert!(s.media_segment("cam", "360p", &epoch, 1).is_some());
        assert!(s.media_segment("cam", "360p", &epoch, 0).is_none());
        assert!(s.media_segment("cam", "360p", "other", 4).is_none());
        assert_eq!(
            s.init_segment("cam", "360p", &epoch).as_deref(),
            Some(&b"init"[..])
        );

        let sum = s.summaries(t0);
        assert_eq!(sum[0].state, "live");
        assert_eq!(sum[0].renditions.len(), 2);

        s.end("cam", t0);
        assert!(!s.is_live("cam"));
        assert!(text(s.media_playlist("cam", "360p", false)).contains("#EXT-X-ENDLIST"));
        assert!(s.publish("cam", "360p", chunk(true, 2000, b"")).is_err());
        assert!(s.expire(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(s.expire(t0 + cfg.grace_period), ["cam"]);
        assert!(s.master("cam").is_none());
    }

    #[test]
    fn target_duration_is_fixed_from_the_passthrough_gop_before_anything_is_served() {
        let cfg = HlsConfig {
            segment_duration: Duration::from_secs(1),
            part_duration: Duration::ZERO,
            ..cfg()
        };
        let s = HlsStore::new(cfg);
        s.begin("cam", ingest(), Instant::now());
        s.expect("cam", vec!["audio".into(), "360p".into(), "source".into()]);
        for name in ["360p", "source"] {
            s.init("cam", info(name, true), Bytes::from_static(b"i"))
                .expect("init");
        }
        s.init("cam", info("audio", false), Bytes::from_static(b"a"))
            .expect("init");
        for _ in 0..3 {
            s.publish("cam", "360p", chunk(true, 1000, b"v"))
                .expect("seg");
            s.publish("cam", "audio", chunk(true, 1000, b"a"))
                .expect("seg");
        }
        // The transcoded rung is complete, but nothing is served before every rendition is.
        assert!(s.media_playlist("cam", "360p", false).is_none());
        assert!(s.master("cam").is_none());
        // The publisher ignores keyframe requests: its first GOP is 2.2 s.
        s.publish("cam", "source", chunk(true, 2200, b"s"))
            .expect("seg");
        s.publish("cam", "source", chunk(true, 2200, b"s"))
            .expect("seg");
        assert!(s.master("cam").is_some());
        for name in ["360p", "source", "audio"] {
            let pl = text(s.media_playlist("cam", name, false));
            assert!(pl.contains("#EXT-X-TARGETDURATION:3\n"), "{name}: {pl}");
        }
    }

    #[test]
    fn dvr_window_lists_longer_and_the_memory_budget_trims_oldest_first() {
        let cfg = HlsConfig {
            part_duration: Duration::ZERO,
            dvr_window: Duration::from_secs(20),
            stream_memory_mib: 16,
            ..cfg()
        };
        assert_eq!(cfg.listed_segments(), 10, "20 s DVR / 2 s segments");
        let s = HlsStore::new(cfg);
        let t0 = Instant::now();
        s.begin("dvr", ingest(), t0);
        s.expect("dvr", vec!["audio".into(), "360p".into()]);
        s.init("dvr", info("360p", true), Bytes::from_static(b"i"))
            .expect("init");
        s.init("dvr", info("audio", false), Bytes::from_static(b"a"))
            .expect("init");
        let mib = Bytes::from(vec![7u8; 1 << 20]);
        // 8 segments of 1 MiB video + tiny audio: within budget, all listed (window 10).
        for _ in 0..8 {
            let mut c = chunk(true, 2000, b"");
            c.data = mib.clone();
            s.publish("dvr", "360p", c).expect("segment");
            s.publish("dvr", "audio", chunk(true, 2000, b"aa"))
                .expect("segment");
        }
        let pl = text(s.media_playlist("dvr", "360p", false));
        assert_eq!(pl.matches("#EXTINF").count(), 8);
        assert_eq!(s.summaries(t0)[0].trimmed_segments, 0);
        // 3 MiB segments: past 16 MiB the oldest go, and the playlist shows the shorter window.
        for _ in 0..6 {
            let mut c = chunk(true, 2000, b"");
            c.data = Bytes::from(vec![9u8; 3 << 20]);
            s.publish("dvr", "360p", c).expect("segment");
        }
        let sum = &s.summaries(t0)[0];
        assert!(sum.memory_bytes <= 16 << 20, "held {}", sum.memory_bytes);
        assert!(sum.trimmed_segments > 0);
        let pl = text(s.media_playlist("dvr", "360p", false));
        let listed = pl.matches("#EXTINF").count();
        assert!((3..10).contains(&listed), "{listed} listed\n{pl}");
        // The newest segment is always there; the media sequence only moved forward.
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:"));
        assert!(pl.contains(&segment_name(&sum.epoch, 13)));
    }

    #[test]
    fn disk_overflow_moves_the_oldest_segments_to_files_and_removes_them_with_the_stream() {
        let dir =
            std::env::temp_dir().join(format!("whipcast-spill-{:016x}", rand::random::<u64>()));
        let cfg = HlsConfig {
            part_duration: Duration::ZERO,
            dvr_window: Duration::from_secs(40),
            stream_memory_mib: 1,
            dvr_overflow: DvrOverflow::Disk,
            spill_directory: dir.clone(),
            ..cfg()
        };
        let s = HlsStore::new(cfg.clone());
        let t0 = Instant::now();
        let epoch = s.begin("dvr", ingest(), t0);
        s.expect("dvr", vec!["360p".into()]);
        s.init("dvr", info("360p", true), Bytes::from_static(b"i"))
            .expect("init");
        // 8 segments of 256 KiB: 2 MiB against a 1 MiB budget.
        for i in 0..8u8 {
            let mut c = chunk(true, 2000, b"");
            c.data = Bytes::from(vec![i; 256 << 10]);
            s.publish("dvr", "360p", c).expect("segment");
        }
        let wait = |cond: &dyn Fn() -> bool| {
            let end = Instant::now() + Duration::from_secs(5);
            while !cond() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            cond()
        };
        assert!(
            wait(&|| s.summaries(t0)[0].spilled_segments >= 4),
            "spilled {}",
            s.summaries(t0)[0].spilled_segments
        );
        let sum = &s.summaries(t0)[0];
        assert!(sum.memory_bytes <= 1 << 20, "held {}", sum.memory_bytes);
        assert_eq!(sum.trimmed_segments, 0, "disk mode lists everything");
        // Still listed, and served from the file with the same bytes.
        let pl = text(s.media_playlist("dvr", "360p", false));
        assert_eq!(pl.matches("#EXTINF").count(), 8);
        match s
            .media_segment("dvr", "360p", &epoch, 0)
            .expect("segment 0")
        {
            (SegmentBody::File(path), _) => {
                assert_eq!(
                    std::fs::read(path.as_path()).expect("file"),
                    vec![0u8; 256 << 10]
                );
            }
            (SegmentBody::Memory(_), _) => panic!("segment 0 should be on disk"),
        }
        // The newest segment stays in memory.
        assert!(matches!(
            s.media_segment("dvr", "360p", &epoch, 7),
            Some((SegmentBody::Memory(_), _))
        ));
        // The stream goes: so does its directory.
        s.end("dvr", t0);
        assert_eq!(s.expire(t0 + cfg.grace_period), ["dvr"]);
        let broadcast_dir = dir.join("dvr").join(&epoch);
        assert!(wait(&|| !broadcast_dir.exists()), "{broadcast_dir:?} left");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ll_parts_reports_readiness_and_hints() {
        let cfg = HlsConfig {
            segment_duration: Duration::from_secs(1),
            part_duration: Duration::from_millis(200),
            window_segments: 10,
            ..HlsConfig::default()
        };
        let s = HlsStore::new(cfg);
        let ll = *s.ll().expect("LL on");
        assert_eq!(ll.parts_per_segment, 5);
        assert_eq!(ll.part_target, Duration::from_millis(222));
        assert_eq!(ll.advance_part_limit(), 13);
        let epoch = s.begin("cam", ingest(), Instant::now());
        s.expect("cam", vec!["audio".into(), "360p".into()]);
        s.init("cam", info("360p", true), Bytes::from_static(b"i"))
            .expect("init");
        s.init("cam", info("audio", false), Bytes::from_static(b"a"))
            .expect("init");
        // Nothing yet: a blocking request for msn 0 waits.
        assert!(matches!(
            s.readiness("cam", "360p", 0, Some(0)),
            Readiness::Wait(_)
        ));
        let Readiness::Wait(rx) = s.readiness("cam", "360p", 0, Some(1)) else {
            panic!("must wait");
        };
        for i in 0..7u64 {
            s.publish("cam", "360p", chunk(i % 5 == 0, 200, b"v"))
                .expect("part");
        }
        s.publish("cam", "audio", chunk(true, 213, b"a"))
            .expect("part");
        s.publish("cam", "audio", chunk(true, 213, b"a"))
            .expect("part");
        assert!(
            rx.has_changed().expect("sender alive"),
            "parked request is woken"
        );
        // 7 parts: segment 0 complete (5 parts), segment 1 open with 2.
        assert!(matches!(
            s.readiness("cam", "360p", 0, None),
            Readiness::Ready
        ));
        assert!(matches!(
            s.readiness("cam", "360p", 1, Some(1)),
            Readiness::Ready
        ));
        assert!(matches!(
            s.readiness("cam", "360p", 1, Some(2)),
            Readiness::Wait(_)
        ));
        assert!(matches!(
            s.readiness("cam", "360p", 1, None),
            Readiness::Wait(_)
        ));
        // More than two segments ahead, or past the advance part limit: 400.
        assert!(matches!(
            s.readiness("cam", "360p", 4, None),
            Readiness::TooFar
        ));
        assert!(matches!(
            s.readiness("cam", "360p", 3, Some(4)),
            Readiness::Wait(_)
        ));
        assert!(matches!(
            s.readiness("cam", "360p", 3, Some(6)),
            Readiness::TooFar
        ));
        assert!(matches!(
            s.readiness("cam", "nope", 0, None),
            Readiness::NotFound
        ));
        assert_eq!(s.next_part("cam", "360p"), Some((1, 2)));
        assert_eq!(
            s.part("cam", "360p", &epoch, 1, 1).as_deref(),
            Some(&b"v"[..])
        );
        let (seg0, ttl) = s
            .media_segment("cam", "360p", &epoch, 0)
            .expect("segment 0");
        assert!(matches!(seg0, SegmentBody::Memory(b) if b.as_ref() == b"vvvvv"));
        // Window 10 + retain 6 (default): segment 0 stays for 16 more segments (1 s each)
        // after segment 1 began; next_seq is 2.
        assert_eq!(ttl, Some(Duration::from_secs(15)));

        let pl = text(s.media_playlist("cam", "360p", false));
        assert!(pl.contains("#EXT-X-PART-INF:PART-TARGET=0.222"), "{pl}");
        assert!(pl.contains(&format!("URI=\"{}\"", part_name(&epoch, 1, 1))));
        assert!(pl.contains(&format!(
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            part_name(&epoch, 1, 2)
        )));
        assert!(
            pl.contains(
                "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=1,LAST-PART=0"
            ),
            "{pl}"
        );
        let apl = text(s.media_playlist("cam", "audio", false));
        assert!(
            apl.contains(
                "#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=1,LAST-PART=1"
            ),
            "{apl}"
        );
        // Audio parts are always independent.
        assert!(apl.contains("INDEPENDENT=YES"));

        // A new part invalidates the cached playlists of the other renditions (reports).
        s.publish("cam", "360p", chunk(false, 200, b"v"))
            .expect("part");
        let apl = text(s.media_playlist("cam", "audio", false));
        assert!(apl.contains("LAST-MSN=1,LAST-PART=2"), "{apl}");

        let sum = s.summaries(Instant::now());
        assert_eq!(sum[0].lag_ms.samples, 10);
        assert_eq!(sum[0].lag_ms.p50, 50.0);
        assert!(sum[0].first_playable_s.is_some());
        // End: the open segment is completed, hints stop, parameters are ignored.
        s.end("cam", Instant::now());
        assert!(matches!(
            s.readiness("cam", "360p", 9, Some(3)),
            Readiness::Ready
        ));
        assert_eq!(s.next_part("cam", "360p"), None);
        let pl = text(s.media_playlist("cam", "360p", true));
        assert!(pl.contains(&segment_name(&epoch, 1)) && pl.contains("#EXT-X-ENDLIST"));
        assert!(!pl.contains("PRELOAD-HINT") && !pl.contains("EXT-X-SKIP"));
    }

    #[test]
    fn names_of_parts_round_trip() {
        assert_eq!(
            parse_part_name(&part_name("ab12", 7, 3)),
            Some(("ab12", 7, 3))
        );
        assert_eq!(parse_part_name("part-ab12-7.m4s"), None);
        assert_eq!(parse_part_name("part-ab12-7.x.m4s"), None);
    }

    #[test]
    fn republish_continues_numbering_with_a_discontinuity() {
        let cfg = HlsConfig {
            part_duration: Duration::ZERO,
            ..cfg()
        };
        let s = HlsStore::new(cfg.clone());
        let t0 = Instant::now();
        let broadcast = |n: usize| {
            let epoch = s.begin("cam", ingest(), t0);
            s.expect("cam", vec!["360p".into()]);
            s.init("cam", info("360p", true), Bytes::from_static(b"i"))
                .expect("init");
            for _ in 0..n {
                s.publish("cam", "360p", chunk(true, 2000, b"x"))
                    .expect("segment");
            }
            epoch
        };
        let e1 = broadcast(4);
        s.end("cam", t0);
        // Re-published within the grace period: numbers continue (HLS2 §6.2.2); the
        // previous broadcast's last segments fill the window before an EXT-X-DISCONTINUITY
        // (window 3: old segment 3, then new 4 and 5), so players need no reload.
        let e2 = broadcast(2);
        let pl = text(s.media_playlist("cam", "360p", false));
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{pl}");
        assert!(!pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE"), "{pl}");
        let order: Vec<&str> = pl
            .lines()
            .filter(|l| {
                l.starts_with("#EXT-X-MAP") || l.starts_with("seg-") || l.starts_with("#EXT-X-DISC")
            })
            .collect();
        assert_eq!(
            order,
            [
                format!("#EXT-X-MAP:URI=\"{}\"", init_name(&e1)).as_str(),
                &segment_name(&e1, 3),
                // m3u8-rs writes a segment's MAP before its DISCONTINUITY; both tags apply
                // to the segment that follows them, in either order (HLS2 §4.4.4).
                &format!("#EXT-X-MAP:URI=\"{}\"", init_name(&e2)),
                "#EXT-X-DISCONTINUITY",
                &segment_name(&e2, 4),
                &segment_name(&e2, 5),
            ]
        );
        // The previous broadcast's objects stay served under their own names.
        assert!(s.media_segment("cam", "360p", &e1, 3).is_some());
        assert_eq!(
            s.init_segment("cam", "360p", &e1).as_deref(),
            Some(&b"i"[..])
        );
        // A third new segment fills the window: the discontinuity leaves the playlist.
        s.publish("cam", "360p", chunk(true, 2000, b"x"))
            .expect("segment");
        let pl = text(s.media_playlist("cam", "360p", false));
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:4"), "{pl}");
        assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{pl}");
        assert!(
            !pl.contains("#EXT-X-DISCONTINUITY\n") && !pl.contains(&e1),
            "{pl}"
        );
        assert!(
            s.media_segment("cam", "360p", &e1, 3).is_some(),
            "still retained"
        );
        // Window 3 + retain 2 new segments: the previous broadcast is forgotten.
        for _ in 0..2 {
            s.publish("cam", "360p", chunk(true, 2000, b"x"))
                .expect("segment");
        }
        assert!(s.media_segment("cam", "360p", &e1, 3).is_none());
        assert!(s.init_segment("cam", "360p", &e1).is_none());
        // After expiry too.
        s.end("cam", t0);
        assert_eq!(s.expire(t0 + cfg.grace_period), ["cam"]);
        let e3 = broadcast(1);
        let pl = text(s.media_playlist("cam", "360p", false));
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:9"), "{pl}");
        assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2"), "{pl}");
        assert!(pl.contains(&segment_name(&e3, 9)));
        assert!(
            !pl.contains("#EXT-X-DISCONTINUITY\n"),
            "nothing carried after expiry"
        );
    }

    #[test]
    fn republish_gets_new_epoch() {
        let s = HlsStore::new(cfg());
        let e1 = s.begin("cam", ingest(), Instant::now());
        s.end("cam", Instant::now());
        let e2 = s.begin("cam", ingest(), Instant::now());
        assert_ne!(e1, e2);
        assert!(s.is_live("cam"));
    }
}
