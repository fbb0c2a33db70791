//! MPEG-TS segments for players that cannot read fMP4 (older TVs, set-top boxes, old
//! iOS): a segment of a video rung and the audio that overlaps it, remuxed into one
//! transport stream with muxed audio (ISO/IEC 13818-1; HLS2 §3.2). This file lays the
//! PES of [`super::pes`] out in 188-byte packets, with PAT, PMT and PCR.
//!
//! The remux is pure and stateless, so the origin can do it on request and a CDN caches
//! the result: nothing is kept in memory for a variant nobody watches. Two rules make
//! independently remuxed segments one continuous stream:
//! - timestamps come from the fMP4 decode times (`tfdt`), which are continuous;
//! - every elementary stream's packet count in a segment is padded to a multiple of 16
//!   (by spreading the last PES over more packets), so every segment starts each PID's
//!   `continuity_counter` at 0 and the counters run on across segment boundaries; PAT and
//!   PMT, once per segment, carry the segment's sequence number modulo 16.

use super::fmp4::{self, Fmp4Error, Track};
use super::pes::{MASK_33, Pes, audio_pes, to_90k, video_pes};

const PACKET: usize = 188;
const PAYLOAD: usize = PACKET - 4;
const PAT_PID: u16 = 0x0000;
const PMT_PID: u16 = 0x1000;
pub(super) const VIDEO_PID: u16 = 0x0100;
pub(super) const AUDIO_PID: u16 = 0x0101;
/// Stream types (ISO/IEC 13818-1 Table 2-34): AVC video, ADTS AAC audio.
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_AAC: u8 = 0x0f;

/// CRC-32/MPEG-2 of a PSI section (ISO/IEC 13818-1 Annex A).
fn crc32(data: &[u8]) -> u32 {
    const MPEG2: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);
    MPEG2.checksum(data)
}

/// A one-packet PSI table: `table` is the section from `table_id` up to, without, the CRC.
fn psi_packet(out: &mut Vec<u8>, pid: u16, cc: u8, mut section: Vec<u8>) {
    let crc = crc32(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    let start = out.len();
    out.extend_from_slice(&[
        0x47,
        0x40 | (pid >> 8) as u8,
        pid as u8,
        0x10 | (cc & 0x0f),
        0,
    ]);
    out.extend_from_slice(&section);
    out.resize(start + PACKET, 0xff);
}

fn pat(out: &mut Vec<u8>, cc: u8) {
    // section_length 13: 5 bytes of header after it, one program (4), CRC (4).
    let section = vec![
        0x00,
        0xb0,
        13,
        0x00,
        0x01, // transport_stream_id
        0xc1, // version 0, current
        0x00,
        0x00,
        0x00,
        0x01, // program_number 1
        0xe0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ];
    psi_packet(out, PAT_PID, cc, section);
}

fn pmt(out: &mut Vec<u8>, cc: u8, audio: bool) {
    let streams: &[(u8, u16)] = if audio {
        &[(STREAM_TYPE_H264, VIDEO_PID), (STREAM_TYPE_AAC, AUDIO_PID)]
    } else {
        &[(STREAM_TYPE_H264, VIDEO_PID)]
    };
    let section_length = 9 + 5 * streams.len() + 4;
    let mut section = vec![
        0x02,
        0xb0,
        section_length as u8,
        0x00,
        0x01, // program_number
        0xc1,
        0x00,
        0x00,
        0xe0 | (VIDEO_PID >> 8) as u8, // PCR_PID: video
        VIDEO_PID as u8,
        0xf0,
        0x00, // program_info_length 0
    ];
    for (stream_type, pid) in streams {
        section.extend_from_slice(&[*stream_type, 0xe0 | (pid >> 8) as u8, *pid as u8, 0xf0, 0]);
    }
    psi_packet(out, PMT_PID, cc, section);
}

/// Bytes of the adaptation field content (after its length byte) in a PES's first packet.
fn first_adaptation(pes: &Pes) -> Vec<u8> {
    adaptation(pes.pcr, pes.random_access)
}

/// Adaptation field content (after its length byte) with a PCR and/or the
/// `random_access_indicator`; empty when neither.
fn adaptation(pcr: Option<u64>, random_access: bool) -> Vec<u8> {
    if pcr.is_none() && !random_access {
        return Vec::new();
    }
    let mut af = vec![0u8];
    if random_access {
        af[0] |= 0x40;
    }
    if let Some(pcr) = pcr {
        af[0] |= 0x10;
        let base = pcr & MASK_33;
        af.extend_from_slice(&[
            (base >> 25) as u8,
            (base >> 17) as u8,
            (base >> 9) as u8,
            (base >> 1) as u8,
            (((base & 1) as u8) << 7) | 0x7e, // 6 reserved bits, extension 0
            0,
        ]);
    }
    af
}

/// Packets a PES takes when packed tightly.
fn natural_packets(pes: &Pes) -> usize {
    let af = first_adaptation(pes);
    let room = PAYLOAD - if af.is_empty() { 0 } else { 1 + af.len() };
    if pes.bytes.len() <= room {
        1
    } else {
        1 + (pes.bytes.len() - room).div_ceil(PAYLOAD)
    }
}

/// Writes `pes` as exactly `packets` TS packets (at least its natural count; extra packets
/// carry fewer payload bytes and more stuffing). Every packet carries ≥ 1 payload byte,
/// so `packets` ≤ the PES length.
fn packetize(out: &mut Vec<u8>, pes: &Pes, cc: &mut u8, packets: usize) {
    let mut rest: &[u8] = &pes.bytes;
    for i in 0..packets {
        let mut af = if i == 0 {
            Some(first_adaptation(pes)).filter(|a| !a.is_empty())
        } else {
            None
        };
        let af_len = af.as_ref().map_or(0, |a| 1 + a.len());
        let after = packets - i - 1;
        let take = (PAYLOAD - af_len)
            .min(rest.len().saturating_sub(after))
            .max(1);
        let take = take.min(rest.len());
        let stuffing = PAYLOAD - af_len - take;
        if stuffing > 0 {
            match af.as_mut() {
                Some(a) => a.resize(a.len() + stuffing, 0xff),
                // One byte: an adaptation field of length 0. More: flags byte + 0xff bytes.
                None if stuffing == 1 => af = Some(Vec::new()),
                None => {
                    let mut a = vec![0u8];
                    a.resize(stuffing - 1, 0xff);
                    af = Some(a);
                }
            }
        }
        let start = out.len();
        let pusi = if i == 0 { 0x40 } else { 0 };
        let control = if af.is_some() { 0x30 } else { 0x10 };
        out.extend_from_slice(&[
            0x47,
            pusi | ((pes.pid >> 8) as u8 & 0x1f),
            pes.pid as u8,
            control | (*cc & 0x0f),
        ]);
        *cc = (*cc + 1) & 0x0f;
        if let Some(a) = af {
            out.push(a.len() as u8);
            out.extend_from_slice(&a);
        }
        out.extend_from_slice(&rest[..take]);
        rest = &rest[take..];
        debug_assert_eq!(out.len() - start, PACKET);
    }
}

/// Remuxes segment `seq` of a video rung (`video` = its init section and segment) and,
/// if given, the audio rendition's samples that fall in the same time span into one TS
/// segment. `audio` is the audio init section and the audio segments that overlap the
/// video segment (any number, in order): an audio sample belongs to this TS segment when
/// its PTS is in `[first video DTS, last video DTS + duration)`, so consecutive TS
/// segments share no sample and miss none.
pub fn remux(
    seq: u64,
    video: (&[u8], &[u8]),
    audio: Option<(&[u8], &[&[u8]])>,
) -> Result<Vec<u8>, Fmp4Error> {
    let first_track = |init: &[u8]| -> Result<Track, Fmp4Error> {
        fmp4::read_init(init)?
            .into_iter()
            .next()
            .ok_or(Fmp4Error::Missing("trak"))
    };
    let vtrack = first_track(video.0)?;
    let vsamples = fmp4::read_samples(video.1, &vtrack)?;
    let (Some(first), Some(last)) = (vsamples.first(), vsamples.last()) else {
        return Err(Fmp4Error::Missing("video samples"));
    };
    let span = (
        to_90k(i128::from(first.dts), vtrack.timescale),
        to_90k(
            i128::from(last.dts) + i128::from(last.duration),
            vtrack.timescale,
        ),
    );
    let mut pes = Vec::with_capacity(vsamples.len() * 3);
    for s in &vsamples {
        pes.push(video_pes(s, vtrack.timescale, &vtrack.codec)?);
    }
    if let Some((init, segments)) = audio {
        let atrack = first_track(init)?;
        for segment in segments {
            for s in fmp4::read_samples(segment, &atrack)? {
                let pts = to_90k(i128::from(s.dts) + i128::from(s.cts), atrack.timescale);
                if (span.0..span.1).contains(&pts) {
                    pes.push(audio_pes(&s, atrack.timescale, &atrack.codec)?);
                }
            }
        }
    }
    // Interleave by decode time (stable: equal times keep video first).
    pes.sort_by_key(|p| p.order);
    // Pad each PID's packet count to a multiple of 16 on its last PES (see the module doc).
    let mut counts = [0usize; 2];
    let mut last = [None::<usize>; 2];
    let slot = |pid: u16| usize::from(pid == AUDIO_PID);
    let mut plan: Vec<usize> = pes.iter().map(natural_packets).collect();
    for (i, p) in pes.iter().enumerate() {
        counts[slot(p.pid)] += plan[i];
        last[slot(p.pid)] = Some(i);
    }
    for k in 0..2 {
        if let Some(i) = last[k] {
            let extra = (16 - counts[k] % 16) % 16;
            plan[i] += extra;
            if plan[i] > pes[i].bytes.len() {
                // Cannot happen with real frames (a PES header alone is 14 bytes); keep
                // the stream valid rather than the counters continuous.
                plan[i] = natural_packets(&pes[i]);
            }
        }
    }
    let total: usize = plan.iter().sum::<usize>() + 2;
    let mut out = Vec::with_capacity(total * PACKET);
    let psi_cc = (seq & 0x0f) as u8;
    pat(&mut out, psi_cc);
    pmt(&mut out, psi_cc, audio.is_some());
    let mut cc = [0u8; 2];
    let mut last_pcr: Option<u64> = None;
    for (p, n) in pes.iter().zip(plan) {
        match p.pcr {
            Some(pcr) => last_pcr = Some(pcr),
            // Below 10 video frames a second (a still screen share) PCRs would be more
            // than 100 ms apart (ISO/IEC 13818-1 §2.7.2): an adaptation-only packet on the
            // PCR PID carries one (no payload, so no continuity counter step).
            None if last_pcr.is_some_and(|l| p.order.saturating_sub(l) > PCR_INTERVAL_90K) => {
                pcr_packet(&mut out, p.order, cc[slot(VIDEO_PID)]);
                last_pcr = Some(p.order);
            }
            None => {}
        }
        packetize(&mut out, p, &mut cc[slot(p.pid)], n);
    }
    Ok(out)
}

/// The longest PCR interval we let pass (ISO/IEC 13818-1 §2.7.2 allows 100 ms).
const PCR_INTERVAL_90K: u64 = 9_000;

/// An adaptation-field-only packet on the video (PCR) PID carrying `pcr`. `cc` is the
/// PID's current counter: packets without payload repeat it (§2.4.3.3).
fn pcr_packet(out: &mut Vec<u8>, pcr: u64, cc: u8) {
    let start = out.len();
    let cc_prev = cc.wrapping_sub(1) & 0x0f;
    out.extend_from_slice(&[
        0x47,
        (VIDEO_PID >> 8) as u8 & 0x1f,
        VIDEO_PID as u8,
        0x20 | cc_prev,
        183,
    ]);
    out.extend_from_slice(&adaptation(Some(pcr), false));
    out.resize(start + PACKET, 0xff);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_mpeg2_check_value() {
        // CRC-32/MPEG-2 of "123456789" is 0x0376E6E7.
        assert_eq!(crc32(b"123456789"), 0x0376_e6e7);
    }

    fn pes(len: usize, pcr: bool) -> Pes {
        Pes {
            pid: VIDEO_PID,
            bytes: (0..len).map(|i| i as u8).collect(),
            order: 0,
            pcr: pcr.then_some(90_000),
            random_access: pcr,
        }
    }

    #[test]
    fn packetize_fills_exact_packets_and_carries_every_byte() {
        for (len, pcr, extra) in [
            (1, false, 0),
            (183, false, 0),
            (184, false, 0),
            (185, true, 0),
            (5000, true, 0),
            (5000, true, 15),
            (400, false, 3),
        ] {
            let p = pes(len, pcr);
            let n = natural_packets(&p) + extra;
            let mut out = Vec::new();
            let mut cc = 5u8;
            packetize(&mut out, &p, &mut cc, n);
            assert_eq!(out.len(), n * PACKET, "len {len}");
            assert_eq!(usize::from(cc), (5 + n) % 16);
            // Reassemble the payload.
            let mut payload = Vec::new();
            for (i, pkt) in out.chunks(PACKET).enumerate() {
                assert_eq!(pkt[0], 0x47);
                assert_eq!(pkt[1] & 0x40 != 0, i == 0, "PUSI only on the first");
                assert_eq!(usize::from(pkt[3] & 0x0f), (5 + i) % 16);
                let body = if pkt[3] & 0x20 != 0 {
                    let af = usize::from(pkt[4]);
                    if i == 0 && pcr {
                        assert_eq!(pkt[5] & 0x50, 0x50, "PCR and RAI flags");
                    }
                    &pkt[5 + af..]
                } else {
                    &pkt[4..]
                };
                assert!(!body.is_empty());
                payload.extend_from_slice(body);
            }
            assert_eq!(payload, p.bytes, "len {len}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert!(remux(0, (b"", b""), None).is_err());
        assert!(remux(0, (&[0u8; 64], &[0xffu8; 64]), None).is_err());
    }

    #[test]
    fn pcr_packet_is_adaptation_only_with_the_previous_counter() {
        let mut out = Vec::new();
        pcr_packet(&mut out, 90_000, 3);
        assert_eq!(out.len(), PACKET);
        assert_eq!(out[3], 0x20 | 2, "adaptation only, counter not advanced");
        assert_eq!(out[4], 183);
        assert_eq!(out[5] & 0x10, 0x10, "PCR flag");
    }
}
