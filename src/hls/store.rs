//! The in-memory origin store: every stream's renditions, windows and rendered playlists.
//!
//! A read-mostly store behind one `std::sync::Mutex` (mini-redis `Db` pattern): writers are
//! the broadcast tasks (a few times per second), readers the HTTP handlers. Playlists are
//! rendered once per change and served as shared `Bytes`, so a read is a map lookup and a
//! reference-count bump. The lock is never held across `.await` (there is none inside).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;

use super::playlist::{self, MasterEntry, MediaView};
use super::window::Window;
use crate::config::HlsConfig;
use crate::media::{RenditionInfo, RenditionKind};

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct HlsStore {
    inner: Arc<Mutex<HashMap<String, StreamState>>>,
    cfg: Arc<HlsConfig>,
}

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
    master: Option<Bytes>,
}

struct RenditionState {
    info: RenditionInfo,
    init: Bytes,
    window: Window,
    playlist: Bytes,
    peak_bps: u64,
    total_bytes: u64,
    total_duration: Duration,
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

    fn render(&mut self, epoch: &str, target_duration: u64, ended: bool) {
        let init_uri = init_name(epoch);
        let seg_uri = |seq: u64| segment_name(epoch, seq);
        self.playlist = playlist::media(&MediaView {
            target_duration,
            window: &self.window,
            init_uri: &init_uri,
            segment_uri: &seg_uri,
            ended,
        });
    }
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
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            cfg: Arc::new(cfg),
        }
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

    /// Starts a broadcast of `stream`, replacing an ended one of the same name. Returns the
    /// new epoch.
    pub fn begin(&self, stream: &str, ingest: IngestSummary, now: Instant) -> String {
        let epoch = format!("{:08x}", rand::random::<u32>());
        let state = StreamState {
            epoch: epoch.clone(),
            started: SystemTime::now(),
            started_at: now,
            ended_at: None,
            target_duration: playlist::target_duration(self.cfg.segment_duration),
            ingest,
            renditions: BTreeMap::new(),
            master: None,
        };
        self.lock().insert(stream.to_string(), state);
        epoch
    }

    /// Records a rendition's init segment.
    pub fn init(&self, stream: &str, info: RenditionInfo, data: Bytes) -> Result<(), StoreError> {
        let mut map = self.lock();
        let st = live(&mut map, stream)?;
        let cfg = &self.cfg;
        let name = info.name.clone();
        let epoch = st.epoch.clone();
        let td = st.target_duration;
        let r = st.renditions.entry(name).or_insert_with(|| RenditionState {
            info: info.clone(),
            init: Bytes::new(),
            window: Window::new(cfg.window_segments, cfg.retain_segments),
            playlist: Bytes::new(),
            peak_bps: 0,
            total_bytes: 0,
            total_duration: Duration::ZERO,
        });
        r.info = info;
        r.init = data;
        r.render(&epoch, td, false);
        Ok(())
    }

    /// Publishes one segment; returns its sequence number.
    pub fn segment(
        &self,
        stream: &str,
        rendition: &str,
        duration: Duration,
        wallclock: SystemTime,
        independent: bool,
        data: Bytes,
    ) -> Result<u64, StoreError> {
        let mut map = self.lock();
        let st = live(&mut map, stream)?;
        let epoch = st.epoch.clone();
        let td = st.target_duration;
        let r = st
            .renditions
            .get_mut(rendition)
            .ok_or_else(|| StoreError::NoInit(rendition.to_string()))?;
        if duration.as_secs_f64().round() as u64 > td {
            tracing::warn!(
                rendition,
                duration_ms = duration.as_millis() as u64,
                target = td,
                "segment longer than the target duration (late keyframe?)"
            );
        }
        let secs = duration.as_secs_f64();
        if secs > 0.0 {
            r.peak_bps = r.peak_bps.max((data.len() as f64 * 8.0 / secs) as u64);
        }
        r.total_bytes += data.len() as u64;
        r.total_duration += duration;
        let seq = r.window.push(duration, wallclock, independent, data);
        r.render(&epoch, td, false);
        st.master = render_master(st);
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
            let epoch = st.epoch.clone();
            let td = st.target_duration;
            for r in st.renditions.values_mut() {
                r.render(&epoch, td, true);
            }
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
        for k in &gone {
            map.remove(k);
        }
        gone
    }

    /// The multivariant playlist, once at least one video rung has a segment.
    pub fn master(&self, stream: &str) -> Option<Bytes> {
        self.lock().get(stream)?.master.clone()
    }

    /// A media playlist, once the rendition has its init segment.
    pub fn media_playlist(&self, stream: &str, rendition: &str) -> Option<Bytes> {
        let map = self.lock();
        let r = map.get(stream)?.renditions.get(rendition)?;
        (!r.window.is_empty()).then(|| r.playlist.clone())
    }

    /// An init segment of the given epoch.
    pub fn init_segment(&self, stream: &str, rendition: &str, epoch: &str) -> Option<Bytes> {
        let map = self.lock();
        let st = map.get(stream)?;
        if st.epoch != epoch {
            return None;
        }
        Some(st.renditions.get(rendition)?.init.clone())
    }

    /// A media segment of the given epoch, listed or retired.
    pub fn media_segment(
        &self,
        stream: &str,
        rendition: &str,
        epoch: &str,
        seq: u64,
    ) -> Option<Bytes> {
        let map = self.lock();
        let st = map.get(stream)?;
        if st.epoch != epoch {
            return None;
        }
        Some(st.renditions.get(rendition)?.window.get(seq)?.data.clone())
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

fn live<'a>(
    map: &'a mut HashMap<String, StreamState>,
    stream: &str,
) -> Result<&'a mut StreamState, StoreError> {
    match map.get_mut(stream) {
        Some(st) if st.ended_at.is_none() => Ok(st),
        _ => Err(StoreError::NotLive(stream.to_string())),
    }
}

fn render_master(st: &StreamState) -> Option<Bytes> {
    let entry = |r: &'_ RenditionState| -> Option<(bool, String)> {
        if r.window.is_empty() {
            return None;
        }
        Some((
            matches!(r.info.kind, RenditionKind::Video { .. }),
            format!("{}/index.m3u8", r.info.name),
        ))
    };
    let mut video: Vec<(&RenditionState, String)> = Vec::new();
    let mut audio: Option<(&RenditionState, String)> = None;
    for r in st.renditions.values() {
        match entry(r) {
            Some((true, uri)) => video.push((r, uri)),
            Some((false, uri)) => audio = Some((r, uri)),
            None => {}
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
    Some(playlist::master(&video_entries, audio_entry.as_ref()))
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

    #[test]
    fn lifecycle() {
        let s = HlsStore::new(cfg());
        let t0 = Instant::now();
        let epoch = s.begin("cam", ingest(), t0);
        assert!(s.master("cam").is_none());
        assert_eq!(
            s.segment(
                "cam",
                "360p",
                Duration::from_secs(2),
                SystemTime::now(),
                true,
                Bytes::new()
            ),
            Err(StoreError::NoInit("360p".into()))
        );
        s.init("cam", info("360p", true), Bytes::from_static(b"init"))
            .expect("init");
        s.init("cam", info("audio", false), Bytes::from_static(b"ainit"))
            .expect("init");
        assert!(s.media_playlist("cam", "360p").is_none(), "no segment yet");
        for _ in 0..6 {
            s.segment(
                "cam",
                "360p",
                Duration::from_secs(2),
                SystemTime::now(),
                true,
                Bytes::from_static(b"0123456789"),
            )
            .expect("segment");
        }
        s.segment(
            "cam",
            "audio",
            Duration::from_secs(2),
            SystemTime::now(),
            true,
            Bytes::from_static(b"a"),
        )
        .expect("segment");
        let master = String::from_utf8(s.master("cam").expect("master").to_vec()).expect("utf8");
        assert!(master.contains("360p/index.m3u8") && master.contains("audio/index.m3u8"));
        let pl =
            String::from_utf8(s.media_playlist("cam", "360p").expect("pl").to_vec()).expect("utf8");
        assert!(pl.contains(&segment_name(&epoch, 5)));
        assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3"));
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
        let pl =
            String::from_utf8(s.media_playlist("cam", "360p").expect("pl").to_vec()).expect("utf8");
        assert!(pl.contains("#EXT-X-ENDLIST"));
        assert!(
            s.segment(
                "cam",
                "360p",
                Duration::from_secs(2),
                SystemTime::now(),
                true,
                Bytes::new()
            )
            .is_err()
        );
        assert!(s.expire(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(s.expire(t0 + cfg().grace_period), ["cam"]);
        assert!(s.master("cam").is_none());
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
