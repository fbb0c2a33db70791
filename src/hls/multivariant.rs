//! The multivariant playlists (HLS2 §4.4.6): the fMP4 one, with one `EXT-X-STREAM-INF`
//! per video rung and one shared `EXT-X-MEDIA` audio rendition, and the MPEG-TS one, with
//! audio muxed into every variant. The only file that names `m3u8_rs` outside tests: it
//! writes these well, while the media playlists need LL-HLS tags it lacks (see
//! [`super::media_playlist`]). Pure: takes the renditions, returns text.

use bytes::Bytes;
use m3u8_rs::{AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream};

use crate::media::{RenditionInfo, RenditionKind};

/// `EXT-X-MAP` in the media playlists needs protocol version 6 (HLS2 §8), and the
/// multivariant playlist declares the same.
const FMP4_VERSION: usize = 6;
/// The MPEG-TS variants need only version 3 (decimal `EXTINF`, HLS2 §8): the players that
/// need TS are the old ones.
const TS_VERSION: usize = 3;

/// The audio group every video variant refers to.
const AUDIO_GROUP: &str = "aac";

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
pub(super) fn master_muxed(video: &[MasterEntry<'_>], audio: Option<&MasterEntry<'_>>) -> Bytes {
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
        version: Some(if muxed { TS_VERSION } else { FMP4_VERSION }),
        variants,
        alternatives,
        // Every segment of every rung starts with an IDR (HLS2 §4.4.2.1, AUTH 9.11).
        independent_segments: true,
        ..Default::default()
    };
    let mut out = Vec::with_capacity(1024);
    pl.write_to(&mut out)
        .expect("writing into a Vec cannot fail");
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
