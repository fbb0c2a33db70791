//! The numbers of an offer's RTP sections, against the ranges their RFCs give. Pure. A
//! number out of range (an SSRC of 20 digits, a payload type of 300) is a malformed offer
//! (400): the stack skips some of them and then fails later, when the answer is applied,
//! as if the server were broken (500), or drops the codec and leaves a 422 naming none.

use super::candidates::digits;
use super::sdp::SdpError;

/// An RTP payload type: 7 bits (RFC 3550 §5.1).
fn payload_type(s: &str) -> Option<u8> {
    digits::<u8>(s).filter(|pt| *pt <= 127)
}

fn malformed(key: &str, value: &str, what: &str) -> SdpError {
    let shown: String = value.chars().take(64).collect();
    SdpError::Malformed(format!("a={key}:{shown}: {what}"))
}

/// Checks a format of an RTP section's `m=` line: a payload type (RFC 8866 §5.14).
pub fn check_rtp_format(media: &str, format: &str) -> Result<(), SdpError> {
    match payload_type(format) {
        Some(_) => Ok(()),
        None => Err(SdpError::Malformed(format!(
            "m={media} format {:?} is not an RTP payload type 0-127 (RFC 3550 §5.1)",
            format.chars().take(32).collect::<String>()
        ))),
    }
}

/// Checks the numbers of a media-level attribute of an RTP section against the ranges
/// their RFCs give. Only the attributes whose numbers the stack reads are checked; a value
/// the stack would skip or refuse halfway is refused here, before any connection exists.
pub fn check_rtp_attribute(key: &str, value: Option<&str>) -> Result<(), SdpError> {
    let first = |v: &str| v.split_ascii_whitespace().next().unwrap_or("").to_string();
    let needs_value = matches!(
        key,
        "rtpmap" | "fmtp" | "rtcp-fb" | "rtcp" | "extmap" | "ssrc" | "ssrc-group"
    );
    let Some(value) = value else {
        return if needs_value {
            Err(malformed(key, "", "no value"))
        } else {
            Ok(())
        };
    };
    match key {
        // <payload type> <encoding name>/<clock rate>[/<encoding parameters>]
        // (RFC 8866 §6.6).
        "rtpmap" => {
            let (pt, encoding) = value.split_once(' ').unwrap_or((value, ""));
            if payload_type(pt).is_none() {
                return Err(malformed(
                    key,
                    value,
                    "payload type is not 0-127 (RFC 3550 §5.1)",
                ));
            }
            let mut parts = encoding.trim().split('/');
            let name = parts.next().unwrap_or("");
            let clock = parts.next().and_then(digits::<u32>).filter(|c| *c > 0);
            let params = parts.next();
            if name.is_empty() || clock.is_none() || parts.next().is_some() {
                return Err(malformed(
                    key,
                    value,
                    "not <name>/<clock rate 1-4294967295>[/<channels>] (RFC 8866 §6.6)",
                ));
            }
            if params.is_some_and(|p| digits::<u8>(p).is_none_or(|c| c == 0)) {
                return Err(malformed(
                    key,
                    value,
                    "channels are not 1-255 (RFC 8866 §6.6)",
                ));
            }
            Ok(())
        }
        // <payload type> <parameters> (RFC 8866 §6.15).
        "fmtp" => match payload_type(&first(value)) {
            Some(_) => Ok(()),
            None => Err(malformed(
                key,
                value,
                "payload type is not 0-127 (RFC 3550 §5.1)",
            )),
        },
        // <payload type> or * (RFC 4585 §4.2).
        "rtcp-fb" => {
            let pt = first(value);
            if pt == "*" || payload_type(&pt).is_some() {
                Ok(())
            } else {
                Err(malformed(
                    key,
                    value,
                    "payload type is not * or 0-127 (RFC 4585 §4.2)",
                ))
            }
        }
        // <port> [<address>] (RFC 3605 §2.1).
        "rtcp" => match digits::<u16>(&first(value)) {
            Some(_) => Ok(()),
            None => Err(malformed(key, value, "port is not 0-65535 (RFC 3605 §2.1)")),
        },
        // <id>[/<direction>] <URI> (RFC 8285 §5: 1-14 one-byte, up to 255 two-byte headers).
        "extmap" => {
            let id = first(value);
            let id = id.split('/').next().unwrap_or("");
            match digits::<u8>(id) {
                Some(1..=255) => Ok(()),
                _ => Err(malformed(
                    key,
                    value,
                    "extension id is not 1-255 (RFC 8285 §5)",
                )),
            }
        }
        // <ssrc-id> <attribute> (RFC 5576 §4.1): a 32-bit number.
        "ssrc" => match digits::<u32>(&first(value)) {
            Some(_) => Ok(()),
            None => Err(malformed(
                key,
                value,
                "SSRC is not 0-4294967295 (RFC 5576 §4.1)",
            )),
        },
        // <semantics> <ssrc-id>... (RFC 5576 §4.2).
        "ssrc-group" => {
            if value
                .split_ascii_whitespace()
                .skip(1)
                .all(|id| digits::<u32>(id).is_some())
            {
                Ok(())
            } else {
                Err(malformed(
                    key,
                    value,
                    "SSRC is not 0-4294967295 (RFC 5576 §4.2)",
                ))
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::inspect_offer;

    /// What OBS 30.2+ sends (see `sdp`'s tests).
    const OBS: &str = include_str!("../../tests/data/obs-offer.sdp");

    #[test]
    fn numbers_out_of_range_are_malformed() {
        // Each reached a 500 (the stack failing when the answer was applied) or a 422 with
        // no codec named; each is a client error.
        for (from, to) in [
            ("a=ssrc:2 cname:x", "a=ssrc:99999999999999999999 cname:x"),
            ("a=ssrc:1 cname:x", "a=ssrc:-1 cname:x"),
            ("a=ssrc:1 cname:x", "a=ssrc:+1 cname:x"),
            ("a=ssrc:2 cname:x", "a=ssrc:4294967296 cname:x"),
            ("a=ssrc:2 cname:x", "a=ssrc-group:FID 2 99999999999999"),
            ("a=rtpmap:96 H264/90000", "a=rtpmap:300 H264/90000"),
            ("a=rtpmap:96 H264/90000", "a=rtpmap:96 H264/99999999999"),
            ("a=rtpmap:96 H264/90000", "a=rtpmap:96 H264/0"),
            ("a=rtpmap:96 H264/90000", "a=rtpmap:96 H264"),
            (
                "a=rtpmap:111 opus/48000/2",
                "a=rtpmap:111 opus/48000/99999999999",
            ),
            ("a=rtpmap:111 opus/48000/2", "a=rtpmap:111 opus/48000/2/1"),
            ("a=fmtp:96 profile", "a=fmtp:99999999999 profile"),
            ("a=fmtp:96 profile", "a=fmtp:128 profile"),
            ("a=rtcp-fb:96 nack\r\n", "a=rtcp-fb:99999999999 nack\r\n"),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=rtcp:99999999999 IN IP4 1.2.3.4\r\n",
            ),
            ("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=rtcp:-9\r\n"),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
            ),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=extmap:4096 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
            ),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=extmap:x/sendonly urn:x\r\n",
            ),
            ("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 200"),
            ("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 99999999999"),
            ("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 x"),
            ("m=video 9 ", "m=video 99999 "),
            ("m=video 9 ", "m=video 9/99999999999 "),
            (
                "a=mid:1",
                "a=mid:1\r\na=candidate:1 1 udp 99999999999 127.0.0.1 5000 typ host",
            ),
            (
                "a=mid:1",
                "a=mid:1\r\na=candidate:1 99999 udp 1 127.0.0.1 5000 typ host",
            ),
            (
                "a=mid:1",
                "a=mid:1\r\na=candidate:1 1 udp 1 127.0.0.1 70000 typ host",
            ),
        ] {
            assert!(OBS.contains(from), "{from}");
            let bad = OBS.replacen(from, to, 1);
            let verdict = inspect_offer(&bad);
            assert!(
                matches!(verdict, Err(SdpError::Malformed(_))),
                "{to}: {verdict:?}"
            );
        }
        // In range: accepted.
        for (from, to) in [
            ("a=ssrc:2 cname:x", "a=ssrc:4294967295 cname:x"),
            (
                "a=ssrc:2 cname:x",
                "a=ssrc:2 cname:x\r\na=ssrc-group:FID 2 3",
            ),
            ("a=rtcp-fb:96 nack\r\n", "a=rtcp-fb:* nack\r\n"),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=rtcp:9 IN IP4 0.0.0.0\r\n",
            ),
            (
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=extmap:14/recvonly urn:x\r\n",
            ),
            (
                "a=mid:1",
                "a=mid:1\r\na=candidate:1 1 udp 2122260223 127.0.0.1 5000 typ host",
            ),
        ] {
            let ok = OBS.replacen(from, to, 1);
            assert!(inspect_offer(&ok).is_ok(), "{to}");
        }
        // The pure rules on their own.
        assert!(check_rtp_attribute("ssrc", None).is_err());
        assert!(check_rtp_attribute("sendonly", None).is_ok());
        assert!(check_rtp_attribute("ptime", Some("99999999999")).is_ok());
        assert!(check_rtp_format("video", "127").is_ok());
        assert!(check_rtp_format("video", "128").is_err());
    }
}
