//! What a publisher's offer asks for, and whether we can take it. Pure: the text is parsed
//! once, by the WebRTC stack's own SDP parser, in [`super::inspect_offer`], which
//! hands this module our own [`OfferSection`]s; the rules here decide 400 (malformed)
//! versus 422 (well-formed but unusable) and what the pipeline will receive.
//!
//! Lenient where real publishers need it:
//! - OBS: session-level ICE, DTLS and direction attributes, `a=group:LS`, no `bundle-only`,
//!   an H.264 fmtp that claims `42e01f` whatever the encoder sends (never trusted: the
//!   decoder reads the SPS);
//! - GStreamer webrtcbin (max-bundle): every section after the first is `m=… 0 …` with
//!   `a=bundle-only`. RFC 8843 §7.2.1: such a section is part of the BUNDLE group, not
//!   rejected; port 0 means rejected only without `bundle-only` (RFC 3264 §6);
//! - codec names in any case (`OPUS`, `opus`, `h264`);
//! - `a=inactive` sections carry nothing and are ignored like rejected ones.
//!
//! Strict where the stack is not: numbers out of their RFC's range are malformed
//! (`sdp_numbers`).

/// One `m=` section of an offer, as the peer module read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OfferSection {
    /// `audio`, `video`, `application`, …
    pub media: String,
    /// The `m=` line's port.
    pub port: u16,
    /// `a=bundle-only` is present (RFC 8843 §6).
    pub bundle_only: bool,
    /// The section's direction attribute, or the session-level one (RFC 4566 §6).
    pub direction: Option<Direction>,
    /// `(payload type, encoding name)` per `a=rtpmap`, in offer order.
    pub codecs: Vec<(u8, String)>,
    /// The simulcast layers the section sends: the ids of its `a=rid:<id> send` lines
    /// (RFC 8851 §4), in offer order.
    pub send_rids: Vec<String>,
}

/// A media direction attribute (RFC 4566 §6, RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendonly`.
    SendOnly,
    /// `a=sendrecv` (also the default without an attribute).
    SendRecv,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// Parses an attribute name.
    pub fn from_attribute(key: &str) -> Option<Direction> {
        match key {
            "sendonly" => Some(Direction::SendOnly),
            "sendrecv" => Some(Direction::SendRecv),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::SendOnly => "sendonly",
            Direction::SendRecv => "sendrecv",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

impl OfferSection {
    /// Whether the section takes part in the session: not rejected (port 0 without
    /// `bundle-only`, RFC 3264 §6 / RFC 8843 §7.2.1) and not `inactive`.
    fn active(&self) -> bool {
        (self.port != 0 || self.bundle_only) && self.direction != Some(Direction::Inactive)
    }
}

/// What the offer asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSummary {
    /// Video codecs offered that we can ingest, in offer order (`H264`, `VP8`, `VP9`).
    pub video_codecs: Vec<String>,
    /// RTP payload type of Opus in a sending audio section, if there is one.
    pub audio_payload_type: Option<u8>,
    /// The video section's simulcast layers (RFC 8853), by `rid`, in offer order; empty
    /// without simulcast.
    pub simulcast: Vec<String>,
    /// The offer's `a=ice-ufrag` (RFC 8839 §5.4): at session level, else in the first
    /// section that is not inactive (where the stack reads it).
    pub ice_ufrag: Option<String>,
    /// The offer's `a=ice-pwd`, found the same way.
    pub ice_pwd: Option<String>,
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
    /// More simulcast layers than we take (HTTP 422).
    #[error("the offer has {0} simulcast layers; at most {MAX_LAYERS} are taken")]
    TooManyLayers(usize),
    /// A section that would not send (RFC 9725 §4.2: clients must not offer recvonly).
    #[error("the {0} section is {1}; a publisher must offer sendonly or sendrecv")]
    BadDirection(String, &'static str),
}

const VIDEO_CODECS: &[&str] = &["H264", "VP8", "VP9"];

/// The most simulcast layers a video section may send. Browsers send up to 3 and OBS up
/// to 4 (its WHIP simulcast setting); each layer costs a queue, a jitter buffer and a
/// rendition.
pub const MAX_LAYERS: usize = 4;

/// Applies the rules to the sections of a parsed offer.
pub fn summarize(sections: &[OfferSection]) -> Result<OfferSummary, SdpError> {
    if sections.is_empty() {
        return Err(SdpError::Malformed("no m= section".into()));
    }
    let active: Vec<&OfferSection> = sections
        .iter()
        .filter(|s| s.active() && (s.media == "video" || s.media == "audio"))
        .collect();
    let count = |m: &str| active.iter().filter(|s| s.media == m).count();
    let (videos, audios) = (count("video"), count("audio"));
    if videos > 1 || audios > 1 {
        return Err(SdpError::TooManyTracks(format!(
            "{videos} video and {audios} audio sections"
        )));
    }
    for s in &active {
        if let Some(d @ Direction::RecvOnly) = s.direction {
            return Err(SdpError::BadDirection(s.media.clone(), d.name()));
        }
    }
    let video = active
        .iter()
        .find(|s| s.media == "video")
        .ok_or(SdpError::NoVideo)?;
    let mut video_codecs: Vec<String> = Vec::new();
    for (_, name) in &video.codecs {
        let upper = name.to_ascii_uppercase();
        if VIDEO_CODECS.contains(&upper.as_str()) && !video_codecs.contains(&upper) {
            video_codecs.push(upper);
        }
    }
    if video_codecs.is_empty() {
        return Err(SdpError::UnsupportedCodec(format!(
            "video {}",
            names(&video.codecs)
        )));
    }
    let audio_payload_type = match active.iter().find(|s| s.media == "audio") {
        None => None,
        Some(a) => match a
            .codecs
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case("opus"))
        {
            Some((pt, _)) => Some(*pt),
            None => {
                return Err(SdpError::UnsupportedCodec(format!(
                    "audio {}",
                    names(&a.codecs)
                )));
            }
        },
    };
    // One layer is no simulcast: it is read like a plain track.
    let simulcast = match video.send_rids.len() {
        0 | 1 => Vec::new(),
        n if n > MAX_LAYERS => return Err(SdpError::TooManyLayers(n)),
        _ => video.send_rids.clone(),
    };
    Ok(OfferSummary {
        video_codecs,
        audio_payload_type,
        simulcast,
        ice_ufrag: None,
        ice_pwd: None,
    })
}

fn names(codecs: &[(u8, String)]) -> String {
    codecs
        .iter()
        .map(|(_, n)| n.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::{inspect_offer, offer_text};

    /// What OBS 30.2+ sends (tinywhip #2 capture, trimmed): session-level ICE/DTLS, group:LS,
    /// no candidates, 42e01f whatever the encoder does, lower-case opus.
    const OBS: &str = include_str!("../../tests/data/obs-offer.sdp");

    /// GStreamer webrtcbin's default (max-bundle) shape: the audio section has port 0 and
    /// `a=bundle-only`, codec names in upper case, `a=rtcp-mux-only`.
    const WEBRTCBIN: &str = "v=0\r\no=- 1 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=ice-options:trickle\r\na=group:BUNDLE video0 audio1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=setup:actpass\r\n\
        a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=rtcp-mux\r\n\
        a=rtcp-mux-only\r\na=rtcp-rsize\r\na=sendrecv\r\na=rtpmap:96 H264/90000\r\n\
        a=fmtp:96 packetization-mode=1;profile-level-id=42c01f;sprop-parameter-sets=Z0LAH9kAUAW7ARAAAAMAEAAAAwPI8YMkgA==,aMuDyyA=\r\n\
        a=mid:video0\r\n\
        m=audio 0 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 0.0.0.0\r\na=bundle-only\r\n\
        a=setup:actpass\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n\
        a=rtcp-mux\r\na=rtcp-mux-only\r\na=sendrecv\r\na=rtpmap:97 OPUS/48000/2\r\n\
        a=fmtp:97 sprop-maxcapturerate=48000;sprop-stereo=0\r\na=mid:audio1\r\n";

    #[test]
    fn obs_offer_is_accepted() {
        let s = inspect_offer(OBS).expect("OBS offer");
        assert_eq!(s.video_codecs, ["H264"]);
        assert_eq!(s.audio_payload_type, Some(111));
    }

    #[test]
    fn bundle_only_audio_is_published() {
        let s = inspect_offer(WEBRTCBIN).expect("webrtcbin offer");
        assert_eq!(s.video_codecs, ["H264"]);
        assert_eq!(s.audio_payload_type, Some(97));
        // The same section without bundle-only is a rejected one (RFC 3264 §6).
        let rejected = inspect_offer(&WEBRTCBIN.replace("a=bundle-only\r\n", "")).expect("ok");
        assert_eq!(rejected.audio_payload_type, None);
    }

    #[test]
    fn session_level_direction_and_inactive_sections() {
        // Direction only at session level applies to every section.
        let session_recv = OBS
            .replace("a=sendonly\r\n", "")
            .replace("t=0 0\r\n", "t=0 0\r\na=recvonly\r\n");
        assert!(matches!(
            inspect_offer(&session_recv),
            Err(SdpError::BadDirection(..))
        ));
        // An inactive audio section is ignored; an inactive video leaves nothing to publish.
        let audio_off = OBS.replacen("a=sendonly", "a=inactive", 1);
        assert_eq!(
            inspect_offer(&audio_off).expect("ok").audio_payload_type,
            None
        );
        let video_off = OBS.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=inactive");
        assert_eq!(inspect_offer(&video_off), Err(SdpError::NoVideo));
    }

    #[test]
    fn video_only_lf_line_endings() {
        let sdp = "v=0\no=- 1 1 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=video 9 UDP/TLS/RTP/SAVPF 96 98\na=rtpmap:96 VP8/90000\na=rtpmap:98 vp9/90000\na=rtpmap:99 rtx/90000\n";
        let s = inspect_offer(sdp).expect("ok");
        assert_eq!(s.video_codecs, ["VP8", "VP9"]);
        assert_eq!(s.audio_payload_type, None);
    }

    #[test]
    fn codecs_missing_from_the_format_list_come_last_by_payload_type() {
        // Found by tests/fuzz (offer): rtpmaps for payload types the m= line does not list
        // came out in a HashMap's order, so one offer gave different summaries and errors.
        let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:98 VP9/90000\r\n\
            a=rtpmap:97 VP8/90000\r\na=rtpmap:96 H264/90000\r\n";
        for _ in 0..8 {
            let s = inspect_offer(sdp).expect("ok");
            assert_eq!(s.video_codecs, ["H264", "VP8", "VP9"]);
        }
        let unsupported = sdp
            .replace("VP9", "AV1")
            .replace("VP8", "rtx")
            .replace("H264", "x");
        for _ in 0..8 {
            assert_eq!(
                inspect_offer(&unsupported),
                Err(SdpError::UnsupportedCodec("video x, rtx, AV1".into()))
            );
        }
    }

    #[test]
    fn a_leading_bom_or_blank_is_inspected_and_negotiated_alike() {
        // Found with tests/fuzz (offer): inspection skipped a leading byte-order mark or
        // white space, the stack's parser (PeerSession::answer) did not, so such an offer
        // passed inspection and was then refused by negotiation.
        for prefix in ["\u{feff}", " ", "\t\r\n", "\u{feff}\r\n "] {
            let body = format!("{prefix}{OBS}");
            assert!(inspect_offer(&body).is_ok(), "{prefix:?}");
            let negotiated = offer_text(&body).to_string();
            assert!(
                rtc::peer_connection::sdp::RTCSessionDescription::offer(negotiated).is_ok(),
                "{prefix:?}"
            );
        }
    }

    /// Chromium's simulcast video section (trimmed): three `a=rid … send` and the
    /// `a=simulcast` that orders them (RFC 8853 §5.1), no SSRCs.
    fn simulcast(rids: &[&str]) -> String {
        let mut sdp = String::from(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:1\r\na=sendonly\r\n\
             a=rtpmap:102 H264/90000\r\n\
             a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id\r\n",
        );
        for rid in rids {
            sdp.push_str(&format!("a=rid:{rid} send\r\n"));
        }
        sdp.push_str(&format!("a=simulcast:send {}\r\n", rids.join(";")));
        sdp
    }

    #[test]
    fn simulcast_layers_are_read_in_offer_order() {
        let s = inspect_offer(&simulcast(&["h", "m", "l"])).expect("simulcast offer");
        assert_eq!(s.simulcast, ["h", "m", "l"]);
        // A recv rid is not a layer we receive; one send rid is no simulcast.
        let one = simulcast(&["q"]).replace("a=rid:q send", "a=rid:q send\r\na=rid:r recv");
        assert!(inspect_offer(&one).expect("one layer").simulcast.is_empty());
        // Without any, nothing changes (OBS, webrtcbin).
        assert!(inspect_offer(OBS).expect("OBS").simulcast.is_empty());
    }

    #[test]
    fn too_many_or_malformed_layers_are_refused() {
        let five = simulcast(&["a", "b", "c", "d", "e"]);
        assert_eq!(inspect_offer(&five), Err(SdpError::TooManyLayers(5)));
        for bad in [
            "a=rid:h sendrecv",
            "a=rid:h",
            "a=rid:h%20 send",
            "a=rid:0123456789abcdefg send",
        ] {
            let sdp = simulcast(&["h", "m"]).replace("a=rid:h send", bad);
            assert!(
                matches!(inspect_offer(&sdp), Err(SdpError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn garbage_is_malformed() {
        for bad in [
            "hello",
            "",
            "v=0\r\nthis is not sdp\r\n",
            "v=0\r\ns=-\r\n",
            "v=0\r\nm=video 9\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 99999 UDP/TLS/RTP/SAVPF 96\r\n",
        ] {
            assert!(
                matches!(inspect_offer(bad), Err(SdpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn ice_credentials_are_read() {
        let s = inspect_offer(OBS).expect("OBS");
        assert_eq!(s.ice_ufrag.as_deref(), Some("Ns8c"));
        assert_eq!(s.ice_pwd.as_deref(), Some("2ERC5NAYh9I0hNO1X0qjhC"));
        // Media level, from the first active section (webrtcbin's shape).
        let s = inspect_offer(WEBRTCBIN).expect("webrtcbin");
        assert_eq!(s.ice_ufrag.as_deref(), Some("abcd"));
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
        // A rejected (port 0, no bundle-only) extra section does not count.
        let rejected = format!("{OBS}m=video 0 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n");
        assert!(inspect_offer(&rejected).is_ok());
    }
}
