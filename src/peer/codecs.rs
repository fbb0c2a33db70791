//! The codecs we accept, as the media engine registers them (what the pipeline can take,
//! with the RTCP feedback we answer), and the negotiated MIME type in our vocabulary
//! ([`VideoCodec`]). Pure construction: no sockets, no tasks.

use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use webrtc::peer_connection::MediaEngine;

use super::PeerError;
use crate::media::VideoCodec;

pub(super) fn video_codec(mime: &str) -> Option<VideoCodec> {
    match mime {
        "video/h264" => Some(VideoCodec::H264),
        "video/vp8" => Some(VideoCodec::Vp8),
        "video/vp9" => Some(VideoCodec::Vp9),
        _ => None,
    }
}

fn feedback() -> Vec<RTCPFeedback> {
    [
        ("nack", ""),
        ("nack", "pli"),
        ("ccm", "fir"),
        ("goog-remb", ""),
        // The stack's default interceptors answer with transport-wide congestion control
        // feedback; a browser that may use it estimates its bandwidth from it (without, on
        // loopback, Chromium took 15 s to turn on a 720p simulcast layer, measured).
        ("transport-cc", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    })
    .collect()
}

/// Only codecs the pipeline can take. No RTX: without it, browsers retransmit NACKed
/// packets on the original SSRC, which is what our jitter buffer sees.
pub(super) fn media_engine() -> Result<MediaEngine, PeerError> {
    let mut me = MediaEngine::default();
    let codec =
        |mime: &str, clock: u32, channels: u16, fmtp: &str, pt: u8, fb: Vec<RTCPFeedback>| {
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.into(),
                    clock_rate: clock,
                    channels,
                    sdp_fmtp_line: fmtp.into(),
                    rtcp_feedback: fb,
                },
                payload_type: pt,
            }
        };
    let audio = codec(
        "audio/opus",
        48_000,
        2,
        "minptime=10;useinbandfec=1",
        111,
        vec![],
    );
    me.register_codec(audio, RtpCodecKind::Audio)
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    // H.264: one entry per profile family and packetization mode, so any offer matches
    // (a single variant made OBS fail with "codec not found", muxshed/shed #19). The level is
    // not matched, and the profile is re-read from the SPS by the decoder anyway.
    let h264 = |profile: &str, mode: u8| {
        format!("level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={profile}")
    };
    let video = [
        codec("video/H264", 90_000, 0, &h264("42e01f", 1), 102, feedback()),
        codec("video/H264", 90_000, 0, &h264("42001f", 1), 104, feedback()),
        codec("video/H264", 90_000, 0, &h264("4d001f", 1), 106, feedback()),
        codec("video/H264", 90_000, 0, &h264("64001f", 1), 108, feedback()),
        codec("video/H264", 90_000, 0, &h264("42e01f", 0), 110, feedback()),
        codec("video/VP8", 90_000, 0, "", 96, feedback()),
        codec("video/VP9", 90_000, 0, "profile-id=0", 98, feedback()),
    ];
    for v in video {
        me.register_codec(v, RtpCodecKind::Video)
            .map_err(|e| PeerError::Setup(e.to_string()))?;
    }
    // Simulcast (RFC 8853): a publisher that offers `a=rid` layers signals no SSRCs; each
    // layer's RTP names its layer in the RtpStreamId header extension (RFC 8852 §3.1) and
    // its media section in the MID one (RFC 8843 §15.1). Without them in the answer, the
    // browser cannot send the layers apart and the stack cannot tell them apart.
    for uri in [
        "urn:ietf:params:rtp-hdrext:sdes:mid",
        "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id",
    ] {
        me.register_header_extension(
            RTCRtpHeaderExtensionCapability { uri: uri.into() },
            RtpCodecKind::Video,
            None,
        )
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    }
    Ok(me)
}
