//! Rendering a stream's playlists from its state: media playlists (plain and LL-HLS, full
//! and delta, MPEG-TS), the multivariant playlist, and the moment the playlists are first
//! released. Each document is rendered at most once per change of the stream and cached
//! with the stream version it was rendered at; this runs under the stream's own lock only.

use bytes::Bytes;

use super::doc::Doc;
use super::live::{self, LiveView, LlView, Prelude};
use super::media_playlist::target_duration;
use super::multivariant::{self, MasterEntry};
use super::names::{TS_PLAYLIST, init_name, part_name, segment_name, ts_segment_name};
use super::rendition::RenditionState;
use super::settings::LlSettings;
use super::stream::StreamState;
use super::tags::RenditionReport;
use super::window::Segment;
use crate::media::RenditionKind;

impl StreamState {
    /// Renders (or returns the cached) media playlist of `name`.
    pub(super) fn media_playlist(
        &mut self,
        name: &str,
        ll: Option<&LlSettings>,
        skip: bool,
        listed: usize,
    ) -> Option<Doc> {
        let version = self.version;
        let ended = self.ended_at.is_some();
        let slot = usize::from(skip && ll.is_some() && !ended);
        // The cached text first: this runs for every playlist request, the rest only once per
        // change (BENCHMARKS.md "Origin throughput").
        {
            let r = self.renditions.get(name)?;
            // Served once a whole segment is listed: hls.js reports a parts-only playlist as
            // LEVEL_EMPTY_ERROR and backs off its reloads (seen as 30 s start-up stalls). And
            // only once the multivariant playlist is: until then the target duration is not
            // fixed (see `release`), and it must never change (HLS2 §6.2.1).
            if !r.window.has_complete() || self.master.is_none() {
                return None;
            }
            if let Some((v, text)) = &r.cache[slot]
                && *v == version
            {
                return Some(text.clone());
            }
        }
        let reports: Vec<RenditionReport> = match ll {
            Some(_) => self
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
        let epoch = self.epoch.clone();
        let td = self.target_duration;
        let changed_at = self.changed_at;
        let discontinuity_sequence = self.discontinuity_seq;
        let r = self.renditions.get_mut(name)?;
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
        let prelude = (!carried.is_empty()).then_some(Prelude {
            segments: carried,
            init_uri: &old_init_uri,
            segment_uri: &old_seg_uri,
        });
        let part_uri = |seq: u64, i: usize| part_name(&epoch, seq, i);
        let text = live::render(&LiveView {
            target_duration: td,
            window: &r.window,
            init_uri: Some(&init_uri),
            segment_uri: &seg_uri,
            discontinuity_sequence,
            prelude,
            ended,
            last_seq: None,
            ll: ll.map(|settings| LlView {
                settings,
                part_uri: &part_uri,
                next_starts_segment: r.next_starts,
                skip: slot == 1,
                reports: &reports,
            }),
        });
        let doc = Doc::new(text, changed_at);
        r.cache[slot] = Some((version, doc.clone()));
        Some(doc)
    }

    /// Renders (or returns the cached) MPEG-TS media playlist of video rendition `name`: the
    /// same window as its fMP4 playlist, `.ts` names, no `EXT-X-MAP`, no LL-HLS tags. The
    /// previous broadcast's segments (re-publish) are not listed: they are fMP4 of another
    /// epoch; the discontinuity sequence still counts that broadcast.
    pub(super) fn ts_playlist(&mut self, name: &str) -> Option<Doc> {
        let version = self.version;
        let r = self.renditions.get(name)?;
        if !r.window.has_complete() || !matches!(r.info.kind, RenditionKind::Video { .. }) {
            return None;
        }
        if let Some((v, text)) = &r.cache[2]
            && *v == version
        {
            return Some(text.clone());
        }
        let epoch = self.epoch.clone();
        let seg_uri = |seq: u64| ts_segment_name(&epoch, seq);
        // Held back at the live edge until the audio muxed into it is complete.
        let last_seq = r
            .window
            .segments()
            .rev()
            .find(|v| self.audio_covers(v))
            .map(|v| v.seq)?;
        let text = live::render(&LiveView {
            target_duration: self.target_duration,
            window: &r.window,
            init_uri: None,
            segment_uri: &seg_uri,
            discontinuity_sequence: self.discontinuity_seq,
            prelude: None,
            ended: self.ended_at.is_some(),
            last_seq: Some(last_seq),
            ll: None,
        });
        let doc = Doc::new(text, self.changed_at);
        if let Some(r) = self.renditions.get_mut(name) {
            r.cache[2] = Some((version, doc.clone()));
        }
        Some(doc)
    }

    /// Re-renders the multivariant playlist; keeps the previous `Doc` (entity tag and
    /// modification time) when the text did not change.
    pub(super) fn refresh_master(&mut self) {
        let Some(text) = self.render_master(false) else {
            return;
        };
        if self.master.is_none() {
            self.release();
        }
        if self.master.as_ref().is_some_and(|m| m.body == text) {
            return;
        }
        self.master = Some(Doc::new(text, self.changed_at));
    }

    /// The stream's playlists are about to be served for the first time: fix the target
    /// duration, which must never change (HLS2 §6.2.1) and must be at least every segment's
    /// duration rounded (§4.4.3.1). The transcoded rungs cut on the configured grid; the
    /// passthrough rung can only cut on the publisher's keyframes, and a publisher that ignores
    /// keyframe requests (OBS) has a GOP of its own, seen by now in the passthrough rung's first
    /// whole segment (from its first keyframe to its second). So the target is the configured
    /// one or that GOP rounded up, whichever is longer. A publisher whose GOP grows later still
    /// gets a warning per long segment (`RenditionState::note_segment`).
    fn release(&mut self) {
        let longest = self
            .renditions
            .values()
            .flat_map(|r| r.window.segments())
            .filter(|s| s.seq >= self.first_seq)
            .map(|s| s.duration)
            .max()
            .unwrap_or_default();
        let td = target_duration(longest);
        if td > self.target_duration {
            tracing::info!(
                configured = self.target_duration,
                target = td,
                longest_ms = longest.as_millis() as u64,
                "target duration raised to the publisher's keyframe interval"
            );
            self.target_duration = td;
        }
    }

    fn render_master(&self, ts: bool) -> Option<Bytes> {
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
        let expected = self.expected.as_ref()?;
        let mut video: Vec<(&RenditionState, String)> = Vec::new();
        let mut audio: Option<(&RenditionState, String)> = None;
        for name in expected {
            let r = self.renditions.get(name)?;
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
                peak_bps: r.bitrate.peak_bps(),
                average_bps: r.bitrate.average_bps(),
            }
        }
        let video_entries: Vec<MasterEntry<'_>> = video.iter().map(to_entry).collect();
        let audio_entry = audio.as_ref().map(to_entry);
        Some(if ts {
            multivariant::master_muxed(&video_entries, audio_entry.as_ref())
        } else {
            multivariant::master(&video_entries, audio_entry.as_ref())
        })
    }

    /// The multivariant playlist of the MPEG-TS variants, rendered on request and kept
    /// for the stream version it was rendered at.
    pub(super) fn ts_master(&mut self) -> Option<Doc> {
        if let Some((v, doc)) = &self.ts_master
            && *v == self.version
        {
            return Some(doc.clone());
        }
        let text = self.render_master(true)?;
        // Same text, same entity tag and modification time (as for the fMP4 master).
        let doc = match self.ts_master.take() {
            Some((_, doc)) if doc.body == text => doc,
            _ => Doc::new(text, self.changed_at),
        };
        self.ts_master = Some((self.version, doc.clone()));
        Some(doc)
    }
}
