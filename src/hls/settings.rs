//! The LL-HLS settings every playlist of the process shares, derived once from the
//! configuration: part target, parts per segment, server control, advance part limit.

use std::time::Duration;

use super::media_playlist::target_duration;
use super::tags::ServerControl;
use crate::config::HlsConfig;

/// LL-HLS settings derived once from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct LlSettings {
    /// Configured part duration (the muxer's chunk duration).
    pub part_duration: Duration,
    /// `PART-TARGET`: no part is longer.
    pub(super) part_target: Duration,
    /// Parts per segment on the muxer's own cadence.
    pub(super) parts_per_segment: usize,
    /// `EXT-X-SERVER-CONTROL` values.
    pub(super) server_control: ServerControl,
    /// `EXT-X-START:TIME-OFFSET`, negative: from the end (`None`: no tag).
    pub(super) start_offset: Option<Duration>,
}

/// One AAC-LC frame at 48 kHz: 1024 samples.
const AAC_FRAME: Duration = Duration::from_nanos(21_333_334);

impl LlSettings {
    /// `None` when LL-HLS is off (`hls.part_duration = "0s"`).
    pub(super) fn from_config(cfg: &HlsConfig) -> Option<LlSettings> {
        if cfg.part_duration.is_zero() {
            return None;
        }
        // Audio parts are whole AAC frames, which do not divide e.g. 200 ms: they come out
        // one frame longer or shorter than the chunk duration. PART-TARGET must bound every
        // part (HLS2 §4.4.4.9), so it is the chunk duration plus one frame, rounded up to
        // the millisecond; video parts (the part duration at a constant frame rate that
        // divides it; otherwise 189 ms to PART-TARGET for frames at most 33 ms apart,
        // media/mux.rs VIDEO_EARLY) stay above 85 % of it.
        let ms = (cfg.part_duration + AAC_FRAME).as_micros().div_ceil(1000) as u64;
        let part_target = Duration::from_millis(ms);
        let td = target_duration(cfg.segment_duration);
        Some(LlSettings {
            part_duration: cfg.part_duration,
            part_target,
            parts_per_segment: (cfg.segment_duration.as_nanos() / cfg.part_duration.as_nanos())
                as usize,
            server_control: ServerControl::new(td, part_target, cfg.part_hold_back_factor),
            start_offset: (!cfg.start_offset.is_zero()).then_some(cfg.start_offset),
        })
    }

    /// HLS2 §6.2.5.2 Advance Part Limit: how far ahead of the newest part a request may be.
    pub(super) fn advance_part_limit(&self) -> u64 {
        let t = self.part_target.as_secs_f64();
        if t < 1.0 { (3.0 / t) as u64 } else { 3 }
    }
}
