//! The ABR ladder: what renditions to produce for a given source. Pure and unit-tested.

use serde::Deserialize;

/// A whole ladder file (`pipelines/ladder.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    /// Settings shared by every video rung.
    pub video: VideoSettings,
    /// The single AAC rendition.
    pub audio: AudioSettings,
    /// The optional passthrough rung.
    #[serde(default)]
    pub source: SourceSettings,
    /// Video rungs, any order.
    pub rungs: Vec<Rung>,
}

/// `[video]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSettings {
    /// Output frame rate of every rung.
    pub fps: u32,
    /// x264 `speed-preset` nick.
    pub preset: String,
    /// H.264 profile caps of the encoder output.
    pub profile: String,
    /// The height the ladder is planned for when the publisher declares no capture size
    /// (`?height=` on the WHIP or WebSocket URL) and its first frame is smaller; 0 plans
    /// from the first frame alone. See [`Ladder::plan`] for why.
    #[serde(default = "default_plan_height")]
    pub plan_height: u32,
}

fn default_plan_height() -> u32 {
    720
}

/// `[audio]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSettings {
    /// AAC bitrate.
    pub bitrate_kbps: u32,
    /// BCP 47 tag for `EXT-X-MEDIA LANGUAGE` (AUTH 8.9 requires one).
    pub language: String,
    /// The AAC encoder's quantizer search.
    #[serde(default)]
    pub aac_coder: AacCoder,
}

/// `[audio] aac_coder`: the quantizer search of FFmpeg's AAC encoder (`avenc_aac`
/// `aac-coder`). AAC encoding is most of what a passthrough stream costs: Opus from
/// WebRTC must become AAC for HLS players (measured with perf at 24 passthrough streams:
/// 35 % of whipcast's CPU in libavcodec; BENCHMARKS.md "Where a passthrough stream's CPU
/// goes").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AacCoder {
    /// FFmpeg's default: better rate control and quality.
    #[default]
    Twoloop,
    /// About 45 % less CPU per stream (measured: 60 s of 48 kHz stereo at 128 kbit/s in
    /// 0.58 CPU-s instead of 1.06 on pink noise, 0.55 instead of 0.91 on a sine). FFmpeg
    /// made it its default in 2018 for sounding as good at 128 kbit/s and up, then went
    /// back to twoloop for its rate control: an option for density, not the default.
    Fast,
}

impl AacCoder {
    /// The `aac-coder` enum nick of `avenc_aac`.
    pub fn nick(self) -> &'static str {
        match self {
            AacCoder::Twoloop => "twoloop",
            AacCoder::Fast => "fast",
        }
    }
}

/// `[source]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// Whether H.264 input is also served untouched as rung `source`.
    #[serde(default)]
    pub enabled: bool,
}

/// One `[[rungs]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Rendition name, used in URLs.
    pub name: String,
    /// Output height in pixels.
    pub height: u32,
    /// Target video bitrate.
    pub bitrate_kbps: u32,
}

/// A rung resolved against a real source size.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRung {
    /// Rendition name.
    pub name: String,
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Target video bitrate.
    pub bitrate_kbps: u32,
}

const PRESETS: &[&str] = &[
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
];
const PROFILES: &[&str] = &["constrained-baseline", "baseline", "main", "high"];

/// Names used in URLs: same alphabet as stream keys.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Ladder {
    /// Checks the ladder; the message names the offending entry.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=60).contains(&self.video.fps) {
            return Err(format!("video.fps = {} must be 1..=60", self.video.fps));
        }
        if !PRESETS.contains(&self.video.preset.as_str()) {
            return Err(format!(
                "video.preset {:?} must be one of {PRESETS:?}",
                self.video.preset
            ));
        }
        if !PROFILES.contains(&self.video.profile.as_str()) {
            return Err(format!(
                "video.profile {:?} must be one of {PROFILES:?}",
                self.video.profile
            ));
        }
        if self.video.plan_height != 0 && !(90..=2160).contains(&self.video.plan_height) {
            return Err(format!(
                "video.plan_height = {} must be 0 or 90..=2160",
                self.video.plan_height
            ));
        }
        if !(32..=320).contains(&self.audio.bitrate_kbps) {
            return Err("audio.bitrate_kbps must be 32..=320 (AUTH 2.9)".into());
        }
        if self.audio.language.is_empty() {
            return Err("audio.language must not be empty (AUTH 8.10)".into());
        }
        if self.rungs.is_empty() && !self.source.enabled {
            return Err("needs at least one rung or source.enabled = true".into());
        }
        let mut names: Vec<&str> = vec![super::AUDIO_RENDITION];
        if self.source.enabled {
            names.push(super::SOURCE_RENDITION);
        }
        for r in &self.rungs {
            if !valid_name(&r.name) {
                return Err(format!(
                    "rung name {:?} must be [A-Za-z0-9_-]{{1,32}}",
                    r.name
                ));
            }
            if names.contains(&r.name.as_str()) {
                return Err(format!(
                    "rung name {:?} is used twice (or reserved)",
                    r.name
                ));
            }
            names.push(&r.name);
            if !(90..=2160).contains(&r.height) {
                return Err(format!("rung {:?}: height must be 90..=2160", r.name));
            }
            if !(100..=50_000).contains(&r.bitrate_kbps) {
                return Err(format!(
                    "rung {:?}: bitrate_kbps must be 100..=50000",
                    r.name
                ));
            }
        }
        Ok(())
    }

    /// The rungs to produce for a source whose first frame is `src_w`×`src_h`, highest
    /// first. `hint` is the capture height the publisher declared, if any.
    ///
    /// Why not from the first frame alone: a WebRTC sender ramps up. Chromium's bandwidth
    /// estimation starts low, so with a 720p camera its encoder sends 640x360 for the first
    /// seconds, then 960x540, then 1280x720; and the rendition set in the multivariant
    /// playlist must not change once served (hls.js and Safari read it once, a CDN caches
    /// it). So the ladder is planned for the height the publisher *will* send: the declared
    /// capture height (the bundled publisher page sends it), else at least
    /// `video.plan_height`. Until the sender has ramped up, the rungs above its current size
    /// are scaled up from it. The cost is a rung that stays upscaled for a publisher that
    /// declares nothing and really sends less than `plan_height`; the alternative, holding
    /// the multivariant playlist back until the size settles, would cost seconds of
    /// start-up, and building rungs later would change a playlist players already read.
    ///
    /// A rung is kept if it is not above the planned height (upscaling beyond what the
    /// publisher sends wastes bits and lies to the player). Every source of 240 lines or
    /// more gets at least two renditions, so a viewer on a poor network has something to
    /// switch to: when only one rung fits, the next one up is produced at the planned
    /// height. A source below every rung gets the lowest rung at its own height.
    pub fn plan(&self, src_w: u32, src_h: u32, hint: Option<u32>) -> Vec<PlannedRung> {
        let (src_w, src_h) = (src_w.max(2), src_h.max(2));
        let floor = hint.unwrap_or(self.video.plan_height);
        let target = src_h.max(floor.min(2160));
        let mut rungs: Vec<&Rung> = self.rungs.iter().collect();
        rungs.sort_by_key(|r| std::cmp::Reverse(r.height));
        let fits = rungs.iter().filter(|r| r.height <= target).count();
        let mut out: Vec<PlannedRung> = Vec::new();
        if fits < rungs.len() && (fits == 0 || (fits == 1 && target >= 240)) {
            // The lowest rung above the target, at the target's height.
            let above = rungs[rungs.len() - fits - 1];
            if rungs
                .get(rungs.len() - fits)
                .is_none_or(|r| even(r.height) < even(target))
            {
                out.push(planned(above, target, src_w, src_h));
            }
        }
        out.extend(
            rungs
                .iter()
                .filter(|r| r.height <= target)
                .map(|r| planned(r, r.height, src_w, src_h)),
        );
        out
    }
}

fn even(v: u32) -> u32 {
    (v.max(2) + 1) & !1
}

fn planned(r: &Rung, height: u32, src_w: u32, src_h: u32) -> PlannedRung {
    let height = even(height);
    // Keep the source aspect ratio; round to the nearest even width (H.264 4:2:0 needs even).
    let num = u64::from(src_w) * u64::from(height);
    let den = 2 * u64::from(src_h);
    let width = (2 * ((num + den / 2) / den)).max(2) as u32;
    PlannedRung {
        name: r.name.clone(),
        width,
        height,
        bitrate_kbps: r.bitrate_kbps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder() -> Ladder {
        toml::from_str(crate::media::DEFAULT_LADDER).expect("default ladder parses")
    }

    #[test]
    fn default_ladder_is_valid() {
        let l = ladder();
        l.validate().expect("valid");
        assert_eq!(l.rungs.len(), 5);
        assert_eq!(l.video.plan_height, 720);
        assert!(!l.source.enabled);
    }

    fn names(p: &[PlannedRung]) -> Vec<&str> {
        p.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn plan_drops_rungs_above_source() {
        let p = ladder().plan(1280, 720, None);
        assert_eq!(names(&p), ["720p", "480p", "360p", "234p"]);
        assert_eq!((p[0].width, p[0].height), (1280, 720));
        assert_eq!((p[1].width, p[1].height), (854, 480));
        assert_eq!((p[2].width, p[2].height), (640, 360));
        // Apple's lowest rung (AUTH 1.25): 416x234.
        assert_eq!((p[3].width, p[3].height), (416, 234));
        assert_eq!(ladder().plan(1920, 1080, None).len(), 5);
    }

    #[test]
    fn a_ramping_sender_is_planned_for_where_it_is_going() {
        // Chromium's first frames of a 720p capture are 640x360: without a hint the ladder
        // is planned for plan_height, with the first frame's aspect ratio.
        let p = ladder().plan(640, 360, None);
        assert_eq!(names(&p), ["720p", "480p", "360p", "234p"]);
        assert_eq!((p[0].width, p[0].height), (1280, 720));
        // A declared capture size wins over plan_height, both ways.
        assert_eq!(ladder().plan(640, 360, Some(1080)).len(), 5);
        assert_eq!(names(&ladder().plan(640, 360, Some(360))), ["360p", "234p"]);
        // A first frame larger than the hint is what the sender really sends.
        assert_eq!(ladder().plan(1280, 720, Some(360)).len(), 4);
        // plan_height = 0: the first frame alone.
        let mut l = ladder();
        l.video.plan_height = 0;
        assert_eq!(names(&l.plan(640, 360, None)), ["360p", "234p"]);
    }

    #[test]
    fn plan_keeps_aspect_and_even_sizes() {
        // 4:3 portrait-ish odd source.
        let p = ladder().plan(1001, 751, None);
        assert_eq!(p[0].name, "720p");
        assert_eq!(p[0].height, 720);
        assert_eq!(p[0].width % 2, 0);
        assert_eq!(p[0].width, 960);
        // Portrait phone 720x1280: every rung fits under 1280 high.
        let p = ladder().plan(720, 1280, None);
        assert_eq!(p[0].name, "1080p");
        assert_eq!((p[0].width, p[0].height), (608, 1080));
    }

    #[test]
    fn small_sources_get_two_renditions_from_240_lines() {
        let mut l = ladder();
        l.video.plan_height = 0;
        // 240p: the 234p rung fits; the next one up is made at the source height.
        let p = l.plan(426, 240, None);
        assert_eq!(names(&p), ["360p", "234p"]);
        assert_eq!((p[0].width, p[0].height), (426, 240));
        // Exactly a rung's height: that rung and the one below.
        assert_eq!(names(&l.plan(640, 360, None)), ["360p", "234p"]);
        // Below 240 lines: one rung at the source's own size.
        let p = l.plan(320, 180, None);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].name, "234p");
        assert_eq!((p[0].width, p[0].height), (320, 180));
    }

    #[test]
    fn validate_rejects_duplicates_and_bad_values() {
        let mut l = ladder();
        l.rungs[1].name = "1080p".into();
        assert!(l.validate().expect_err("dup").contains("1080p"));
        let mut l = ladder();
        l.rungs[0].name = "audio".into();
        assert!(l.validate().is_err());
        let mut l = ladder();
        l.video.preset = "placebo-ish".into();
        assert!(l.validate().expect_err("preset").contains("preset"));
        let mut l = ladder();
        l.rungs[2].height = 5000;
        assert!(l.validate().expect_err("height").contains("480p"));
    }

    #[test]
    fn aac_coder_is_twoloop_unless_set() {
        assert_eq!(ladder().audio.aac_coder, AacCoder::Twoloop);
        let audio = |extra: &str| {
            toml::from_str::<AudioSettings>(&format!(
                "bitrate_kbps = 128\nlanguage = \"en\"\n{extra}"
            ))
        };
        let fast = audio("aac_coder = \"fast\"").expect("fast parses");
        assert_eq!(fast.aac_coder.nick(), "fast");
        let err = audio("aac_coder = \"anmr\"").expect_err("unknown coder");
        assert!(err.to_string().contains("twoloop"), "{err}");
    }
}
