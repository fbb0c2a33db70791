//! The one media-playlist writer (HLS2 §4.4): a [`MediaPlaylist`] — plain data saying what
//! is listed — in, playlist text out. It writes every media playlist whipcast serves or
//! uploads: the origin's live windows with or without the Low-Latency tags, with the
//! previous broadcast's segments before an `EXT-X-DISCONTINUITY`, and their MPEG-TS
//! twins; the recordings' and uploads' `EVENT` / `VOD` / live lists ([`segment_list`]).
//! Which segments and parts are listed is decided by the callers ([`super::live`] for the
//! origin's windows); this only writes. Hand-written: m3u8-rs 6 writes none of the LL-HLS
//! tags. Pure: no clock, no I/O.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::tags::{PartInf, PartTag, PreloadHint, RenditionReport, ServerControl, Skip, pdt, secs};

/// The target duration for a configured segment duration: EXTINF rounded to the nearest
/// integer must not exceed it (HLS2 §4.4.3.1). Forced keyframes keep segments within a
/// frame of the target, so rounding the target up leaves the required margin.
pub fn target_duration(segment: Duration) -> u64 {
    (segment.as_secs_f64().ceil() as u64).max(1)
}

/// `EXT-X-PLAYLIST-TYPE` (HLS2 §4.4.3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// A sliding live window: no `EXT-X-PLAYLIST-TYPE`.
    Live,
    /// `EVENT`: segments are only ever appended (a recording in progress).
    Event,
    /// `VOD`: complete and final (a finished recording); always with `EXT-X-ENDLIST`.
    Vod,
}

/// One media playlist, everything decided: the writer lists exactly this.
pub(super) struct MediaPlaylist<'a> {
    /// `EXT-X-TARGETDURATION` (HLS2 §4.4.3.1).
    pub(super) target_duration: u64,
    /// `EXT-X-MEDIA-SEQUENCE`: sequence number of the first listed segment, skipped ones
    /// included (HLS2 §4.4.3.2).
    pub(super) media_sequence: u64,
    /// `EXT-X-DISCONTINUITY-SEQUENCE` of the first listed segment (HLS2 §4.4.3.3).
    pub(super) discontinuity_sequence: u64,
    /// `EXT-X-PLAYLIST-TYPE`.
    pub(super) list_type: ListType,
    /// The Low-Latency header (`EXT-X-SERVER-CONTROL`, `EXT-X-PART-INF`); `None` for a
    /// plain playlist.
    pub(super) low_latency: Option<LowLatency>,
    /// Leading segments replaced by `EXT-X-SKIP` (a delta update, HLS2 §4.4.5.2); not in
    /// `current`.
    pub(super) skipped: u64,
    /// The previous broadcast's segments, listed first and followed by an
    /// `EXT-X-DISCONTINUITY` (HLS2 §4.4.4.3).
    pub(super) previous: Option<Run<'a>>,
    /// This broadcast's complete segments.
    pub(super) current: Run<'a>,
    /// The segment being filled: its parts only (HLS2 §4.4.4.9).
    pub(super) open: Option<OpenSegment>,
    /// `EXT-X-PRELOAD-HINT` (HLS2 §4.4.5.3).
    pub(super) hint: Option<PreloadHint>,
    /// `EXT-X-RENDITION-REPORT`s (HLS2 §4.4.5.4).
    pub(super) reports: &'a [RenditionReport],
    /// `EXT-X-ENDLIST` (HLS2 §4.4.3.4).
    pub(super) ended: bool,
}

/// The Low-Latency header of a playlist.
pub(super) struct LowLatency {
    /// `EXT-X-SERVER-CONTROL`.
    pub(super) server_control: ServerControl,
    /// `EXT-X-PART-INF`.
    pub(super) part_inf: PartInf,
    /// `EXT-X-START:TIME-OFFSET=-<this>` (HLS2 §4.4.2.2), from the end of the playlist.
    pub(super) start_offset: Option<Duration>,
}

/// Segments of one broadcast, under one init section.
pub(super) struct Run<'a> {
    /// `EXT-X-MAP` URI (HLS2 §4.4.4.5); `None` for MPEG-TS segments.
    pub(super) init_uri: Option<&'a str>,
    /// Complete segments, oldest first.
    pub(super) segments: Vec<MediaSegment<'a>>,
}

/// One complete segment.
pub(super) struct MediaSegment<'a> {
    /// `EXT-X-PROGRAM-DATE-TIME` (HLS2 §4.4.4.6): wall-clock time of its first sample.
    pub(super) wallclock: SystemTime,
    /// `EXT-X-GAP` (HLS2 §4.4.4.7): the segment is missing; clients do not load it.
    pub(super) gap: bool,
    /// Its parts listed before its `EXTINF` (HLS2 §4.4.4.9); empty when none are listed.
    pub(super) parts: Vec<PartTag>,
    /// `EXTINF` (HLS2 §4.4.4.1).
    pub(super) duration: Duration,
    /// URI relative to the playlist.
    pub(super) uri: Cow<'a, str>,
}

/// The segment being filled: listed as its parts, without `EXTINF`.
pub(super) struct OpenSegment {
    /// `EXT-X-PROGRAM-DATE-TIME` of its first part.
    pub(super) wallclock: SystemTime,
    /// Its parts so far.
    pub(super) parts: Vec<PartTag>,
}

/// Playlist text, line by line.
struct Text(String);

impl Text {
    fn line(&mut self, s: impl Display) {
        writeln!(self.0, "{s}").expect("writing into a String cannot fail");
    }
}

impl MediaPlaylist<'_> {
    /// `EXT-X-VERSION`: the lowest one whose rules the playlist needs (HLS2 §8): 9 for
    /// `EXT-X-SKIP`, 6 for `EXT-X-MAP` without `EXT-X-I-FRAMES-ONLY`, else 3 for decimal
    /// `EXTINF` (the MPEG-TS playlists, for the old players that need them).
    fn version(&self) -> u8 {
        let map = self.current.init_uri.is_some()
            || self.previous.as_ref().is_some_and(|p| p.init_uri.is_some());
        if self.skipped > 0 {
            9
        } else if map {
            6
        } else {
            3
        }
    }

    /// The playlist text.
    ///
    /// Plain playlists keep the text m3u8-rs 6 wrote for them before this writer existed,
    /// and LL-HLS playlists the text of the LL writer they had, so no served byte changed
    /// when the two were merged. Where the two differ, both are valid: plain playlists put
    /// `EXT-X-INDEPENDENT-SEGMENTS` first, leave out `EXT-X-MEDIA-SEQUENCE:0` (0 is its
    /// default, HLS2 §4.4.3.2), put a discontinuity's `EXT-X-MAP` before its
    /// `EXT-X-DISCONTINUITY` (both apply to the segment that follows, HLS2 §4.4.4), and
    /// write `EXTINF` as the shortest decimal of its 32-bit float value.
    pub(super) fn write(&self) -> Bytes {
        let ll = self.low_latency.as_ref();
        let mut out = Text(String::with_capacity(
            256 + 128 * (self.current.segments.len() + 1),
        ));
        out.line("#EXTM3U");
        out.line(format_args!("#EXT-X-VERSION:{}", self.version()));
        if ll.is_none() {
            out.line("#EXT-X-INDEPENDENT-SEGMENTS");
        }
        out.line(format_args!(
            "#EXT-X-TARGETDURATION:{}",
            self.target_duration
        ));
        if let Some(ll) = ll {
            out.line(ll.server_control);
            out.line(ll.part_inf);
            if let Some(back) = ll.start_offset {
                out.line(format_args!("#EXT-X-START:TIME-OFFSET=-{}", secs(back)));
            }
        }
        if ll.is_some() || self.media_sequence != 0 {
            out.line(format_args!(
                "#EXT-X-MEDIA-SEQUENCE:{}",
                self.media_sequence
            ));
        }
        if self.discontinuity_sequence != 0 {
            out.line(format_args!(
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            ));
        }
        match self.list_type {
            ListType::Live => {}
            ListType::Event => out.line("#EXT-X-PLAYLIST-TYPE:EVENT"),
            ListType::Vod => out.line("#EXT-X-PLAYLIST-TYPE:VOD"),
        }
        // Every segment starts with an independent frame (HLS2 §4.4.2.1): video segments are
        // cut at keyframes, and every audio frame is a sync sample.
        if ll.is_some() {
            out.line("#EXT-X-INDEPENDENT-SEGMENTS");
        }
        if self.skipped > 0 {
            out.line(Skip {
                skipped_segments: self.skipped,
            });
        }
        let extinf = |d: Duration| match ll {
            Some(_) => secs(d),
            None => d.as_secs_f32().to_string(),
        };
        let map = |out: &mut Text, uri: Option<&str>| {
            if let Some(uri) = uri {
                out.line(format_args!("#EXT-X-MAP:URI=\"{uri}\""));
            }
        };
        let segments = |out: &mut Text, segments: &[MediaSegment<'_>]| {
            for s in segments {
                out.line(format_args!(
                    "#EXT-X-PROGRAM-DATE-TIME:{}",
                    pdt(s.wallclock)
                ));
                for p in &s.parts {
                    out.line(p);
                }
                if s.gap {
                    out.line("#EXT-X-GAP");
                }
                out.line(format_args!("#EXTINF:{},", extinf(s.duration)));
                out.line(&s.uri);
            }
        };
        if let Some(previous) = &self.previous {
            map(&mut out, previous.init_uri);
            segments(&mut out, &previous.segments);
            if ll.is_some() {
                out.line("#EXT-X-DISCONTINUITY");
                map(&mut out, self.current.init_uri);
            } else {
                map(&mut out, self.current.init_uri);
                out.line("#EXT-X-DISCONTINUITY");
            }
        } else {
            map(&mut out, self.current.init_uri);
        }
        segments(&mut out, &self.current.segments);
        if let Some(open) = &self.open {
            // PDT (like MAP and DISCONTINUITY) of a parent segment goes before its first
            // part (HLS2 §4.4.4.9).
            out.line(format_args!(
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                pdt(open.wallclock)
            ));
            for p in &open.parts {
                out.line(p);
            }
        }
        if let Some(hint) = &self.hint {
            out.line(hint);
        }
        for r in self.reports {
            out.line(r);
        }
        if self.ended {
            out.line("#EXT-X-ENDLIST");
        }
        Bytes::from(out.0)
    }
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
    /// Publisher gone: `EXT-X-ENDLIST` (implied by [`ListType::Vod`]).
    pub ended: bool,
}

/// Renders a plain media playlist over whole segments.
pub fn segment_list(view: &SegmentList<'_>) -> Bytes {
    MediaPlaylist {
        target_duration: view.target_duration,
        media_sequence: view.media_sequence,
        discontinuity_sequence: view.discontinuity_sequence,
        list_type: view.list_type,
        low_latency: None,
        skipped: 0,
        previous: None,
        current: Run {
            init_uri: view.init_uri,
            segments: view
                .segments
                .iter()
                .map(|s| MediaSegment {
                    wallclock: s.wallclock,
                    gap: false,
                    parts: Vec::new(),
                    duration: s.duration,
                    uri: Cow::Borrowed(&s.uri),
                })
                .collect(),
        },
        open: None,
        hint: None,
        reports: &[],
        ended: view.ended || view.list_type == ListType::Vod,
    }
    .write()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_duration_rounds_up() {
        assert_eq!(target_duration(Duration::from_secs(2)), 2);
        assert_eq!(target_duration(Duration::from_millis(1500)), 2);
        assert_eq!(target_duration(Duration::from_millis(500)), 1);
    }

    fn listed(n: u64) -> Vec<ListedSegment> {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        (0..n)
            .map(|i| ListedSegment {
                uri: format!("seg-e-{}.m4s", 5 + i),
                duration: Duration::from_millis(1000),
                wallclock: t0 + Duration::from_secs(i),
            })
            .collect()
    }

    #[test]
    fn segment_list_types() {
        let segs = listed(3);
        let render = |list_type, ended| {
            let b = segment_list(&SegmentList {
                target_duration: 1,
                media_sequence: 5,
                discontinuity_sequence: 2,
                list_type,
                init_uri: Some("init-e.mp4"),
                segments: &segs,
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

    /// The whole text of a plain list, line by line.
    #[test]
    fn segment_list_golden_text() {
        let mut segs = listed(2);
        segs[1].duration = Duration::from_nanos(2_021_333_333);
        let text = segment_list(&SegmentList {
            target_duration: 3,
            media_sequence: 5,
            discontinuity_sequence: 0,
            list_type: ListType::Event,
            init_uri: Some("init-e.mp4"),
            segments: &segs,
            ended: false,
        });
        assert_eq!(
            String::from_utf8_lossy(&text),
            "#EXTM3U\n\
             #EXT-X-VERSION:6\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-TARGETDURATION:3\n\
             #EXT-X-MEDIA-SEQUENCE:5\n\
             #EXT-X-PLAYLIST-TYPE:EVENT\n\
             #EXT-X-MAP:URI=\"init-e.mp4\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n\
             #EXTINF:1,\n\
             seg-e-5.m4s\n\
             #EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z\n\
             #EXTINF:2.0213332,\n\
             seg-e-6.m4s\n"
        );
    }

    /// MPEG-TS lists: no `EXT-X-MAP`, so protocol version 3 (HLS2 §8).
    #[test]
    fn without_an_init_section_the_version_is_3() {
        let segs = listed(2);
        let text = segment_list(&SegmentList {
            target_duration: 1,
            media_sequence: 0,
            discontinuity_sequence: 0,
            list_type: ListType::Live,
            init_uri: None,
            segments: &segs,
            ended: true,
        });
        let text = String::from_utf8_lossy(&text);
        assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"), "{text}");
        assert!(!text.contains("EXT-X-MAP") && !text.contains("MEDIA-SEQUENCE"));
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"));
    }
}
