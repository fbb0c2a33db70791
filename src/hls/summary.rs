//! What `/api/streams` shows of a stream's HLS state (the origin adds the outputs).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::stream::StreamState;
use crate::keyframes::KeyframeStats;
use crate::media::RenditionKind;
use crate::simulcast::Plan as SimulcastPlan;

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
    /// The publisher's simulcast layers (RFC 8853): the rendition each became, and the
    /// offered layers left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simulcast: Option<SimulcastPlan>,
    /// Bytes of media held in memory for this stream (all renditions).
    pub memory_bytes: usize,
    /// Segments dropped early to stay within `hls.stream_memory_mib`.
    pub trimmed_segments: u64,
    /// Segments moved to disk to stay within it (`hls.dvr_overflow = "disk"`).
    pub spilled_segments: u64,
}

/// How far back the lag percentiles look: a stream's steady state, not its start-up (the
/// first parts wait for the pipeline to start; a whole run's percentile kept them for as
/// long as the ring held them, ~70 s of a 3-rung LL-HLS ladder, longer with fewer rungs).
const LAG_WINDOW: Duration = Duration::from_secs(30);

/// Percentiles of the recent server lags (the last [`LAG_WINDOW`]).
#[derive(Debug, Clone, Serialize, Default)]
pub struct LagSummary {
    /// Median, ms.
    pub p50: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// Samples (from the last 30 s, up to 1024).
    pub samples: usize,
}

fn lag_summary(lags: &VecDeque<(Instant, u32)>, now: Instant) -> LagSummary {
    let since = now.checked_sub(LAG_WINDOW);
    let mut v: Vec<u32> = lags
        .iter()
        .filter(|(at, _)| since.is_none_or(|s| *at >= s))
        .map(|(_, lag)| *lag)
        .collect();
    if v.is_empty() {
        return LagSummary::default();
    }
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

impl StreamState {
    /// The API view of this broadcast of `name`.
    pub(super) fn summary(&self, name: &str, now: Instant) -> StreamSummary {
        StreamSummary {
            name: name.to_string(),
            state: if self.ended_at.is_some() {
                "ended"
            } else {
                "live"
            },
            epoch: self.epoch.clone(),
            uptime_s: self
                .ended_at
                .unwrap_or(now)
                .duration_since(self.started_at)
                .as_secs_f64(),
            ingest: self.ingest.clone(),
            renditions: self
                .renditions
                .values()
                .map(|r| {
                    let (width, height) = match r.info.kind {
                        RenditionKind::Video { width, height, .. } => (Some(width), Some(height)),
                        RenditionKind::Audio { .. } => (None, None),
                    };
                    RenditionSummary {
                        name: r.info.name.clone(),
                        codecs: r.info.codecs.clone(),
                        width,
                        height,
                        segments: r.window.next_seq(),
                        average_bps: r.bitrate.average_bps(),
                    }
                })
                .collect(),
            master: format!("/hls/{name}/master.m3u8"),
            lag_ms: lag_summary(&self.lags, now),
            keyframes: self.keyframes.clone(),
            simulcast: self.simulcast.clone(),
            memory_bytes: self.renditions.values().map(|r| r.window.bytes()).sum(),
            trimmed_segments: self.trimmed_segments,
            spilled_segments: self.spilled_segments,
            first_playable_s: self
                .first_playable
                .map(|t| t.duration_since(self.started_at).as_secs_f64()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_percentiles_look_at_the_last_window_only() {
        let t0 = Instant::now();
        // A slow start-up (2 s lags), then 40 s of 50 ms.
        let mut lags: VecDeque<(Instant, u32)> = (0..10)
            .map(|i| (t0 + Duration::from_millis(i * 100), 2_000_000))
            .collect();
        lags.extend((0..400).map(|i| (t0 + Duration::from_millis(2_000 + i * 100), 50_000)));
        let now = t0 + Duration::from_secs(42);
        let s = lag_summary(&lags, now);
        assert_eq!((s.p50, s.p99), (50.0, 50.0));
        assert_eq!(s.samples, 300);
        // Early on, the start-up is all there is.
        let early = lag_summary(&lags, t0 + Duration::from_secs(1));
        assert_eq!(early.p99, 2000.0);
        assert_eq!(lag_summary(&VecDeque::new(), now).samples, 0);
    }
}
