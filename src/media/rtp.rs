//! Cheap sanity checks on RTP payloads before they reach a depayloader. Pure. The payload
//! comes parsed from the peer module ([`super::RtpPacket::payload`]).
//!
//! `rtph264depay` turns some NAL unit types it does not implement (STAP-B, MTAP, FU-B) into
//! a fatal element error, so one corrupt or hostile packet would end the stream. Such
//! packets are dropped here instead; the caller asks the publisher for a keyframe.

/// Whether an H.264 RTP payload (RFC 6184) carries a NAL unit type the depayloader handles:
/// single NAL units 1–23, STAP-A (24) or FU-A (28) with a valid inner type.
pub fn h264_plausible(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        // An empty payload is harmless (some senders pad keep-alives).
        return true;
    };
    if first & 0x80 != 0 {
        return false; // forbidden_zero_bit
    }
    match first & 0x1f {
        1..=24 => true,
        28 => p.get(1).is_some_and(|fu| (1..=23).contains(&(fu & 0x1f))),
        _ => false,
    }
}

/// The NAL units of a STAP-A payload (RFC 6184 §5.7.1), after its own header byte: each
/// as far as the payload holds it (the last may be cut short), never empty.
pub(crate) fn stap_a_units(mut rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if rest.len() <= 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let unit = &rest[2..(2 + len).min(rest.len())];
        rest = rest.get(2 + len..).unwrap_or(&[]);
        Some(unit)
    })
    .filter(|u| !u.is_empty())
}

/// Whether an H.264 RTP payload starts a keyframe: an IDR slice (type 5) or an SPS (7),
/// alone, first in an FU-A, or inside a STAP-A (RFC 6184 §5.7.1, §5.8).
pub fn h264_keyframe_start(p: &[u8]) -> bool {
    let key = |t: u8| t == 5 || t == 7;
    match p.first().map(|b| b & 0x1f) {
        Some(t @ 1..=23) => key(t),
        Some(24) => stap_a_units(&p[1..]).any(|u| key(u[0] & 0x1f)),
        Some(28) => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && key(fu & 0x1f)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(payload: &[u8]) -> Vec<u8> {
        payload.to_vec()
    }

    #[test]
    fn h264_types() {
        assert!(h264_plausible(&rtp(&[0x65, 0x88]))); // IDR slice
        assert!(h264_plausible(&rtp(&[0x67, 0x42]))); // SPS
        assert!(h264_plausible(&rtp(&[0x78, 0, 2, 0x67, 0x42]))); // STAP-A
        assert!(h264_plausible(&rtp(&[0x7c, 0x85]))); // FU-A start of IDR
        assert!(!h264_plausible(&rtp(&[0x7c, 0x80]))); // FU-A of type 0
        for t in [0u8, 25, 26, 27, 29, 30, 31] {
            assert!(!h264_plausible(&rtp(&[0x60 | t, 0])), "type {t}");
        }
        assert!(!h264_plausible(&rtp(&[0xe5]))); // forbidden bit
        assert!(h264_plausible(&rtp(&[])));
    }

    #[test]
    fn h264_keyframes() {
        assert!(h264_keyframe_start(&rtp(&[0x65, 0x88]))); // IDR
        assert!(h264_keyframe_start(&rtp(&[0x67, 0x42]))); // SPS
        assert!(!h264_keyframe_start(&rtp(&[0x41, 0x9a]))); // non-IDR slice
        // STAP-A: SPS (len 2) + PPS (len 1).
        assert!(h264_keyframe_start(&rtp(&[
            0x78, 0, 2, 0x67, 0x42, 0, 1, 0x68
        ])));
        assert!(!h264_keyframe_start(&rtp(&[0x78, 0, 1, 0x68, 0, 1, 0x06])));
        assert!(h264_keyframe_start(&rtp(&[0x7c, 0x85]))); // FU-A start, IDR
        assert!(!h264_keyframe_start(&rtp(&[0x7c, 0x05]))); // FU-A continuation
        assert!(!h264_keyframe_start(&rtp(&[0x7c, 0x81]))); // FU-A start, non-IDR
        assert!(!h264_keyframe_start(&[]));
    }
}
