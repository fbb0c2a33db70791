//! The pure core of the outputs: CMAF chunks in, whole objects (init sections, segments,
//! playlists) out, in the order they may be written. No clock, no I/O.
//!
//! A segment is every chunk from one `starts_segment` chunk up to the next; it is complete
//! (and emitted) when the next one starts, or at the end of the broadcast. After each
//! segment comes the rendition's media playlist listing it, then the multivariant playlist
//! when the set of renditions with media changed: a reader that follows a playlist only
//! ever finds objects that were written before it.
//!
//! It never spawns or waits. Playlist text and bitrates come from `hls` (`segment_list`,
//! `master`, [`Bitrate`]); the objects go to the writers through [`super`]'s queues.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

use super::object::{Object, ObjectKind};
use crate::hls::{
    Bitrate, ListType, ListedSegment, MasterEntry, SegmentList, init_name, master, segment_list,
    segment_name, target_duration,
};
use crate::media::{RenditionInfo, RenditionKind};

/// File name of the multivariant playlist, relative to the broadcast root.
pub const MASTER: &str = "master.m3u8";

/// Which playlists the package keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Every segment since the start: `EVENT` while live, `VOD` at the end (recording).
    Everything,
    /// The last `n` segments, a regular live window; `EXT-X-ENDLIST` at the end (object
    /// storage behind a CDN).
    Window(usize),
}

/// A chunk as the muxer produced it, numbered by the HLS store.
#[derive(Debug, Clone)]
pub struct ChunkIn {
    /// Sequence number of the segment this chunk belongs to.
    pub seq: u64,
    /// Starts a new segment.
    pub starts_segment: bool,
    /// Duration.
    pub duration: Duration,
    /// Wall-clock time of its first sample.
    pub wallclock: SystemTime,
    /// The bytes (a CMAF chunk).
    pub data: Bytes,
}

struct Open {
    seq: u64,
    duration: Duration,
    wallclock: SystemTime,
    data: BytesMut,
}

struct Track {
    info: RenditionInfo,
    open: Option<Open>,
    listed: VecDeque<(u64, ListedSegment)>,
    bitrate: Bitrate,
}

fn entry(t: &Track) -> MasterEntry<'_> {
    MasterEntry {
        info: &t.info,
        uri: format!("{}/index.m3u8", t.info.name),
        peak_bps: t.bitrate.peak_bps(),
        average_bps: t.bitrate.average_bps(),
    }
}

/// Turns one broadcast's chunks into objects.
pub struct Packager {
    listing: Listing,
    epoch: String,
    target_duration: u64,
    discontinuity_sequence: u64,
    tracks: BTreeMap<String, Track>,
    /// Renditions listed in the last multivariant playlist written.
    in_master: usize,
    /// Every rendition of the broadcast, once planned: the multivariant playlist is written
    /// when all have a segment, as the origin serves it (a CDN in front of the bucket
    /// caches whatever was there first).
    expected: Option<Vec<String>>,
    ended: bool,
}

impl Packager {
    /// A package for the broadcast `epoch`.
    pub fn new(
        listing: Listing,
        epoch: &str,
        target_duration: u64,
        discontinuity_sequence: u64,
    ) -> Self {
        Self {
            listing,
            epoch: epoch.to_string(),
            target_duration,
            discontinuity_sequence,
            tracks: BTreeMap::new(),
            in_master: 0,
            expected: None,
            ended: false,
        }
    }

    /// The renditions the broadcast will have (set once).
    pub fn expect(&mut self, renditions: &[String]) {
        if self.expected.is_none() {
            self.expected = Some(renditions.to_vec());
        }
    }

    /// A rendition's init section. A changed init section (new caps mid-broadcast) is
    /// written again under the same name: only before the rendition's first segment can
    /// that happen with the muxers we run.
    pub fn init(&mut self, info: RenditionInfo, data: Bytes) -> Vec<Object> {
        let name = info.name.clone();
        match self.tracks.get_mut(&name) {
            Some(t) => t.info = info,
            None => {
                self.tracks.insert(
                    name.clone(),
                    Track {
                        info,
                        open: None,
                        listed: VecDeque::new(),
                        bitrate: Bitrate::default(),
                    },
                );
            }
        }
        vec![Object {
            path: format!("{name}/{}", init_name(&self.epoch)),
            kind: ObjectKind::Init,
            body: data,
        }]
    }

    /// A chunk of `rendition`; returns the objects completed by it (a segment and the
    /// playlists listing it), empty most of the time.
    pub fn chunk(&mut self, rendition: &str, chunk: &ChunkIn) -> Vec<Object> {
        if self.ended {
            return Vec::new();
        }
        let Some(track) = self.tracks.get_mut(rendition) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let boundary =
            chunk.starts_segment || track.open.as_ref().is_some_and(|o| o.seq != chunk.seq);
        if boundary && let Some(done) = track.open.take() {
            out.extend(self.close(rendition, done));
        }
        let Some(track) = self.tracks.get_mut(rendition) else {
            return out;
        };
        let open = track.open.get_or_insert_with(|| Open {
            seq: chunk.seq,
            duration: Duration::ZERO,
            wallclock: chunk.wallclock,
            data: BytesMut::new(),
        });
        open.duration += chunk.duration;
        open.data.extend_from_slice(&chunk.data);
        out
    }

    /// The broadcast ended: the open segments are complete, playlists become final.
    pub fn end(&mut self) -> Vec<Object> {
        if self.ended {
            return Vec::new();
        }
        let mut out = Vec::new();
        let names: Vec<String> = self.tracks.keys().cloned().collect();
        for name in &names {
            if let Some(done) = self.tracks.get_mut(name).and_then(|t| t.open.take()) {
                out.extend(self.segment_object(name, done));
            }
        }
        self.ended = true;
        for name in &names {
            out.extend(self.media_playlist(name));
        }
        out.extend(self.master_playlist());
        out
    }

    /// Objects for a completed segment: the segment, its playlist, maybe the master.
    fn close(&mut self, rendition: &str, done: Open) -> Vec<Object> {
        let mut out = self.segment_object(rendition, done);
        if self.in_master > 0 {
            out.extend(self.media_playlist(rendition));
            return out;
        }
        // Nothing is written until every planned rendition has a segment, as the origin
        // serves it: then the target duration is fixed (the passthrough rung's first segment
        // is the publisher's GOP, see `hls::store::release`), every media playlist is
        // written, and the multivariant playlist after them. It is written again at the end
        // (final bitrates).
        if let Some(master) = self.master_playlist() {
            let longest = self
                .tracks
                .values()
                .flat_map(|t| t.listed.iter().map(|(_, s)| s.duration))
                .max()
                .unwrap_or_default();
            self.target_duration = self.target_duration.max(target_duration(longest));
            let names: Vec<String> = self.tracks.keys().cloned().collect();
            for name in &names {
                out.extend(self.media_playlist(name));
            }
            out.push(master);
        }
        out
    }

    fn segment_object(&mut self, rendition: &str, done: Open) -> Vec<Object> {
        let Some(track) = self.tracks.get_mut(rendition) else {
            return Vec::new();
        };
        let name = segment_name(&self.epoch, done.seq);
        let bytes = done.data.len() as u64;
        track.bitrate.segment(bytes, done.duration);
        track.bitrate.add(bytes, done.duration);
        track.listed.push_back((
            done.seq,
            ListedSegment {
                uri: name.clone(),
                duration: done.duration,
                wallclock: done.wallclock,
            },
        ));
        if let Listing::Window(n) = self.listing {
            while track.listed.len() > n.max(1) {
                track.listed.pop_front();
            }
        }
        vec![Object {
            path: format!("{rendition}/{name}"),
            kind: ObjectKind::Segment,
            body: done.data.freeze(),
        }]
    }

    fn media_playlist(&self, rendition: &str) -> Option<Object> {
        let track = self.tracks.get(rendition)?;
        let (first, _) = track.listed.front()?;
        let segments: Vec<ListedSegment> = track.listed.iter().map(|(_, s)| s.clone()).collect();
        let list_type = match (self.listing, self.ended) {
            (Listing::Everything, false) => ListType::Event,
            (Listing::Everything, true) => ListType::Vod,
            (Listing::Window(_), _) => ListType::Live,
        };
        let init = init_name(&self.epoch);
        let body = segment_list(&SegmentList {
            target_duration: self.target_duration,
            media_sequence: *first,
            discontinuity_sequence: self.discontinuity_sequence,
            list_type,
            init_uri: Some(&init),
            segments: &segments,
            ended: self.ended,
        });
        Some(Object {
            path: format!("{rendition}/index.m3u8"),
            kind: ObjectKind::MediaPlaylist,
            body,
        })
    }

    /// The multivariant playlist over every planned rendition, once each has a segment
    /// (before that: nothing).
    fn master_playlist(&mut self) -> Option<Object> {
        let with_media: Vec<&Track> = self
            .expected
            .as_ref()?
            .iter()
            .map(|name| self.tracks.get(name).filter(|t| !t.listed.is_empty()))
            .collect::<Option<_>>()?;
        let mut video: Vec<(u32, MasterEntry<'_>)> = with_media
            .iter()
            .copied()
            .filter_map(|t| match t.info.kind {
                RenditionKind::Video { height, .. } => Some((height, entry(t))),
                RenditionKind::Audio { .. } => None,
            })
            .collect();
        if video.is_empty() {
            return None;
        }
        // Highest first, as the origin lists them.
        video.sort_by_key(|v| std::cmp::Reverse(v.0));
        let video: Vec<MasterEntry<'_>> = video.into_iter().map(|(_, e)| e).collect();
        let audio = with_media
            .iter()
            .copied()
            .find(|t| matches!(t.info.kind, RenditionKind::Audio { .. }))
            .map(entry);
        let body = master(&video, audio.as_ref());
        let count = with_media.len();
        self.in_master = count;
        Some(Object {
            path: MASTER.to_string(),
            kind: ObjectKind::MasterPlaylist,
            body,
        })
    }
}

#[cfg(test)]
#[path = "package_tests.rs"]
mod tests;
