//! What the fuzz targets share: a heap meter (the global allocator of every target counts
//! what the code under test allocates), the size-class check built on it, and the checks of
//! an ICE candidate and of an MPEG-TS segment that more than one target applies.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live bytes, their high-water mark and allocations.
/// libFuzzer's own (C++) allocations do not go through it; only Rust code's do.
pub struct Meter;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static CALLS: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let live = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(live, Relaxed);
    CALLS.fetch_add(1, Relaxed);
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are only bookkeeping.
unsafe impl GlobalAlloc for Meter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System.alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Meter = Meter;

/// What a call took from the heap.
#[derive(Debug, Clone, Copy)]
pub struct Heap {
    /// The most bytes it held at once (its result included).
    pub peak: usize,
    /// How many allocations (and reallocations) it made.
    pub allocations: usize,
}

/// Runs `f` and measures its heap use. The targets are single-threaded (libFuzzer calls
/// them on one thread), so nothing else moves the counters meanwhile.
pub fn metered<T>(f: impl FnOnce() -> T) -> (T, Heap) {
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let calls = CALLS.load(Relaxed);
    let out = f();
    let heap = Heap {
        peak: PEAK.load(Relaxed).saturating_sub(base),
        allocations: CALLS.load(Relaxed) - calls,
    };
    (out, heap)
}

/// Slack for the fixed costs of a call (a `HashMap`'s first table, an error message).
pub const HEAP_SLACK: usize = 16 * 1024;

/// Asserts that a parse of `input_len` bytes held at most `per_byte` bytes of heap per input
/// byte (plus [`HEAP_SLACK`]): its memory is linear in its input, so a request body of the
/// size the server admits cannot make it allocate more than a fixed multiple of that size.
pub fn assert_linear_heap(heap: Heap, input_len: usize, per_byte: usize, what: &str) {
    let limit = input_len
        .saturating_mul(per_byte)
        .saturating_add(HEAP_SLACK);
    assert!(
        heap.peak <= limit,
        "{what}: {} bytes of heap for {input_len} bytes of input (limit {limit})",
        heap.peak
    );
}

/// Feeds a trickled candidate to the parser the WebRTC stack applies to it
/// (`add_ice_candidate` → `rtc::ice::candidate::unmarshal_candidate`, after stripping
/// `candidate:` as the stack does): it must return, whatever the text.
pub fn stack_parses_candidate(candidate: &str) {
    let value = candidate.strip_prefix("candidate:").unwrap_or(candidate);
    if !value.is_empty() {
        let _ = rtc::ice::candidate::unmarshal_candidate(value);
    }
}

/// MPEG-TS constants of `hls::remux` (ISO/IEC 13818-1).
pub mod ts {
    /// Packet size.
    pub const PACKET: usize = 188;
    /// PIDs the remux writes.
    pub const PAT: u16 = 0x0000;
    /// Program map table.
    pub const PMT: u16 = 0x1000;
    /// Video elementary stream (also the PCR PID).
    pub const VIDEO: u16 = 0x0100;
    /// Audio elementary stream.
    pub const AUDIO: u16 = 0x0101;

    /// What a TS segment holds, per elementary stream.
    #[derive(Debug, Default)]
    pub struct Counts {
        /// PES packets started (payload_unit_start_indicator) on the video PID.
        pub video_pes: usize,
        /// PES packets started on the audio PID.
        pub audio_pes: usize,
    }

    /// Checks a segment as `hls::remux` promises to write it: whole 188-byte packets with
    /// the sync byte; PAT then PMT first, one packet each, continuity counter `seq % 16`, a
    /// correct CRC (Annex A); only the video and (with `audio`) audio PIDs after them; a
    /// valid adaptation field; every elementary stream packet with a payload counts on by
    /// one from 0 (§2.4.3.3), and their number per PID is a multiple of 16 (the module's
    /// padding rule, which lets independently remuxed segments continue each other's
    /// counters); an adaptation-only packet (a lone PCR) repeats the previous counter;
    /// every PES starts with `00 00 01`.
    pub fn check_segment(out: &[u8], seq: u64, audio: bool) -> Counts {
        assert_eq!(
            out.len() % PACKET,
            0,
            "not whole packets: {} bytes",
            out.len()
        );
        let packets: Vec<&[u8]> = out.chunks(PACKET).collect();
        assert!(packets.len() >= 2, "no PAT/PMT");
        let psi_cc = (seq & 0x0f) as u8;
        for (i, (pid, table)) in [(PAT, 0x00u8), (PMT, 0x02u8)].into_iter().enumerate() {
            let p = packets[i];
            assert_eq!(p[0], 0x47);
            assert_eq!(pid_of(p), pid, "packet {i} is not the PAT/PMT");
            assert_eq!(
                p[1] & 0x40,
                0x40,
                "PSI without payload_unit_start_indicator"
            );
            assert_eq!(p[3] & 0x0f, psi_cc, "PSI continuity counter");
            assert_eq!(p[4], 0, "pointer_field");
            let section = &p[5..];
            assert_eq!(section[0], table);
            let len = usize::from(u16::from_be_bytes([section[1], section[2]]) & 0x0fff);
            let whole = &section[..3 + len];
            const MPEG2: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2);
            assert_eq!(MPEG2.checksum(whole), 0, "PSI CRC");
        }
        let mut counts = Counts::default();
        let mut cc: [Option<u8>; 2] = [None, None];
        let mut with_payload = [0usize; 2];
        for (i, p) in packets.iter().enumerate().skip(2) {
            assert_eq!(p[0], 0x47, "sync byte of packet {i}");
            let pid = pid_of(p);
            let slot = match pid {
                VIDEO => 0,
                AUDIO if audio => 1,
                other => panic!("packet {i}: PID {other:#x}"),
            };
            let control = (p[3] >> 4) & 0x03;
            let counter = p[3] & 0x0f;
            let mut at = 4;
            if control & 0x02 != 0 {
                let af = usize::from(p[4]);
                assert!(af <= 183, "packet {i}: adaptation field of {af} bytes");
                at += 1 + af;
            }
            if control & 0x01 != 0 {
                assert!(at < PACKET, "packet {i}: payload flag without payload");
                let expect = cc[slot].map_or(0, |c| (c + 1) & 0x0f);
                assert_eq!(counter, expect, "packet {i}: continuity counter");
                cc[slot] = Some(counter);
                with_payload[slot] += 1;
                if p[1] & 0x40 != 0 {
                    assert!(
                        p[at..].starts_with(&[0, 0, 1]),
                        "packet {i}: PES without a start code"
                    );
                    if slot == 0 {
                        counts.video_pes += 1;
                    } else {
                        counts.audio_pes += 1;
                    }
                }
            } else {
                assert_eq!(
                    control, 0x02,
                    "packet {i}: reserved adaptation_field_control"
                );
                assert_eq!(
                    pid, VIDEO,
                    "packet {i}: adaptation-only packet off the PCR PID"
                );
                let prev = cc[slot].unwrap_or(0x0f);
                assert_eq!(counter, prev, "packet {i}: PCR-only packet's counter");
            }
        }
        for (slot, n) in with_payload.iter().enumerate() {
            assert_eq!(
                n % 16,
                0,
                "PID slot {slot}: {n} payload packets, not a multiple of 16"
            );
        }
        counts
    }

    fn pid_of(p: &[u8]) -> u16 {
        (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2])
    }
}

/// Splits fuzz input into length-prefixed parts: each part but the last is a 32-bit
/// little-endian length and that many bytes; the last part is the rest. Missing bytes make
/// shorter (or empty) parts, so every input maps to some parts.
pub fn split(mut data: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    for _ in 1..parts {
        let n = match data {
            [a, b, c, d, rest @ ..] => {
                data = rest;
                u32::from_le_bytes([*a, *b, *c, *d]) as usize
            }
            _ => {
                data = &[];
                0
            }
        };
        let n = n.min(data.len());
        out.push(&data[..n]);
        data = &data[n..];
    }
    out.push(data);
    out
}

/// The inverse of [`split`], for writing seeds.
pub fn join(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        if i + 1 < parts.len() {
            let n = u32::try_from(p.len()).expect("part longer than 4 GiB");
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(p);
    }
    out
}
