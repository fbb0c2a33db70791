//! A strict-enough look at an SDP offer before any WebRTC machinery is spent on it.
//! Pure; it decides 400 (malformed) versus 422 (well-formed but unusable).
//!
//! Lenient where OBS needs it (STANDARDS §1d): session-level ICE and fingerprint attributes,
//! `a=group:LS`, no `bundle-only`, upper/lower-case codec names, H.264 fmtp that lies about
//! the profile (we never trust it: the decoder reads the SPS).

/// What the offer asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSummary {
    /// Video codecs offered that we can ingest, in offer order (`H264`, `VP8`, `VP9`).
    pub video_codecs: Vec<String>,
    /// RTP payload type of Opus in a sending audio section, if there is one.
    pub audio_payload_type: Option<u8>,
}

/// Why an offer is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SdpError {
    /// Not SDP at all (HTTP 400).
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Well-formed, but without a sendable video section (HTTP 422).
    #[error("the offer has no video track to publish")]
    NoVideo,
    /// Video or audio in codecs we do not take (HTTP 422).
    #[error("unsupported codecs: {0} (supported: H264, VP8, VP9 video; Opus audio)")]
    UnsupportedCodec(String),
    /// More than one audio or video track (RFC 9725 §4.4.2; HTTP 422).
    #[error("the offer has {0}; WHIP allows one audio and one video track")]
    TooManyTracks(String),
    /// A section that would not send (RFC 9725 §4.2: clients must not offer recvonly or inactive).
    #[error("the {0} section is {1}; a publisher must offer sendonly or sendrecv")]
    BadDirection(String, String),
}

const VIDEO_CODECS: &[&str] = &["H264", "VP8", "VP9"];

#[derive(Default)]
struct Section {
    media: String,
    port: u32,
    codecs: Vec<String>,
    payload_types: Vec<u8>,
    direction: Option<String>,
}

/// Inspects an offer.
pub fn inspect_offer(sdp: &str) -> Result<OfferSummary, SdpError> {
    let sdp = sdp.trim_start_matches('\u{feff}').trim_start();
    if !sdp.starts_with("v=0") {
        return Err(SdpError::Malformed("must start with v=0".into()));
    }
    let mut session_direction: Option<String> = None;
    let mut sections: Vec<Section> = Vec::new();
    for (n, raw) in sdp.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(SdpError::Malformed(format!(
                "line {} is not `<type>=<value>`",
                n + 1
            )));
        }
        let value = &line[2..];
        match b[0] {
            b'm' => {
                let parts: Vec<&str> = value.split_whitespace().collect();
                if parts.len() < 4 {
                    return Err(SdpError::Malformed(format!(
                        "line {}: short m= line",
                        n + 1
                    )));
                }
                let port = parts[1]
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u32>().ok())
                    .ok_or_else(|| SdpError::Malformed(format!("line {}: bad port", n + 1)))?;
                sections.push(Section {
                    media: parts[0].to_string(),
                    port,
                    ..Section::default()
                });
            }
            b'a' => {
                let dir = matches!(value, "sendonly" | "sendrecv" | "recvonly" | "inactive");
                match sections.last_mut() {
                    Some(sec) => {
                        if dir {
                            sec.direction = Some(value.to_string());
                        } else if let Some(rest) = value.strip_prefix("rtpmap:") {
                            // a=rtpmap:<pt> <name>/<clock>[/<channels>]
                            let mut it = rest.split_whitespace();
                            let pt = it.next().and_then(|p| p.parse::<u8>().ok());
                            let name = it.next().and_then(|enc| enc.split('/').next());
                            let (Some(pt), Some(name)) = (pt, name) else {
                                return Err(SdpError::Malformed(format!(
                                    "line {}: bad rtpmap",
                                    n + 1
                                )));
                            };
                            sec.codecs.push(name.to_ascii_uppercase());
                            sec.payload_types.push(pt);
                        }
                    }
                    None if dir => session_direction = Some(value.to_string()),
                    None => {}
                }
            }
            _ => {}
        }
    }
    if sections.is_empty() {
        return Err(SdpError::Malformed("no m= section".into()));
    }
    let active: Vec<&Section> = sections
        .iter()
        .filter(|s| s.port != 0 && (s.media == "video" || s.media == "audio"))
        .collect();
    let count = |m: &str| active.iter().filter(|s| s.media == m).count();
    let (videos, audios) = (count("video"), count("audio"));
    if videos > 1 || audios > 1 {
        return Err(SdpError::TooManyTracks(format!(
            "{videos} video and {audios} audio sections"
        )));
    }
    for s in &active {
        let dir = s
            .direction
            .as_deref()
            .or(session_direction.as_deref())
            .unwrap_or("sendrecv");
        if dir == "recvonly" || dir == "inactive" {
            return Err(SdpError::BadDirection(s.media.clone(), dir.to_string()));
        }
    }
    let video = active
        .iter()
        .find(|s| s.media == "video")
        .ok_or(SdpError::NoVideo)?;
    let video_codecs: Vec<String> = video
        .codecs
        .iter()
        .filter(|c| VIDEO_CODECS.contains(&c.as_str()))
        .fold(Vec::new(), |mut acc, c| {
            if !acc.contains(c) {
                acc.push(c.clone());
            }
            acc
        });
    if video_codecs.is_empty() {
        return Err(SdpError::UnsupportedCodec(format!(
            "video {}",
            video.codecs.join(", ")
        )));
    }
    let audio_payload_type = match active.iter().find(|s| s.media == "audio") {
        None => None,
        Some(a) if a.codecs.iter().any(|c| c == "OPUS") => a
            .codecs
            .iter()
            .position(|c| c == "OPUS")
            .and_then(|i| a.payload_types.get(i).copied()),
        Some(a) => {
            return Err(SdpError::UnsupportedCodec(format!(
                "audio {}",
                a.codecs.join(", ")
            )));
        }
    };
    Ok(OfferSummary {
        video_codecs,
        audio_payload_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What OBS 30.2+ sends (tinywhip #2 capture, trimmed): session-level ICE/DTLS, group:LS,
    /// no candidates, 42e01f whatever the encoder does, lower-case opus.
    const OBS: &str = include_str!("../../tests/data/obs-offer.sdp");

    #[test]
    fn obs_offer_is_accepted() {
        let s = inspect_offer(OBS).expect("OBS offer");
        assert_eq!(s.video_codecs, ["H264"]);
        assert_eq!(s.audio_payload_type, Some(111));
    }

    #[test]
    fn video_only_lf_line_endings() {
        let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=video 9 UDP/TLS/RTP/SAVPF 96 98\na=rtpmap:96 VP8/90000\na=rtpmap:98 vp9/90000\na=rtpmap:99 rtx/90000\n";
        let s = inspect_offer(sdp).expect("ok");
        assert_eq!(s.video_codecs, ["VP8", "VP9"]);
        assert_eq!(s.audio_payload_type, None);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            inspect_offer("hello"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(inspect_offer(""), Err(SdpError::Malformed(_))));
        assert!(matches!(
            inspect_offer("v=0\r\nthis is not sdp\r\n"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            inspect_offer("v=0\r\ns=-\r\n"),
            Err(SdpError::Malformed(_))
        ));
        assert!(matches!(
            inspect_offer("v=0\r\nm=video 9\r\n"),
            Err(SdpError::Malformed(_))
        ));
    }

    #[test]
    fn unusable_offers_are_422_kinds() {
        let audio_only = OBS.split("m=video").next().expect("head");
        assert_eq!(inspect_offer(audio_only), Err(SdpError::NoVideo));
        let av1 = OBS.replace("H264/90000", "AV1/90000");
        assert!(matches!(
            inspect_offer(&av1),
            Err(SdpError::UnsupportedCodec(_))
        ));
        let pcmu = OBS.replace("opus/48000/2", "PCMU/8000");
        assert!(matches!(
            inspect_offer(&pcmu),
            Err(SdpError::UnsupportedCodec(_))
        ));
        let recv = OBS.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly");
        assert!(matches!(
            inspect_offer(&recv),
            Err(SdpError::BadDirection(..))
        ));
        let two = format!("{OBS}m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n");
        assert!(matches!(
            inspect_offer(&two),
            Err(SdpError::TooManyTracks(_))
        ));
        // A rejected (port 0) extra section does not count.
        let rejected = format!("{OBS}m=video 0 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n");
        assert!(inspect_offer(&rejected).is_ok());
    }
}
