//! Reads back what cmafmux wrote: the codec set-up of an init section and the samples of a
//! CMAF segment (one or more `moof`+`mdat` pairs, one per LL-HLS part). Only what the
//! MPEG-TS remux ([`super::ts`]) needs, ISO/IEC 14496-12 §8 box layouts; anything else
//! is skipped; the boxes are walked by [`super::boxes`]. Pure, and every length is checked:
//! a malformed box is an error, not a panic.

use thiserror::Error;

use super::boxes::{Reader, boxes, child, find};

/// Why an init section or a segment could not be read.
#[derive(Debug, Error, PartialEq)]
pub enum Fmp4Error {
    /// A box or field runs past its parent.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A required box is missing.
    #[error("no {0} box")]
    Missing(&'static str),
    /// A codec the remux does not carry.
    #[error("unsupported sample entry {0}")]
    Unsupported(String),
}

/// The codec of a track, with what a TS stream needs from its sample entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Codec {
    /// H.264: NAL length size and the parameter sets from `avcC` (ISO/IEC 14496-15 §5.3.3).
    H264 {
        /// Bytes of each NAL unit's length prefix (1, 2 or 4).
        length_size: usize,
        /// Sequence parameter sets.
        sps: Vec<Vec<u8>>,
        /// Picture parameter sets.
        pps: Vec<Vec<u8>>,
    },
    /// AAC: the AudioSpecificConfig fields an ADTS header repeats (ISO/IEC 14496-3 §1.6.2.1).
    Aac {
        /// Audio object type (2: AAC LC).
        object_type: u8,
        /// Sampling frequency index.
        frequency_index: u8,
        /// Channel configuration.
        channels: u8,
    },
}

/// One track of an init section.
#[derive(Debug, Clone, PartialEq)]
pub struct Track {
    /// `track_ID`.
    pub id: u32,
    /// Media timescale (ticks per second).
    pub timescale: u32,
    /// The codec.
    pub codec: Codec,
    /// `trex` defaults: sample duration, size, flags.
    pub defaults: (u32, u32, u32),
}

/// One sample of a segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// Decode time, in the track's timescale.
    pub dts: u64,
    /// Presentation offset (`pts - dts`), in the track's timescale.
    pub cts: i64,
    /// Sample duration, in the track's timescale.
    pub duration: u32,
    /// A sync sample (keyframe).
    pub sync: bool,
    /// The sample's bytes in the `mdat`.
    pub data: &'a [u8],
}

/// The tracks of an init section (`moov`).
pub fn read_init(init: &[u8]) -> Result<Vec<Track>, Fmp4Error> {
    let moov = find(init, &[b"moov"], "moov")?;
    let mut defaults = std::collections::HashMap::new();
    if let Some(mvex) = child(moov, b"mvex")? {
        for b in boxes(mvex) {
            let b = b?;
            if &b.kind == b"trex" {
                let mut r = Reader::new(b.body, "trex");
                r.version_flags()?;
                let id = r.u32()?;
                r.u32()?; // default_sample_description_index
                let d = (r.u32()?, r.u32()?, r.u32()?);
                defaults.insert(id, d);
            }
        }
    }
    let mut tracks = Vec::new();
    for b in boxes(moov) {
        let b = b?;
        if &b.kind != b"trak" {
            continue;
        }
        let mut tkhd = Reader::new(find(b.body, &[b"tkhd"], "tkhd")?, "tkhd");
        let (v, _) = tkhd.version_flags()?;
        tkhd.bytes(if v == 1 { 16 } else { 8 })?; // creation, modification times
        let id = tkhd.u32()?;
        let mdia = find(b.body, &[b"mdia"], "mdia")?;
        let mut mdhd = Reader::new(find(mdia, &[b"mdhd"], "mdhd")?, "mdhd");
        let (v, _) = mdhd.version_flags()?;
        mdhd.bytes(if v == 1 { 16 } else { 8 })?;
        let timescale = mdhd.u32()?;
        let stsd = find(mdia, &[b"minf", b"stbl", b"stsd"], "stsd")?;
        // stsd: version/flags, entry count, then the sample entries.
        let entries = stsd.get(8..).ok_or(Fmp4Error::Truncated("stsd"))?;
        let entry = boxes(entries)
            .next()
            .ok_or(Fmp4Error::Missing("sample entry"))??;
        let codec = match &entry.kind {
            b"avc1" | b"avc3" => read_avcc(entry.body)?,
            b"mp4a" => read_mp4a(entry.body)?,
            other => {
                return Err(Fmp4Error::Unsupported(
                    String::from_utf8_lossy(other).into(),
                ));
            }
        };
        tracks.push(Track {
            id,
            timescale,
            codec,
            defaults: defaults.get(&id).copied().unwrap_or((0, 0, 0)),
        });
    }
    Ok(tracks)
}

/// `avc1`: 78 bytes of VisualSampleEntry, then boxes, among them `avcC`.
fn read_avcc(entry: &[u8]) -> Result<Codec, Fmp4Error> {
    let children = entry.get(78..).ok_or(Fmp4Error::Truncated("avc1"))?;
    let avcc = child(children, b"avcC")?.ok_or(Fmp4Error::Missing("avcC"))?;
    let mut r = Reader::new(avcc, "avcC");
    r.bytes(4)?; // version, profile, compatibility, level
    let length_size = usize::from(r.u8()? & 0x03) + 1;
    let mut sps = Vec::new();
    for _ in 0..(r.u8()? & 0x1f) {
        let n = usize::from(r.u16()?);
        sps.push(r.bytes(n)?.to_vec());
    }
    let mut pps = Vec::new();
    for _ in 0..r.u8()? {
        let n = usize::from(r.u16()?);
        pps.push(r.bytes(n)?.to_vec());
    }
    Ok(Codec::H264 {
        length_size,
        sps,
        pps,
    })
}

/// `mp4a`: 28 bytes of AudioSampleEntry, then `esds` (ISO/IEC 14496-1 §7.2.6 descriptors).
fn read_mp4a(entry: &[u8]) -> Result<Codec, Fmp4Error> {
    let children = entry.get(28..).ok_or(Fmp4Error::Truncated("mp4a"))?;
    let esds = child(children, b"esds")?.ok_or(Fmp4Error::Missing("esds"))?;
    let mut r = Reader::new(esds, "esds");
    r.version_flags()?;
    // Walk the descriptors down to DecoderSpecificInfo (tag 5).
    loop {
        let tag = r.u8()?;
        let mut len = 0usize;
        for _ in 0..4 {
            let b = r.u8()?;
            len = (len << 7) | usize::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        match tag {
            // ES_Descriptor: ES_ID, flags (and what they announce), then sub-descriptors.
            3 => {
                r.u16()?;
                let flags = r.u8()?;
                if flags & 0x80 != 0 {
                    r.u16()?;
                }
                if flags & 0x40 != 0 {
                    let n = usize::from(r.u8()?);
                    r.bytes(n)?;
                }
                if flags & 0x20 != 0 {
                    r.u16()?;
                }
            }
            // DecoderConfigDescriptor: 13 bytes, then DecoderSpecificInfo.
            4 => {
                r.bytes(13)?;
            }
            5 => {
                let asc = r.bytes(len)?;
                if asc.len() < 2 {
                    return Err(Fmp4Error::Truncated("AudioSpecificConfig"));
                }
                let object_type = asc[0] >> 3;
                let frequency_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
                // ADTS carries object types 1-4 in two bits and no explicit frequency
                // (index 15) or escape type (31): anything else cannot be remuxed.
                if !(1..=4).contains(&object_type) || frequency_index > 12 {
                    return Err(Fmp4Error::Unsupported(format!(
                        "AAC object type {object_type}, frequency index {frequency_index}"
                    )));
                }
                return Ok(Codec::Aac {
                    object_type,
                    frequency_index,
                    channels: (asc[1] >> 3) & 0x0f,
                });
            }
            _ => {
                r.bytes(len)?;
            }
        }
    }
}

/// The samples of `track` in a segment, in decode order.
pub fn read_samples<'a>(segment: &'a [u8], track: &Track) -> Result<Vec<Sample<'a>>, Fmp4Error> {
    let mut out = Vec::new();
    for b in boxes(segment) {
        let b = b?;
        if &b.kind != b"moof" {
            continue;
        }
        let moof_start = b.start;
        for t in boxes(b.body) {
            let t = t?;
            if &t.kind == b"traf" {
                read_traf(segment, moof_start, t.body, track, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn read_traf<'a>(
    segment: &'a [u8],
    moof_start: usize,
    traf: &[u8],
    track: &Track,
    out: &mut Vec<Sample<'a>>,
) -> Result<(), Fmp4Error> {
    let mut tfhd = Reader::new(find(traf, &[b"tfhd"], "tfhd")?, "tfhd");
    let (_, flags) = tfhd.version_flags()?;
    if tfhd.u32()? != track.id {
        return Ok(());
    }
    // Without base-data-offset, CMAF data offsets count from the moof (default-base-is-moof,
    // ISO/IEC 23000-19 §7.5.16).
    let base = if flags & 0x01 != 0 {
        usize::try_from(tfhd.u64()?).map_err(|_| Fmp4Error::Truncated("tfhd"))?
    } else {
        moof_start
    };
    if flags & 0x02 != 0 {
        tfhd.u32()?;
    }
    let (mut d_duration, mut d_size, mut d_flags) = track.defaults;
    if flags & 0x08 != 0 {
        d_duration = tfhd.u32()?;
    }
    if flags & 0x10 != 0 {
        d_size = tfhd.u32()?;
    }
    if flags & 0x20 != 0 {
        d_flags = tfhd.u32()?;
    }
    let mut tfdt = Reader::new(find(traf, &[b"tfdt"], "tfdt")?, "tfdt");
    let (v, _) = tfdt.version_flags()?;
    let mut dts = if v == 1 {
        tfdt.u64()?
    } else {
        u64::from(tfdt.u32()?)
    };
    // A trun without a data offset continues where the previous one's data ended
    // (ISO/IEC 14496-12 §8.8.8.1); the first starts at the base.
    let mut next = base;
    for b in boxes(traf) {
        let b = b?;
        if &b.kind != b"trun" {
            continue;
        }
        let mut r = Reader::new(b.body, "trun");
        let (version, tf) = r.version_flags()?;
        let count = r.u32()?;
        // Every sample is at least a byte of the segment: more samples than bytes, counted
        // over all of the track's `trun`s (a 16-byte `trun` can claim a whole segment's
        // worth of empty samples, and a segment can hold many), is garbage that would
        // otherwise allocate without bound.
        if (count as usize).saturating_add(out.len()) > segment.len() {
            return Err(Fmp4Error::Truncated("trun sample count"));
        }
        let mut offset = next;
        if tf & 0x01 != 0 {
            let o = r.u32()? as i32;
            offset = base
                .checked_add_signed(o as isize)
                .ok_or(Fmp4Error::Truncated("trun data offset"))?;
        }
        let first_flags = if tf & 0x04 != 0 { Some(r.u32()?) } else { None };
        for i in 0..count {
            let duration = if tf & 0x100 != 0 {
                r.u32()?
            } else {
                d_duration
            };
            let size = if tf & 0x200 != 0 { r.u32()? } else { d_size } as usize;
            let sflags = if tf & 0x400 != 0 {
                r.u32()?
            } else if i == 0 {
                first_flags.unwrap_or(d_flags)
            } else {
                d_flags
            };
            let cts = if tf & 0x800 != 0 {
                let c = r.u32()?;
                if version == 0 {
                    i64::from(c)
                } else {
                    i64::from(c as i32)
                }
            } else {
                0
            };
            let data = segment
                .get(offset..offset.saturating_add(size))
                .ok_or(Fmp4Error::Truncated("sample data"))?;
            offset += size;
            next = offset;
            out.push(Sample {
                dts,
                cts,
                duration,
                // sample_is_non_sync_sample (ISO/IEC 14496-12 §8.8.3.1).
                sync: sflags & 0x0001_0000 == 0,
                data,
            });
            dts = dts.wrapping_add(u64::from(duration));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        assert!(read_init(b"").is_err());
        assert!(read_init(&[0, 0, 0, 99, b'm', b'o', b'o', b'v']).is_err());
        assert!(read_init(&bx(b"moov", &bx(b"trak", b"xx"))).is_err());
        let track = Track {
            id: 1,
            timescale: 90_000,
            codec: Codec::Aac {
                object_type: 2,
                frequency_index: 3,
                channels: 2,
            },
            defaults: (0, 0, 0),
        };
        assert!(read_samples(&[0, 0, 0, 4], &track).is_err());
        // A trun whose sample runs past the buffer.
        let mut tfhd = vec![0, 0, 0, 0];
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        let tfdt = vec![0u8; 8];
        let mut trun = vec![0, 0, 0x02, 0x01]; // data offset + sample size
        trun.extend_from_slice(&1u32.to_be_bytes());
        trun.extend_from_slice(&0u32.to_be_bytes());
        trun.extend_from_slice(&1000u32.to_be_bytes());
        let traf = [bx(b"tfhd", &tfhd), bx(b"tfdt", &tfdt), bx(b"trun", &trun)].concat();
        let seg = bx(b"moof", &bx(b"traf", &traf));
        assert_eq!(
            read_samples(&seg, &track),
            Err(Fmp4Error::Truncated("sample data"))
        );
    }

    #[test]
    fn samples_are_bounded_by_the_segment_over_all_truns() {
        // Found with tests/fuzz (fmp4): 250 `trun`s of 16 bytes, each claiming as many
        // empty samples as the segment has bytes, made 1 M samples (42 MB) of 4 KB.
        let track = Track {
            id: 1,
            timescale: 48_000,
            codec: Codec::Aac {
                object_type: 2,
                frequency_index: 3,
                channels: 2,
            },
            defaults: (1024, 0, 0),
        };
        let seg = |count: u32, truns: usize| {
            let mut tfhd = vec![0, 0x02, 0, 0]; // default-base-is-moof
            tfhd.extend_from_slice(&1u32.to_be_bytes());
            let mut trun = vec![0, 0, 0, 0]; // nothing per sample
            trun.extend_from_slice(&count.to_be_bytes());
            let mut traf = [bx(b"tfhd", &tfhd), bx(b"tfdt", &[0; 8])].concat();
            for _ in 0..truns {
                traf.extend_from_slice(&bx(b"trun", &trun));
            }
            bx(b"moof", &bx(b"traf", &traf))
        };
        let len = seg(0, 250).len() as u32;
        assert_eq!(
            read_samples(&seg(len, 250), &track),
            Err(Fmp4Error::Truncated("trun sample count"))
        );
        // Up to one sample per byte, whichever trun they are in, still reads.
        let two = seg(0, 2).len() as u32;
        let full = seg(two / 2, 2);
        let s = read_samples(&full, &track).expect("samples");
        assert_eq!(s.len(), two as usize / 2 * 2);
    }

    #[test]
    fn reads_samples_with_durations_sizes_flags_and_offsets() {
        let track = Track {
            id: 1,
            timescale: 90_000,
            codec: Codec::Aac {
                object_type: 2,
                frequency_index: 3,
                channels: 2,
            },
            defaults: (3000, 0, 0x0001_0000),
        };
        let mut tfhd = vec![0, 0x02, 0, 0x10]; // default-base-is-moof + default size
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        tfhd.extend_from_slice(&2u32.to_be_bytes());
        let mut tfdt = vec![1, 0, 0, 0];
        tfdt.extend_from_slice(&90_000u64.to_be_bytes());
        // data offset + first sample flags; durations from trex.
        let mut trun = vec![0, 0, 0, 0x05];
        trun.extend_from_slice(&2u32.to_be_bytes());
        trun.extend_from_slice(&0u32.to_be_bytes()); // patched below
        trun.extend_from_slice(&0u32.to_be_bytes()); // first sample: sync
        let traf = [bx(b"tfhd", &tfhd), bx(b"tfdt", &tfdt), bx(b"trun", &trun)].concat();
        let mut moof = bx(b"moof", &bx(b"traf", &traf));
        let offset = (moof.len() + 8) as u32;
        let at = moof.len() - 8;
        moof[at..at + 4].copy_from_slice(&offset.to_be_bytes());
        let seg = [moof, bx(b"mdat", &[1, 2, 3, 4])].concat();
        let s = read_samples(&seg, &track).expect("samples");
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].dts, s[0].sync, s[0].data),
            (90_000, true, &[1u8, 2][..])
        );
        assert_eq!(
            (s[1].dts, s[1].sync, s[1].data),
            (93_000, false, &[3u8, 4][..])
        );
    }
}
