//! Which stored segments make MPEG-TS segment N of a video rung: that video segment and
//! the audio segments overlapping it in time, once the audio covers it.

use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::config::HlsConfig;
use crate::hls::serve::{SegmentBody, segment_body};
use crate::hls::stream::StreamState;
use crate::hls::window::Segment;
use crate::media::RenditionKind;

/// What the origin remuxes an MPEG-TS segment from ([`super::remux`]).
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

impl StreamState {
    /// Whether the stream's audio is complete up to the end of video segment `video`
    /// (always true without audio, or once the stream ended): until then its MPEG-TS
    /// segment is held back, because a segment served without its audio would be cached as
    /// it is.
    pub(in crate::hls) fn audio_covers(&self, video: &Segment) -> bool {
        let Some(audio) = self.renditions.values().find(|a| a.is_audio()) else {
            return true;
        };
        self.ended_at.is_some()
            || audio
                .window
                .segments()
                .last()
                .is_some_and(|a| segment_end(a) + Duration::from_millis(5) >= segment_end(video))
    }

    /// The sources of MPEG-TS segment `seq` of video rendition `rendition` of broadcast
    /// `epoch` (the current broadcast only: that is all the TS playlists list).
    pub(in crate::hls) fn ts_sources(
        &self,
        cfg: &HlsConfig,
        rendition: &str,
        epoch: &str,
        seq: u64,
    ) -> Option<TsSources> {
        if self.epoch != epoch {
            return None;
        }
        let r = self.renditions.get(rendition)?;
        if !matches!(r.info.kind, RenditionKind::Video { .. }) {
            return None;
        }
        let video = r.window.get(seq)?;
        if !self.audio_covers(video) {
            return None;
        }
        let (from, to) = (
            video.wallclock.checked_sub(TS_AUDIO_SLACK)?,
            segment_end(video) + TS_AUDIO_SLACK,
        );
        let audio = match self.renditions.values().find(|a| a.is_audio()) {
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
            ttl: self.segment_ttl(cfg, &r.window, seq),
        })
    }
}
