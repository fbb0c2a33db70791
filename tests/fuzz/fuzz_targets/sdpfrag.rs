//! The body of a WHIP PATCH, `application/trickle-ice-sdpfrag` (RFC 8840):
//! `ingest::whip::parse_sdpfrag`, then each candidate through the parser the WebRTC stack
//! applies to it in `add_ice_candidate`.
//!
//! Asserts, beyond "returns":
//! - its heap is linear in the body (a PATCH is admitted up to `server.max_sdp_bytes`);
//! - it refuses exactly the bodies with a non-empty line that is not `<type>=<value>`
//!   (RFC 8866 §5 grammar, as RFC 8840 §9 reuses it) or an `a=mid` over 255 bytes;
//! - it returns one candidate per `a=candidate:` line, in order, each the line's value;
//! - each candidate keeps the section it was sent for (RFC 8840 §4.4): the `a=mid` of the
//!   `m=` line above it (none if that section has none) and that line's index (0 before
//!   any `m=` line);
//! - writing the candidates back as a fragment and parsing it again gives them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whipcast::ingest::sdpfrag::parse_sdpfrag;
use whipcast_fuzz::{assert_linear_heap, metered, stack_parses_candidate};

/// Heap per body byte: a candidate is a 56-byte struct in a doubling `Vec` plus its text
/// and its section's mid, for an `a=candidate:` line of at least 13 bytes.
const HEAP_PER_BYTE: usize = 32;

fuzz_target!(|data: &[u8]| {
    let Ok(frag) = std::str::from_utf8(data) else {
        return;
    };
    let (parsed, heap) = metered(|| parse_sdpfrag(frag));
    assert_linear_heap(heap, frag.len(), HEAP_PER_BYTE, "parse_sdpfrag");

    // The model: the same fragment, read line by line.
    let lines: Vec<&str> = frag
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .collect();
    // Every line `<type>=<value>`, and every `a=mid` at most 255 bytes (an RTCP SDES item,
    // RFC 3550 §6.5; each candidate copies it).
    let well_formed = lines.iter().all(|l| {
        l.len() >= 2
            && l.as_bytes()[1] == b'='
            && l.strip_prefix("a=mid:").is_none_or(|m| m.len() <= 255)
    });
    let candidates = match parsed {
        Ok(c) => {
            assert!(well_formed, "accepted a malformed fragment");
            c
        }
        Err(e) => {
            assert!(!well_formed, "refused a well-formed fragment: {e}");
            assert_eq!(e.status(), 400);
            return;
        }
    };
    let mut expected = Vec::new();
    let (mut mid, mut mline): (Option<&str>, Option<u16>) = (None, None);
    for l in &lines {
        if l.starts_with("m=") {
            mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(m) = l.strip_prefix("a=mid:") {
            mid = Some(m);
        } else if let Some(c) = l.strip_prefix("a=").filter(|c| c.starts_with("candidate:")) {
            expected.push((c, mid, mline.unwrap_or(0)));
        }
    }
    assert_eq!(candidates.len(), expected.len());
    for (c, (text, mid, index)) in candidates.iter().zip(&expected) {
        assert_eq!(c.candidate, *text);
        assert_eq!(c.sdp_mid.as_deref(), *mid);
        assert_eq!(c.sdp_mline_index, Some(*index));
        stack_parses_candidate(&c.candidate);
    }

    // Round trip: the candidates written back as a fragment (an m= line per section index,
    // its mid, its candidates) parse to the same list. Only sections that carry a
    // candidate are written, so indices are compared by their order, not their value.
    let mut again = String::new();
    let mut last: Option<(u16, Option<&str>)> = None;
    for c in &candidates {
        let key = (c.sdp_mline_index.unwrap_or(0), c.sdp_mid.as_deref());
        if last != Some(key) {
            again.push_str("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n");
            if let Some(m) = key.1 {
                again.push_str(&format!("a=mid:{m}\r\n"));
            }
            last = Some(key);
        }
        again.push_str(&format!("a={}\r\n", c.candidate));
    }
    let reparsed = parse_sdpfrag(&again).expect("our own fragment parses");
    assert_eq!(reparsed.len(), candidates.len());
    for (a, b) in reparsed.iter().zip(&candidates) {
        assert_eq!((&a.candidate, &a.sdp_mid), (&b.candidate, &b.sdp_mid));
    }
});
