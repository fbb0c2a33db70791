//! Playlist text. The only module that names `m3u8_rs`. Pure: takes state, returns bytes.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, Map, MasterPlaylist, MediaPlaylist, MediaPlaylistType,
    MediaSegment, Resolution, VariantStream,
};

use super::llhls::Prelude;
use super::window::{Segment, Window};
use crate::media::{RenditionInfo, RenditionKind};

/// `EXT-X-MAP` in a media playlist needs protocol version 6 (HLS2 §8).
const MEDIA_VERSION: usize = 6;
/// Without `EXT-X-MAP` (MPEG-TS segments) version 3 does (decimal `EXTINF`, HLS2 §8): the
/// players that need TS are the old ones.
const TS_VERSION: usize = 3;

/// The audio group every video variant refers to.
pub const AUDIO_GROUP: &str = "aac";

/// Input for one media playlist.
pub struct MediaView<'a> {
    /// `EXT-X-TARGETDURATION`, fixed for the stream's life (HLS2 §6.2.1).
    pub target_duration: u64,
    /// The segments.
    pub window: &'a Window,
    /// URI of the init segment, relative to the playlist; `None` for MPEG-TS segments.
    pub init_uri: Option<&'a str>,
    /// URI of segment `seq`, relative to the playlist.
    pub segment_uri: &'a dyn Fn(u64) -> String,
    /// Earlier broadcasts of this name (`EXT-X-DISCONTINUITY-SEQUENCE`).
    pub discontinuity_sequence: u64,
    /// The previous broadcast's last segments, listed before an `EXT-X-DISCONTINUITY`.
    pub prelude: Option<Prelude<'a>>,
    /// Publisher gone: `EXT-X-ENDLIST`.
    pub ended: bool,
    /// List no segment after this one (`None`: all). The MPEG-TS playlists hold back a
    /// segment until the audio muxed into it is complete.
    pub last_seq: Option<u64>,
}

/// The target duration for a configured segment duration: EXTINF rounded to the nearest
/// integer must not exceed it (HLS2 §4.4.3.1). Forced keyframes keep segments within a
/// frame of the target, so rounding the target up leaves the required margin.
pub fn target_duration(segment: Duration) -> u64 {
    (segment.as_secs_f64().ceil() as u64).max(1)
}

/// Renders a media playlist.
pub fn media(view: &MediaView<'_>) -> Bytes {
    let prelude = view.prelude.as_ref().filter(|p| !p.segments.is_empty());
    let listed = |s: &Segment, uri: &dyn Fn(u64) -> String| ListedSegment {
        uri: uri(s.seq),
        duration: s.duration,
        wallclock: s.wallclock,
    };
    let mut segments: Vec<ListedSegment> = Vec::new();
    if let Some(p) = prelude {
        segments.extend(p.segments.iter().map(|s| listed(s, p.segment_uri)));
    }
    let current = segments.len();
    segments.extend(
        view.window
            .segments()
            .filter(|s| view.last_seq.is_none_or(|last| s.seq <= last))
            .map(|s| listed(s, view.segment_uri)),
    );
    let (media_sequence, discontinuity_sequence) = match prelude {
        Some(p) => (
            p.segments[0].seq,
            view.discontinuity_sequence.saturating_sub(1),
        ),
        None => (view.window.media_sequence(), view.discontinuity_sequence),
    };
    segment_list(&SegmentList {
        target_duration: view.target_duration,
        media_sequence,
        discontinuity_sequence,
        list_type: ListType::Live,
        init_uri: prelude.map_or(view.init_uri, |p| Some(p.init_uri)),
        segments: &segments,
        discontinuity: prelude.map(|_| (current, view.init_uri)),
        ended: view.ended,
    })
}

/// `EXT-X-PLAYLIST-TYPE` of a [`SegmentList`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// A sliding live window: no `EXT-X-PLAYLIST-TYPE`.
    Live,
    /// `EVENT`: segments are only ever appended (a recording in progress).
    Event,
    /// `VOD`: complete and final (a finished recording); always with `EXT-X-ENDLIST`.
    Vod,
}

/// One segment of a [`SegmentList`].
#[derive(Debug, Clone)]
pub struct ListedSegment {
    /// URI relative to the playlist.
    pub uri: String,
    /// Duration.
    pub duration: Duration,
    /// Wall-clock time of its first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub wallclock: SystemTime,
}

/// Input for a plain media playlist over an explicit list of whole segments (the
/// recording and object-storage outputs; no LL-HLS parts).
pub struct SegmentList<'a> {
    /// `EXT-X-TARGETDURATION`.
    pub target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE`: sequence number of the first listed segment.
    pub media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_sequence: u64,
    /// `EXT-X-PLAYLIST-TYPE`.
    pub list_type: ListType,
    /// URI of the init segment, relative to the playlist; `None` for MPEG-TS segments
    /// (no `EXT-X-MAP`).
    pub init_uri: Option<&'a str>,
    /// The segments, oldest first.
    pub segments: &'a [ListedSegment],
    /// `EXT-X-DISCONTINUITY` and a new `EXT-X-MAP` (this URI, if any) before segment
    /// `index`.
    pub discontinuity: Option<(usize, Option<&'a str>)>,
    /// Publisher gone: `EXT-X-ENDLIST` (implied by [`ListType::Vod`]).
    pub ended: bool,
}

/// Renders a plain media playlist over whole segments.
pub fn segment_list(view: &SegmentList<'_>) -> Bytes {
    let segments = view
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| MediaSegment {
            uri: s.uri.clone(),
            duration: s.duration.as_secs_f32(),
            // EXT-X-MAP on the first segment, and again after a discontinuity; each applies
            // to all that follow.
            map: match view.discontinuity {
                Some((at, uri)) if at == i => uri,
                _ => view.init_uri.filter(|_| i == 0),
            }
            .map(|uri| Map {
                uri: uri.to_string(),
                ..Default::default()
            }),
            discontinuity: view.discontinuity.is_some_and(|(at, _)| at == i && i > 0),
            // AUTH 8.4: PDT in every live media playlist. One per segment lets players
            // map every segment without accumulating EXTINF rounding.
            program_date_time: Some(to_chrono(s.wallclock)),
            ..Default::default()
        })
        .collect();
    let pl = MediaPlaylist {
        version: Some(if view.init_uri.is_some() {
            MEDIA_VERSION
        } else {
            TS_VERSION
        }),
        target_duration: view.target_duration,
        media_sequence: view.media_sequence,
        discontinuity_sequence: view.discontinuity_sequence,
        segments,
        end_list: view.ended || view.list_type == ListType::Vod,
        playlist_type: match view.list_type {
            ListType::Live => None,
            ListType::Event => Some(MediaPlaylistType::Event),
            ListType::Vod => Some(MediaPlaylistType::Vod),
        },
        independent_segments: true,
        ..Default::default()
    };
    write(|w| pl.write_to(w))
}

/// One rendition as the multivariant playlist needs it.
pub struct MasterEntry<'a> {
    /// Negotiated description.
    pub info: &'a RenditionInfo,
    /// URI of its media playlist, relative to the multivariant playlist.
    pub uri: String,
    /// Highest measured segment bitrate, bit/s (0 if none yet).
    pub peak_bps: u64,
    /// Average measured bitrate, bit/s (0 if none yet).
    pub average_bps: u64,
}

/// Renders the multivariant playlist: one `EXT-X-STREAM-INF` per video rung (highest
/// first), one `EXT-X-MEDIA` audio rendition shared by all.
pub fn master(video: &[MasterEntry<'_>], audio: Option<&MasterEntry<'_>>) -> Bytes {
    master_with(video, audio, false)
}

/// Renders the multivariant playlist of the MPEG-TS variants: one `EXT-X-STREAM-INF` per
/// video rung, its URI the rung's TS playlist, audio muxed into every segment (so CODECS
/// names both, and there is no audio group), protocol version 3.
pub fn master_muxed(video: &[MasterEntry<'_>], audio: Option<&MasterEntry<'_>>) -> Bytes {
    master_with(video, audio, true)
}

fn master_with(video: &[MasterEntry<'_>], audio: Option<&MasterEntry<'_>>, muxed: bool) -> Bytes {
    let audio_codecs = audio.map(|a| a.info.codecs.clone()).unwrap_or_default();
    let (audio_avg, audio_peak) = audio.map_or((0, 0), |a| {
        (
            a.average_bps.max(a.info.bitrate),
            a.peak_bps.max(a.info.bitrate),
        )
    });
    let variants = video
        .iter()
        .filter_map(|v| {
            let RenditionKind::Video { width, height, fps } = &v.info.kind else {
                return None;
            };
            let mut average = v.average_bps.max(v.info.bitrate) + audio_avg;
            // BANDWIDTH is the peak segment bitrate (HLS2 §4.4.6.2); until measured, allow
            // the usual 10 % VBV overshoot over the target.
            let mut peak = v.peak_bps.max(v.info.bitrate * 11 / 10) + audio_peak;
            if muxed {
                // The fMP4 figures plus TS overhead: 4 of every 188 bytes, PES and ADTS
                // headers, stuffing; measured 3-8 %, so 10 % keeps BANDWIDTH an upper bound.
                average = average * 11 / 10;
                peak = peak * 11 / 10;
            }
            let codecs = if audio_codecs.is_empty() {
                v.info.codecs.clone()
            } else {
                format!("{},{}", v.info.codecs, audio_codecs)
            };
            Some(VariantStream {
                uri: v.uri.clone(),
                bandwidth: peak.max(average),
                average_bandwidth: Some(average),
                codecs: Some(codecs),
                resolution: Some(Resolution {
                    width: u64::from(*width),
                    height: u64::from(*height),
                }),
                frame_rate: Some(*fps),
                audio: audio.filter(|_| !muxed).map(|_| AUDIO_GROUP.to_string()),
                ..Default::default()
            })
        })
        .collect();
    let alternatives = audio
        .iter()
        .filter(|_| !muxed)
        .filter_map(|a| {
            let RenditionKind::Audio {
                channels, language, ..
            } = &a.info.kind
            else {
                return None;
            };
            Some(AlternativeMedia {
                media_type: AlternativeMediaType::Audio,
                uri: Some(a.uri.clone()),
                group_id: AUDIO_GROUP.to_string(),
                // AUTH 8.10: LANGUAGE is required on EXT-X-MEDIA.
                language: Some(language.clone()),
                name: "Main".to_string(),
                default: true,
                autoselect: true,
                channels: Some(channels.to_string()),
                ..Default::default()
            })
        })
        .collect();
    let pl = MasterPlaylist {
        version: Some(if muxed { TS_VERSION } else { MEDIA_VERSION }),
        variants,
        alternatives,
        // Every segment of every rung starts with an IDR (HLS2 §4.4.2.1, AUTH 9.11).
        independent_segments: true,
        ..Default::default()
    };
    write(|w| pl.write_to(w))
}

fn to_chrono(t: SystemTime) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::<chrono::Utc>::from(t).fixed_offset()
}

fn write(f: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) -> Bytes {
    let mut out = Vec::with_capacity(1024);
    // Writing into a Vec cannot fail.
    f(&mut out).expect("writing a playlist into memory cannot fail");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(name: &str, w: u32, h: u32, kbps: u64) -> RenditionInfo {
        RenditionInfo {
            name: name.into(),
            kind: RenditionKind::Video {
                width: w,
                height: h,
                fps: 30.0,
            },
            codecs: "avc1.64001f".into(),
            bitrate: kbps * 1000,
        }
    }

    fn audio() -> RenditionInfo {
        RenditionInfo {
            name: "audio".into(),
            kind: RenditionKind::Audio {
                channels: 2,
                rate: 48_000,
                language: "und".into(),
            },
            codecs: "mp4a.40.2".into(),
            bitrate: 128_000,
        }
    }

    #[test]
    fn target_duration_rounds_up() {
        assert_eq!(target_duration(Duration::from_secs(2)), 2);
        assert_eq!(target_duration(Duration::from_millis(1500)), 2);
        assert_eq!(target_duration(Duration::from_millis(500)), 1);
    }

    #[test]
    fn media_playlist_golden() {
        let mut w = Window::new(3, 3);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..4u64 {
            w.push(
                Duration::from_millis(2000),
                t0 + Duration::from_secs(2 * i),
                true,
                Bytes::new(),
            );
        }
        let uri = |seq: u64| format!("seg-7-{seq}.m4s");
        let text = media(&MediaView {
            target_duration: 2,
            window: &w,
            init_uri: Some("init-7.mp4"),
            segment_uri: &uri,
            discontinuity_sequence: 0,
            prelude: None,
            ended: false,
            last_seq: None,
        });
        let text = String::from_utf8(text.to_vec()).expect("utf8");
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"), "{text}");
        assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
        assert!(text.contains("#EXT-X-MAP:URI=\"init-7.mp4\"\n"));
        assert_eq!(text.matches("#EXT-X-MAP").count(), 1);
        assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
        assert!(text.contains("2023-11-14T22:13:22"), "{text}");
        assert!(text.contains("#EXTINF:2,\nseg-7-1.m4s\n"), "{text}");
        assert!(text.contains("seg-7-3.m4s"));
        assert!(!text.contains("seg-7-0.m4s"));
        assert!(!text.contains("ENDLIST"));

        let ended = media(&MediaView {
            target_duration: 2,
            window: &w,
            init_uri: Some("init-7.mp4"),
            segment_uri: &uri,
            discontinuity_sequence: 0,
            prelude: None,
            ended: true,
            last_seq: None,
        });
        assert!(
            String::from_utf8_lossy(&ended)
                .trim_end()
                .ends_with("#EXT-X-ENDLIST")
        );

        // A re-published stream: the previous broadcast's last segments, then a
        // discontinuity and the new init segment; m3u8-rs reads it back the same way.
        let mut old = Window::starting_at(6, 0, 0);
        old.push(Duration::from_secs(2), t0, true, Bytes::new());
        let old_segments: Vec<Segment> = old.segments().cloned().collect();
        let old_uri = |seq: u64| format!("seg-6-{seq}.m4s");
        let text = media(&MediaView {
            target_duration: 2,
            window: &w,
            init_uri: Some("init-7.mp4"),
            segment_uri: &uri,
            discontinuity_sequence: 1,
            prelude: Some(Prelude {
                segments: &old_segments,
                init_uri: "init-6.mp4",
                segment_uri: &old_uri,
            }),
            ended: false,
            last_seq: None,
        });
        let text = String::from_utf8(text.to_vec()).expect("utf8");
        let pl = match m3u8_rs::parse_media_playlist_res(text.as_bytes()) {
            Ok(pl) => pl,
            Err(e) => panic!("{e:?}\n{text}"),
        };
        assert_eq!(
            (pl.media_sequence, pl.discontinuity_sequence),
            (0, 0),
            "{text}"
        );
        let maps: Vec<(usize, String, bool)> = pl
            .segments
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map.as_ref().map(|m| (i, m.uri.clone(), s.discontinuity)))
            .collect();
        assert_eq!(
            maps,
            [
                (0, "init-6.mp4".to_string(), false),
                (1, "init-7.mp4".to_string(), true)
            ]
        );
        assert_eq!(pl.segments[0].uri, "seg-6-0.m4s");
        assert_eq!(pl.segments[1].uri, "seg-7-1.m4s");
    }

    #[test]
    fn segment_list_types() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let segs: Vec<ListedSegment> = (0..3u64)
            .map(|i| ListedSegment {
                uri: format!("seg-e-{}.m4s", 5 + i),
                duration: Duration::from_millis(1000),
                wallclock: t0 + Duration::from_secs(i),
            })
            .collect();
        let render = |list_type, ended| {
            let b = segment_list(&SegmentList {
                target_duration: 1,
                media_sequence: 5,
                discontinuity_sequence: 2,
                list_type,
                init_uri: Some("init-e.mp4"),
                segments: &segs,
                discontinuity: None,
                ended,
            });
            String::from_utf8(b.to_vec()).expect("utf8")
        };
        let event = render(ListType::Event, false);
        assert!(event.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"), "{event}");
        assert!(event.contains("#EXT-X-MEDIA-SEQUENCE:5\n"));
        assert!(event.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"));
        assert!(!event.contains("ENDLIST"));
        let vod = render(ListType::Vod, false);
        assert!(vod.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{vod}");
        assert!(vod.trim_end().ends_with("#EXT-X-ENDLIST"));
        let live = render(ListType::Live, false);
        assert!(!live.contains("PLAYLIST-TYPE"));
        let parsed = m3u8_rs::parse_media_playlist_res(vod.as_bytes()).expect("parses");
        assert_eq!(parsed.segments.len(), 3);
        assert_eq!(parsed.segments[0].uri, "seg-e-5.m4s");
        assert!(parsed.end_list);
    }

    #[test]
    fn master_playlist_attributes() {
        let v720 = video("720p", 1280, 720, 2800);
        let v360 = video("360p", 640, 360, 600);
        let a = audio();
        let entries = [
            MasterEntry {
                info: &v720,
                uri: "720p/index.m3u8".into(),
                peak_bps: 4_000_000,
                average_bps: 0,
            },
            MasterEntry {
                info: &v360,
                uri: "360p/index.m3u8".into(),
                peak_bps: 0,
                average_bps: 0,
            },
        ];
        let audio_entry = MasterEntry {
            info: &a,
            uri: "audio/index.m3u8".into(),
            peak_bps: 0,
            average_bps: 0,
        };
        let text = master(&entries, Some(&audio_entry));
        let text = String::from_utf8(text.to_vec()).expect("utf8");
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"), "{text}");
        assert!(text.contains("TYPE=AUDIO"), "{text}");
        assert!(text.contains("GROUP-ID=\"aac\""));
        assert!(text.contains("LANGUAGE=\"und\""));
        // Measured peak wins over the target; audio is added.
        assert!(text.contains("BANDWIDTH=4128000"), "{text}");
        assert!(text.contains("AVERAGE-BANDWIDTH=2928000"), "{text}");
        assert!(text.contains("BANDWIDTH=788000"), "{text}");
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\""));
        assert!(text.contains("RESOLUTION=1280x720"));
        assert!(
            text.contains("FRAME-RATE=30,") || text.contains("FRAME-RATE=30\n"),
            "{text}"
        );
        assert!(text.contains("AUDIO=\"aac\""));
        assert!(text.find("720p/index.m3u8") < text.find("360p/index.m3u8"));
        // Parses back.
        let parsed = m3u8_rs::parse_master_playlist_res(text.as_bytes()).expect("parses");
        assert_eq!(parsed.variants.len(), 2);
        assert_eq!(parsed.alternatives.len(), 1);
    }
}
