//! Elementary-stream packets (PES, ISO/IEC 13818-1 §2.4.3.6) from fMP4 samples: an H.264
//! access unit in Annex B form (start codes, an access unit delimiter, the parameter sets
//! before a keyframe), or an AAC frame behind its ADTS header; with 90 kHz PTS/DTS shifted
//! by the mux delay. Pure: samples in, bytes out; malformed samples are an error.

use super::fmp4::{Codec, Fmp4Error, Sample};
use super::ts::{AUDIO_PID, VIDEO_PID};

/// PTS/DTS run this far ahead of the PCR: the decoder's buffering time (the same 0.7 s
/// that ffmpeg's mpegts muxer uses by default).
const MUX_DELAY_90K: u64 = 63_000;
/// PTS, DTS and the PCR base are 33-bit counters (ISO/IEC 13818-1 §2.4.3.7, §2.4.3.2).
pub(super) const MASK_33: u64 = (1 << 33) - 1;

/// The H.264 access unit delimiter every TS access unit starts with (ITU-T H.264 §7.3.2.4;
/// Apple's authoring spec expects one per frame).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// One PES waiting to be packetized.
pub(super) struct Pes {
    pub(super) pid: u16,
    pub(super) bytes: Vec<u8>,
    /// DTS (90 kHz, before the mux delay): the interleaving order.
    pub(super) order: u64,
    /// PCR to carry in the first packet (video only).
    pub(super) pcr: Option<u64>,
    /// A keyframe starts here (`random_access_indicator`).
    pub(super) random_access: bool,
}

/// Converts `t` ticks of `timescale` to 90 kHz.
pub(super) fn to_90k(t: i128, timescale: u32) -> i128 {
    t * 90_000 / i128::from(timescale.max(1))
}

/// The 5-byte PTS/DTS field (ISO/IEC 13818-1 §2.4.3.7), `prefix` the 4-bit marker.
fn timestamp(prefix: u8, ts: u64) -> [u8; 5] {
    let ts = ts & MASK_33;
    [
        (prefix << 4) | ((((ts >> 30) & 0x07) as u8) << 1) | 1,
        ((ts >> 22) & 0xff) as u8,
        ((((ts >> 15) & 0x7f) as u8) << 1) | 1,
        ((ts >> 7) & 0xff) as u8,
        (((ts & 0x7f) as u8) << 1) | 1,
    ]
}

/// A video PES: access unit delimiter, parameter sets before keyframes, the NAL units
/// with start codes in place of their length prefixes.
pub(super) fn video_pes(s: &Sample<'_>, timescale: u32, codec: &Codec) -> Result<Pes, Fmp4Error> {
    let Codec::H264 {
        length_size,
        sps,
        pps,
    } = codec
    else {
        return Err(Fmp4Error::Unsupported("video track is not H.264".into()));
    };
    let dts = to_90k(i128::from(s.dts), timescale);
    let pts = to_90k(i128::from(s.dts) + i128::from(s.cts), timescale);
    let (dts, pts) = (dts.max(0) as u64, pts.max(0) as u64);
    let mut b = Vec::with_capacity(s.data.len() + 64);
    b.extend_from_slice(&[0, 0, 1, 0xe0, 0, 0, 0x80]);
    // PES_packet_length 0: unbounded, allowed for video in a TS (§2.4.3.7).
    // Timestamps are 33-bit and wrap (`timestamp` masks): wrapping additions.
    if pts == dts {
        b.extend_from_slice(&[0x80, 5]);
        b.extend_from_slice(&timestamp(0x2, pts.wrapping_add(MUX_DELAY_90K)));
    } else {
        b.extend_from_slice(&[0xc0, 10]);
        b.extend_from_slice(&timestamp(0x3, pts.wrapping_add(MUX_DELAY_90K)));
        b.extend_from_slice(&timestamp(0x1, dts.wrapping_add(MUX_DELAY_90K)));
    }
    b.extend_from_slice(&AUD);
    let mut nals = Vec::new();
    let mut rest = s.data;
    while !rest.is_empty() {
        if rest.len() < *length_size {
            return Err(Fmp4Error::Truncated("NAL length"));
        }
        let n = rest[..*length_size]
            .iter()
            .fold(0usize, |acc, x| (acc << 8) | usize::from(*x));
        let end = length_size
            .checked_add(n)
            .filter(|e| *e <= rest.len())
            .ok_or(Fmp4Error::Truncated("NAL unit"))?;
        let nal = &rest[*length_size..end];
        if !nal.is_empty() {
            nals.push(nal);
        }
        rest = &rest[end..];
    }
    let has_sps = nals
        .iter()
        .any(|n| n.first().is_some_and(|h| h & 0x1f == 7));
    if s.sync && !has_sps {
        for ps in sps.iter().chain(pps) {
            b.extend_from_slice(&START_CODE);
            b.extend_from_slice(ps);
        }
    }
    for nal in nals {
        if nal.first().is_some_and(|h| h & 0x1f == 9) {
            continue; // our own delimiter is already there
        }
        b.extend_from_slice(&START_CODE);
        b.extend_from_slice(nal);
    }
    Ok(Pes {
        pid: VIDEO_PID,
        bytes: b,
        order: dts,
        pcr: Some(dts),
        random_access: s.sync,
    })
}

/// An audio PES: one AAC frame behind its ADTS header (ISO/IEC 13818-7 §6.2).
pub(super) fn audio_pes(s: &Sample<'_>, timescale: u32, codec: &Codec) -> Result<Pes, Fmp4Error> {
    let Codec::Aac {
        object_type,
        frequency_index,
        channels,
    } = codec
    else {
        return Err(Fmp4Error::Unsupported("audio track is not AAC".into()));
    };
    let frame_len = s.data.len() + 7;
    if frame_len >= 1 << 13 || 8 + frame_len > usize::from(u16::MAX) {
        return Err(Fmp4Error::Unsupported(
            "AAC frame too large for ADTS".into(),
        ));
    }
    let pts = to_90k(i128::from(s.dts) + i128::from(s.cts), timescale).max(0) as u64;
    let mut b = Vec::with_capacity(frame_len + 14);
    let pes_len = (3 + 5 + frame_len) as u16;
    b.extend_from_slice(&[0, 0, 1, 0xc0]);
    b.extend_from_slice(&pes_len.to_be_bytes());
    b.extend_from_slice(&[0x80, 0x80, 5]);
    b.extend_from_slice(&timestamp(0x2, pts.wrapping_add(MUX_DELAY_90K)));
    let profile = object_type.saturating_sub(1) & 0x03;
    b.extend_from_slice(&[
        0xff,
        0xf1, // MPEG-4, layer 0, no CRC
        (profile << 6) | ((frequency_index & 0x0f) << 2) | ((channels >> 2) & 0x01),
        ((channels & 0x03) << 6) | ((frame_len >> 11) & 0x03) as u8,
        ((frame_len >> 3) & 0xff) as u8,
        (((frame_len & 0x07) as u8) << 5) | 0x1f,
        0xfc,
    ]);
    b.extend_from_slice(s.data);
    Ok(Pes {
        pid: AUDIO_PID,
        bytes: b,
        order: pts,
        pcr: None,
        random_access: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_encode_with_markers() {
        assert_eq!(timestamp(0x2, 0), [0x21, 0, 1, 0, 1]);
        let t = timestamp(0x3, MASK_33);
        assert_eq!(t, [0x3f, 0xff, 0xff, 0xff, 0xff]);
    }
}
