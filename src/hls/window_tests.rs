//! The window's numbering, listing, parts, memory trimming and spill bookkeeping.

use super::*;

fn push_n(w: &mut Window, n: usize) {
    for i in 0..n {
        w.push(
            Duration::from_secs(2),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2 * i as u64),
            Bytes::from(vec![i as u8; 10]),
        );
    }
}

fn part(ms: u64, byte: u8) -> Part {
    Part {
        duration: Duration::from_millis(ms),
        independent: byte == 0,
        gap: false,
        data: Bytes::from(vec![byte; 3]),
    }
}

#[test]
fn numbering_starts_at_zero_and_never_reuses() {
    let mut w = Window::new(3, 2);
    assert_eq!(w.media_sequence(), 0);
    assert!(w.is_empty());
    push_n(&mut w, 5);
    let seqs: Vec<u64> = w.segments().map(|s| s.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
    assert_eq!(w.media_sequence(), 2);
    assert_eq!(w.next_seq(), 5);
}

#[test]
fn retired_segments_stay_downloadable_then_go() {
    let mut w = Window::new(3, 2);
    push_n(&mut w, 5);
    assert!(w.get(0).is_some() && w.get(1).is_some());
    assert!(!w.is_listed(1));
    assert!(w.is_listed(2));
    push_n(&mut w, 1);
    assert!(w.get(0).is_none());
    assert!(w.get(1).is_some());
    assert_eq!(w.bytes(), 50);
}

#[test]
fn durations() {
    let mut w = Window::new(6, 0);
    w.push(
        Duration::from_millis(1900),
        SystemTime::UNIX_EPOCH,
        Bytes::new(),
    );
    w.push(
        Duration::from_millis(2100),
        SystemTime::UNIX_EPOCH,
        Bytes::new(),
    );
    assert_eq!(w.max_duration(), Duration::from_millis(2100));
    assert_eq!(w.total_duration(), Duration::from_secs(4));
    assert_eq!(w.len(), 2);
}

#[test]
fn parts_fill_a_segment_then_close_it() {
    let mut w = Window::new(3, 3);
    let t = SystemTime::UNIX_EPOCH;
    assert_eq!(
        w.push_part(true, part(200, 0), t),
        Position {
            msn: 0,
            part: Some(0)
        }
    );
    assert_eq!(
        w.push_part(false, part(200, 1), t),
        Position {
            msn: 0,
            part: Some(1)
        }
    );
    assert_eq!(w.len(), 0, "open segment is not listed whole");
    assert_eq!(w.media_sequence(), 0);
    assert!(w.reached(0, Some(1)) && !w.reached(0, Some(2)));
    assert!(!w.reached(0, None));
    assert_eq!(
        w.position(),
        Some(Position {
            msn: 0,
            part: Some(1)
        })
    );
    // The next segment starts: segment 0 is complete and is the concatenation.
    assert_eq!(
        w.push_part(true, part(200, 0), t),
        Position {
            msn: 1,
            part: Some(0)
        }
    );
    assert!(w.reached(0, None));
    let s0 = w.get(0).expect("complete");
    assert_eq!(s0.data.as_ref(), &[0, 0, 0, 1, 1, 1]);
    assert_eq!(s0.duration, Duration::from_millis(400));
    // A part index past the end of segment 0 means part 0 of segment 1 (exists).
    assert!(w.reached(0, Some(2)));
    assert!(w.reached(1, Some(0)) && !w.reached(1, Some(1)));
    assert!(!w.reached(2, Some(0)) && !w.reached(1, None));
    assert!(w.part(0, 1).is_some() && w.part(1, 0).is_some());
    assert_eq!(w.total_duration(), Duration::from_millis(600));
    // End of stream closes the open segment.
    w.close();
    assert!(w.reached(1, None));
    assert_eq!(
        w.position(),
        Some(Position {
            msn: 1,
            part: Some(0)
        })
    );
}

#[test]
fn whole_segments_have_no_parts_but_satisfy_part_requests() {
    let mut w = Window::new(3, 3);
    push_n(&mut w, 2);
    assert!(
        w.reached(1, Some(0)),
        "a whole segment satisfies a part wait"
    );
    assert!(w.reached(0, Some(3)));
    assert!(!w.reached(2, Some(0)) && !w.reached(2, None));
    assert_eq!(w.position(), Some(Position { msn: 1, part: None }));
}

#[test]
fn parts_share_the_closed_segments_buffer_and_bytes_count_once() {
    let mut w = Window::new(6, 0);
    let t = SystemTime::UNIX_EPOCH;
    w.push_part(true, part(200, 0), t);
    w.push_part(false, part(200, 1), t);
    // Open: the parts' own bytes.
    assert_eq!(w.bytes(), 6);
    w.push_part(true, part(200, 0), t);
    let seg = w.get(0).expect("segment 0");
    assert_eq!(&seg.data[..], &[0, 0, 0, 1, 1, 1]);
    // Each part is a view of the segment's buffer, with the same bytes as before.
    for (i, p) in seg.parts.iter().enumerate() {
        assert_eq!(&p.data[..], &[i as u8; 3]);
        let off = p.data.as_ptr() as usize - seg.data.as_ptr() as usize;
        assert_eq!(off, 3 * i, "part {i} is not inside the segment buffer");
    }
    // Segment 0 (6 bytes, counted once) + the open segment's first part (3).
    assert_eq!(w.bytes(), 9);
}

#[test]
fn trimming_takes_retired_first_then_listed_down_to_the_minimum() {
    let mut w = Window::new(5, 2);
    push_n(&mut w, 7);
    assert_eq!(w.bytes(), 70);
    assert_eq!(w.oldest_wallclock(), Some(SystemTime::UNIX_EPOCH));
    // Two retired (0, 1), then listed 2 and 3; 4, 5, 6 stay (MIN_LISTED).
    let freed: Vec<Option<usize>> = (0..6).map(|_| w.trim_oldest()).collect();
    let ten = Some(10);
    assert_eq!(freed, [ten, ten, ten, ten, None, None]);
    assert!(w.get(1).is_none());
    assert_eq!(w.media_sequence(), 4);
    assert_eq!(w.len(), MIN_LISTED);
    assert_eq!(w.bytes(), 30);
    // Numbering goes on.
    push_n(&mut w, 1);
    assert_eq!(w.segments().last().map(|s| s.seq), Some(7));
    assert_eq!(w.bytes(), 40);
}

#[test]
fn spilled_segments_free_memory_and_their_files_are_handed_back_when_they_leave() {
    let mut w = Window::new(3, 1);
    push_n(&mut w, 3);
    assert_eq!(w.bytes(), 30);
    // The newest three listed segments are not candidates.
    assert_eq!(w.oldest_in_memory(), None);
    let mut w = Window::new(5, 1);
    push_n(&mut w, 5);
    assert_eq!(w.oldest_in_memory().map(|x| x.0), Some(0));
    let mut w = Window::new(3, 1);
    push_n(&mut w, 3);
    let data = w.spill_begin(0).expect("bytes");
    assert_eq!(data.len(), 10);
    assert!(w.spill_begin(0).is_none(), "already pending");
    assert_eq!(w.pending_bytes(), 10);
    let path = Arc::new(PathBuf::from("/spill/0.m4s"));
    assert_eq!(w.spill_done(0, Arc::clone(&path)), Some(10));
    assert_eq!((w.bytes(), w.pending_bytes()), (20, 0));
    assert_eq!(
        w.get(0).expect("listed").spill,
        Spill::Disk(Arc::clone(&path))
    );
    assert_eq!(w.spilled_files().count(), 1);
    // A failed write leaves the segment in memory.
    w.spill_begin(1).expect("bytes");
    w.spill_failed(1);
    assert_eq!((w.bytes(), w.pending_bytes()), (20, 0));
    assert_eq!(w.get(1).expect("listed").spill, Spill::Memory);
    // Segment 0 is retired by one push, dropped by the next: its file comes back.
    push_n(&mut w, 1);
    assert!(w.take_dropped_files().is_empty());
    push_n(&mut w, 1);
    assert_eq!(w.take_dropped_files(), [path]);
    assert_eq!(w.bytes(), 40);
    // Writing a segment that is gone: the caller must delete the file.
    assert_eq!(w.spill_done(0, Arc::new(PathBuf::from("/x"))), None);
}
