//! The whole MPEG-TS remux as the origin runs it on `GET …/seg-{epoch}-{n}.ts`:
//! `hls::remux(seq, (video init, video segment), Some((audio init, audio segments)))`.
//! Input: five length-prefixed parts (see `whipcast_fuzz::split`): the sequence number
//! (8 bytes, little-endian), video init, video segment, audio init (empty: no audio), and
//! the audio segments (two, length-prefixed).
//!
//! Asserts, beyond "returns":
//! - the output is a valid segment as the remux promises it (`whipcast_fuzz::ts::
//!   check_segment`: packets, PAT/PMT with CRC and counters, PIDs, continuity counters
//!   running from 0 to a multiple of 16 per elementary stream, PES start codes);
//! - one video PES per video sample;
//! - its size is bounded by its input: at most a fixed number of bytes per segment byte
//!   plus the parameter sets (copies of the init section) repeated before each keyframe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whipcast::hls::{read_init, read_samples, remux};
use whipcast_fuzz::{metered, split, ts};

fuzz_target!(|data: &[u8]| {
    let parts = split(data, 5);
    let mut seq = [0u8; 8];
    seq[..parts[0].len().min(8)].copy_from_slice(&parts[0][..parts[0].len().min(8)]);
    let seq = u64::from_le_bytes(seq);
    let (vinit, vseg, ainit) = (parts[1], parts[2], parts[3]);
    let asegs = split(parts[4], 2);
    let audio = (!ainit.is_empty()).then_some((ainit, &asegs[..]));

    let (out, heap) = metered(|| remux(seq, (vinit, vseg), audio));
    let Ok(out) = out else {
        return;
    };
    let seg_bytes = vseg.len() + asegs.iter().map(|s| s.len()).sum::<usize>();
    // Per sample (at most one per segment byte): a PES of at most 2 packets of its own (one
    // more for a lone PCR), 25 bytes of header and delimiter, the parameter sets before a
    // keyframe; plus PAT, PMT and 15 padding packets per stream.
    let bound = seg_bytes * (512 + vinit.len()) + 32 * ts::PACKET;
    assert!(
        out.len() <= bound,
        "{} bytes out of {seg_bytes} bytes of segments",
        out.len()
    );
    assert!(
        heap.peak <= 3 * bound,
        "{} bytes of heap for {} bytes out",
        heap.peak,
        out.len()
    );

    let counts = ts::check_segment(&out, seq, audio.is_some());
    let vtrack = read_init(vinit).expect("remuxed").remove(0);
    let vsamples = read_samples(vseg, &vtrack).expect("remuxed");
    assert_eq!(counts.video_pes, vsamples.len(), "one PES per video sample");
});
