//! The body of a WHIP PATCH (RFC 9725 §4.3.2): an `application/trickle-ice-sdpfrag`
//! (RFC 8840) whose candidates are added to the session. Pure: text in, candidates out.

use super::{Candidate, IngestError};

/// The longest `a=mid` a trickle fragment may carry.
const MAX_MID_BYTES: usize = 255;

/// Extracts the candidates of an `application/trickle-ice-sdpfrag` body.
pub fn parse_sdpfrag(frag: &str) -> Result<Vec<Candidate>, IngestError> {
    // The candidate keeps the section it was sent for: the `a=mid` of its `m=` line and
    // that line's position (RFC 8840 §4.4; with max-bundle, RFC 9725 §4.3.2, it is the
    // first section, but a client may say otherwise).
    let mut mid: Option<String> = None;
    let mut mline: Option<u16> = None;
    let mut out = Vec::new();
    for line in frag
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' {
            return Err(IngestError::Sdp(crate::peer::SdpError::Malformed(
                "trickle fragment line is not `<type>=<value>`".into(),
            )));
        }
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            // Every candidate below carries a copy of the mid: an unbounded one would make
            // a body of n bytes cost O(n²) (64 KiB of mid and 5 000 candidates: 300 MB).
            // A mid is also sent as an RTCP SDES item (RFC 8843 defines the MID item), and
            // an SDES item is at most 255 bytes (RFC 3550 §6.5: a one-octet length).
            if m.len() > MAX_MID_BYTES {
                return Err(IngestError::Sdp(crate::peer::SdpError::Malformed(format!(
                    "trickle fragment mid longer than {MAX_MID_BYTES} bytes"
                ))));
            }
            mid = Some(m.to_string());
        } else if let Some(c) = line.strip_prefix("a=")
            && c.starts_with("candidate:")
        {
            out.push(Candidate {
                candidate: c.to_string(),
                sdp_mid: mid.clone(),
                sdp_mline_index: Some(mline.unwrap_or(0)),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdpfrag_candidates() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 127.0.0.1 61764 typ host generation 0\r\na=end-of-candidates\r\n";
        let c = parse_sdpfrag(frag).expect("parses");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(c[0].sdp_mline_index, Some(0));
        assert!(c[0].candidate.starts_with("candidate:1387637174"));
        assert!(parse_sdpfrag("garbage").is_err());
        // A candidate for the second section keeps its mid and index.
        let two = format!(
            "{frag}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=candidate:2 1 udp 1 127.0.0.1 9 typ host\r\n"
        );
        let c = parse_sdpfrag(&two).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[1].sdp_mid.as_deref(), c[1].sdp_mline_index),
            (Some("v"), Some(1))
        );
    }

    #[test]
    fn sdpfrag_mid_is_bounded() {
        // Found with tests/fuzz (sdpfrag): every candidate copies its section's mid, so a
        // long mid over many candidates made the heap quadratic in the body.
        let frag = |mid: &str| {
            format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\n{}",
                "a=candidate:\r\n".repeat(150)
            )
        };
        assert_eq!(
            parse_sdpfrag(&frag(&"m".repeat(255)))
                .expect("parses")
                .len(),
            150
        );
        let long = parse_sdpfrag(&frag(&"m".repeat(256))).expect_err("refused");
        assert_eq!(long.status(), 400);
    }
}
