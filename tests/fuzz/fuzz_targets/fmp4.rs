//! The fMP4 reader of the MPEG-TS remux (`hls::read_init`, `hls::read_samples`): it reads
//! our own init sections and segments, but on a request path (`GET …/seg-{epoch}-{n}.ts`),
//! so a malformed box must be an error, not a panic or an unbounded allocation.
//! Input: a 32-bit little-endian length, that many bytes of init section, then the segment.
//!
//! Asserts, beyond "returns":
//! - both reads hold heap linear in their input;
//! - a segment yields at most one sample per byte (the reader's own rule: every sample is
//!   at least a byte of the segment), whatever its `trun`s claim;
//! - every sample's data lies inside the segment;
//! - an AAC track's fields fit an ADTS header (object type 1–4, frequency index ≤ 12,
//!   ISO/IEC 13818-7 §6.2) and an H.264 track's NAL length size is 1 to 4 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whipcast::hls::{Codec, read_init, read_samples};
use whipcast_fuzz::{assert_linear_heap, metered, split};

/// Heap per init byte: the tracks and their parameter sets (copies of init bytes), and the
/// `trex` defaults map.
const INIT_HEAP_PER_BYTE: usize = 16;
/// Heap per segment byte: at most one 48-byte `Sample` per byte, in a doubling `Vec`.
const SEGMENT_HEAP_PER_BYTE: usize = 128;

fuzz_target!(|data: &[u8]| {
    let parts = split(data, 2);
    let (init, segment) = (parts[0], parts[1]);
    let (tracks, heap) = metered(|| read_init(init));
    assert_linear_heap(heap, init.len(), INIT_HEAP_PER_BYTE, "read_init");
    let Ok(tracks) = tracks else {
        return;
    };
    let seg_range = segment.as_ptr_range();
    for track in &tracks {
        match &track.codec {
            Codec::H264 { length_size, .. } => {
                assert!((1..=4).contains(length_size), "{length_size}");
            }
            Codec::Aac {
                object_type,
                frequency_index,
                ..
            } => {
                assert!((1..=4).contains(object_type), "object type {object_type}");
                assert!(*frequency_index <= 12, "frequency index {frequency_index}");
            }
        }
        let (samples, heap) = metered(|| read_samples(segment, track));
        assert_linear_heap(heap, segment.len(), SEGMENT_HEAP_PER_BYTE, "read_samples");
        let Ok(samples) = samples else {
            continue;
        };
        assert!(
            samples.len() <= segment.len(),
            "{} samples from a {}-byte segment",
            samples.len(),
            segment.len()
        );
        for s in &samples {
            let r = s.data.as_ptr_range();
            assert!(
                s.data.is_empty() || (seg_range.start <= r.start && r.end <= seg_range.end),
                "sample data outside the segment"
            );
        }
    }
});
