//! The SDP offer of a WHIP POST or a WebSocket `offer` message: `peer::inspect_offer`
//! (the WebRTC stack's SDP parser, then the rules of `peer::sdp`).
//!
//! Asserts, beyond "returns":
//! - its heap is linear in the offer (an offer is admitted up to `server.max_sdp_bytes`);
//! - the verdict is deterministic and maps to 400 (malformed) or 422 (unusable) only;
//! - an accepted offer is accepted by what runs next on the same body: the stack's
//!   `RTCSessionDescription::offer` on `peer::offer_text(body)`, as `PeerSession::answer`
//!   calls it before `set_remote_description` — inspection must never accept what
//!   negotiation refuses;
//! - an accepted summary is consistent: 1–3 distinct codecs out of H264, VP8, VP9, an
//!   audio payload type only when the text has an audio section with an Opus `rtpmap`, and
//!   no simulcast or 2–4 distinct rids from the text;
//! - CRLF or LF line endings (RFC 8866 §5 asks for CRLF, many clients send LF) never change
//!   the verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whipcast::ingest::IngestError;
use whipcast::peer::{SdpError, inspect_offer};
use whipcast_fuzz::{assert_linear_heap, metered};

/// Heap per offer byte: the parser keeps every line as a struct of owned strings (an
/// `a=x` line of 4 bytes is a ~48-byte `Attribute` plus its strings, in a doubling `Vec`).
const HEAP_PER_BYTE: usize = 128;

fn kind(v: &Result<whipcast::peer::OfferSummary, SdpError>) -> &'static str {
    match v {
        Ok(_) => "accepted",
        Err(SdpError::Malformed(_)) => "malformed",
        Err(SdpError::NoVideo) => "no video",
        Err(SdpError::UnsupportedCodec(_)) => "unsupported codec",
        Err(SdpError::TooManyTracks(_)) => "too many tracks",
        Err(SdpError::BadDirection(..)) => "bad direction",
        Err(SdpError::TooManyLayers(_)) => "too many simulcast layers",
    }
}

/// Whether `text` has an `m=` line of this media kind, as the parser reads it: it splits
/// the value on whitespace, so `m=\tvideo 9 …` is a video section too (a finding of the
/// smoke run, kept in seeds/offer/crash-tab-before-media-kind); and it skips every CR and LF
/// before a line's type letter (rtc-sdp 0.21 `lexer::read_type`), so a bare CR before
/// `m=video` still starts a video section (also a smoke-run finding, kept in
/// seeds/offer/crash-cr-before-media-line).
fn has_section(text: &str, kind: &str) -> bool {
    text.lines().any(|l| {
        l.trim_start_matches('\r')
            .strip_prefix("m=")
            .and_then(|v| v.split_whitespace().next())
            .is_some_and(|k| k == kind)
    })
}

fuzz_target!(|data: &[u8]| {
    // A body that is not UTF-8 is refused before inspection (ingest::whip::read_body), and a
    // WebSocket text frame is UTF-8 by definition (RFC 6455 §5.6).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (verdict, heap) = metered(|| inspect_offer(text));
    assert_linear_heap(heap, text.len(), HEAP_PER_BYTE, "inspect_offer");
    assert_eq!(inspect_offer(text), verdict, "not deterministic");

    match &verdict {
        Ok(summary) => {
            // What PeerSession::answer does next with the same request body.
            let negotiated = whipcast::peer::offer_text(text).to_string();
            if let Err(e) = rtc::peer_connection::sdp::RTCSessionDescription::offer(negotiated) {
                panic!("inspect_offer accepted an offer that negotiation refuses: {e}");
            }
            let v = &summary.video_codecs;
            assert!(!v.is_empty() && v.len() <= 3, "{v:?}");
            for (i, c) in v.iter().enumerate() {
                assert!(["H264", "VP8", "VP9"].contains(&c.as_str()), "{c}");
                assert!(!v[..i].contains(c), "{c} listed twice");
            }
            assert!(has_section(text, "video"), "accepted without a video section");
            // Simulcast: none, or 2..=MAX_LAYERS distinct rids, each carried by the text.
            let s = &summary.simulcast;
            assert!(s.is_empty() || (2..=4).contains(&s.len()), "{s:?}");
            for (i, rid) in s.iter().enumerate() {
                assert!(!s[..i].contains(rid), "rid {rid} listed twice");
                assert!(text.contains(rid.as_str()), "rid {rid} not in the offer");
            }
            if let Some(pt) = summary.audio_payload_type {
                assert!(has_section(text, "audio"), "audio without an audio section");
                // The payload type as a number: the parser reads `a=rtpmap:055` as 55, and
                // `a=   rtpmap:111 opus/48000/2` as an rtpmap (it trims the attribute; the
                // stack that negotiates reads it the same way, so both agree on Opus).
                let has_opus = text.lines().any(|l| {
                    let Some(v) = l
                        .trim()
                        .strip_prefix("a=")
                        .and_then(|a| a.trim_start().strip_prefix("rtpmap:"))
                    else {
                        return false;
                    };
                    let number = v
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse::<u8>().ok());
                    number == Some(pt) && v.to_ascii_lowercase().contains("opus")
                });
                assert!(has_opus, "audio payload type {pt} is not an Opus rtpmap");
            }
        }
        Err(e) => {
            let status = IngestError::from(e.clone()).status();
            let want = if matches!(e, SdpError::Malformed(_)) {
                400
            } else {
                422
            };
            assert_eq!(status, want, "{e}");
        }
    }

    let lf = text.replace("\r\n", "\n");
    if lf != text {
        assert_eq!(
            kind(&inspect_offer(&lf)),
            kind(&verdict),
            "CRLF → LF changed the verdict"
        );
    }
});
