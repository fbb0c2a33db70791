//! `[hls]`: segment and part durations, the live and DVR windows, retention, the memory
//! budget and what happens past it, with the checks on them. Plain data and arithmetic
//! over it; the HLS store applies it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[hls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Target segment duration. Keyframes are forced on this cadence in every rung.
    #[serde(with = "humantime_serde")]
    pub segment_duration: Duration,
    /// LL-HLS part duration (the muxer's CMAF chunk duration); `0s` turns LL-HLS off.
    /// Must divide `segment_duration` exactly (cmafmux 0.14.5 skips fragment boundaries
    /// otherwise, measured).
    #[serde(with = "humantime_serde")]
    pub part_duration: Duration,
    /// `PART-HOLD-BACK` as a multiple of `PART-TARGET`: how far behind the live edge an
    /// LL-HLS player aims to play. HLS2 §4.4.3.8 requires ≥ 2 and recommends ≥ 3; Apple makes
    /// 3 a MUST (HLS authoring spec 14.3).
    pub part_hold_back_factor: f64,
    /// `EXT-X-START:TIME-OFFSET=-<this>` in the LL-HLS media playlists (HLS2 §4.4.2.2): where a
    /// joining player starts, back from the end of the playlist; `0s`: no tag, players start
    /// `PART-HOLD-BACK` from the end.
    ///
    /// E.g. 200 ms, closer than `PART-HOLD-BACK` (0.666 s), on purpose: a player picks
    /// its start position when the first media playlist arrives and plays its first frame
    /// 0.5–1.1 s later (hls.js 1.7: start its transmux worker, wait for video before loading
    /// audio, load and append every part from the independent one, decode up to the start),
    /// and never catches up by default (`maxLiveSyncPlaybackRate` 1). So it plays that much
    /// behind where it started, with that much buffer ahead. Measured with a stock hls.js:
    /// glass-to-glass median 1.48 s without the tag, 1.04 s with 200 ms, no stall in 17
    /// joins. Default off all the same: with 200 ms the bundled page stalled once at its
    /// start in a CI run under load (BENCHMARKS.md "Latency in a stock hls.js").
    #[serde(with = "humantime_serde")]
    pub start_offset: Duration,
    /// Most blocking playlist / preload-hint requests parked at once; beyond it: 503 with
    /// `Retry-After`.
    pub max_blocking_requests: usize,
    /// Segments listed in each live media playlist (Apple requires ≥ 6, AUTH 8.11).
    ///
    /// 15 (30 s of 2 s segments), well over `CAN-SKIP-UNTIL` (6 target durations, HLS2
    /// §4.4.3.8), so LL-HLS players reload delta playlists (`_HLS_skip=YES`) of about 6 s
    /// and a full one only when they join or switch. Why not 6: hls.js (1.7) places the
    /// segments of a level it comes back to by those it loaded there before, matched by
    /// sequence number; when none of them is still listed it guesses from the number of
    /// segments in between times their average `EXTINF`, and misses by as much as the
    /// segments in between differed from that average (a late keyframe, a simulcast
    /// boundary not common to every layer). Measured in tests/simulcast.rs on a loaded
    /// machine: back on 720p after 12 s away with a 6 s window, hls.js placed its parts
    /// 0.75 s early, left a hole in the buffer and stalled.
    pub window_segments: usize,
    /// Segments kept downloadable after they leave the playlist (HLS2 §6.2.2: at least one
    /// playlist duration).
    pub retain_segments: usize,
    /// How long an ended stream's playlists and segments stay served.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// DVR: how far back the live playlists reach (e.g. `"2h"`); `"0s"` = just
    /// `window_segments`. The playlists list max(window_segments, dvr_window /
    /// segment_duration) segments; players can seek back that far.
    #[serde(with = "humantime_serde")]
    pub dvr_window: Duration,
    /// Memory budget per stream (all renditions, listed and retained segments), MiB. What
    /// exceeds it is handled by `dvr_overflow`.
    pub stream_memory_mib: u64,
    /// Past the memory budget: `"trim"` drops the oldest segments (retained ones first, then
    /// listed ones down to three: the DVR window shrinks); `"disk"` moves the oldest
    /// segments' bytes to files under `spill_directory` and keeps listing them (falls back
    /// to trimming if the disk fails).
    pub dvr_overflow: DvrOverflow,
    /// Where `dvr_overflow = "disk"` writes (`<dir>/<stream>/<epoch>/<rendition>/<n>.m4s`;
    /// files are deleted as their segments leave the window, the directory with the stream).
    pub spill_directory: PathBuf,
}

/// `hls.dvr_overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DvrOverflow {
    /// Drop the oldest segments.
    Trim,
    /// Move the oldest segments to disk.
    Disk,
}

impl HlsConfig {
    /// Segments each media playlist lists: the live window, or the DVR window if longer.
    pub fn listed_segments(&self) -> usize {
        let seg = self.segment_duration.as_millis().max(1);
        let dvr = self.dvr_window.as_millis().div_ceil(seg) as usize;
        self.window_segments.max(dvr)
    }

    /// [`HlsConfig::stream_memory_mib`] in bytes.
    pub fn stream_memory_bytes(&self) -> usize {
        usize::try_from(self.stream_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let seg = self.segment_duration;
        if seg < Duration::from_millis(500) || seg > Duration::from_secs(20) {
            return Err(invalid(
                "hls.segment_duration",
                "must be between 500ms and 20s",
            ));
        }
        if !seg.subsec_millis().is_multiple_of(100) {
            return Err(invalid(
                "hls.segment_duration",
                "must be a multiple of 100ms (cmafmux cuts on exact multiples)",
            ));
        }
        let part = self.part_duration;
        if !part.is_zero() {
            if part < Duration::from_millis(100) || part > seg / 2 {
                return Err(invalid(
                    "hls.part_duration",
                    "must be 0s (LL-HLS off) or between 100ms and half of hls.segment_duration",
                ));
            }
            if !(2.0..=10.0).contains(&self.part_hold_back_factor) {
                return Err(invalid(
                    "hls.part_hold_back_factor",
                    "must be between 2 and 10 (HLS2 §4.4.3.8: at least twice the part target)",
                ));
            }
            if !seg.as_nanos().is_multiple_of(part.as_nanos()) {
                return Err(invalid(
                    "hls.part_duration",
                    "must divide hls.segment_duration exactly (e.g. 2s / 200ms)",
                ));
            }
        }
        if self.start_offset > seg * 3 {
            return Err(invalid(
                "hls.start_offset",
                "must be at most 3 segment durations (0s: no EXT-X-START)",
            ));
        }
        if self.dvr_window > Duration::from_secs(24 * 3600) {
            return Err(invalid("hls.dvr_window", "must be at most 24h"));
        }
        if self.stream_memory_mib < 1 {
            return Err(invalid("hls.stream_memory_mib", "must be at least 1"));
        }
        if self.dvr_overflow == DvrOverflow::Disk && self.spill_directory.as_os_str().is_empty() {
            return Err(invalid(
                "hls.spill_directory",
                "must be set when hls.dvr_overflow = \"disk\"",
            ));
        }
        if self.window_segments < 3 {
            return Err(invalid(
                "hls.window_segments",
                "must be at least 3 (HLS2 §6.2.2; Apple requires 6)",
            ));
        }
        Ok(())
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(2),
            part_duration: Duration::from_millis(200),
            part_hold_back_factor: 3.0,
            start_offset: Duration::ZERO,
            max_blocking_requests: 10_000,
            window_segments: 15,
            retain_segments: 6,
            grace_period: Duration::from_secs(60),
            dvr_window: Duration::ZERO,
            // 15 + 6 segments of a 5 Mbit/s 1080p ladder (~9.5 Mbit/s) take ~50 MiB; this
            // leaves room for a DVR window of ~7 minutes at that rate, or hours at low ones.
            stream_memory_mib: 512,
            dvr_overflow: DvrOverflow::Trim,
            spill_directory: PathBuf::from("spill"),
        }
    }
}
