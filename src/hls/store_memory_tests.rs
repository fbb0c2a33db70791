//! The memory budget through the store: a DVR window trimmed oldest first, and the disk
//! overflow that moves segments to files and removes them with the stream.

use super::*;

#[test]
fn dvr_window_lists_longer_and_the_memory_budget_trims_oldest_first() {
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        dvr_window: Duration::from_secs(20),
        stream_memory_mib: 16,
        ..cfg()
    };
    assert_eq!(cfg.listed_segments(), 10, "20 s DVR / 2 s segments");
    let s = HlsStore::new(cfg);
    let t0 = start();
    s.begin("dvr", ingest(), at(t0));
    s.expect("dvr", vec!["audio".into(), "360p".into()]);
    s.init("dvr", info("360p", true), Bytes::from_static(b"i"), at(t0))
        .expect("init");
    s.init(
        "dvr",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(t0),
    )
    .expect("init");
    let mib = Bytes::from(vec![7u8; 1 << 20]);
    // 8 segments of 1 MiB video + tiny audio: within budget, all listed (window 10).
    for _ in 0..8 {
        let mut c = chunk(true, 2000, b"");
        c.data = mib.clone();
        s.publish("dvr", "360p", c, at(t0)).expect("segment");
        s.publish("dvr", "audio", chunk(true, 2000, b"aa"), at(t0))
            .expect("segment");
    }
    let pl = text(s.media_playlist("dvr", "360p", false));
    assert_eq!(pl.matches("#EXTINF").count(), 8);
    assert_eq!(s.summaries(t0)[0].trimmed_segments, 0);
    // 3 MiB segments: past 16 MiB the oldest go, and the playlist shows the shorter window.
    for _ in 0..6 {
        let mut c = chunk(true, 2000, b"");
        c.data = Bytes::from(vec![9u8; 3 << 20]);
        s.publish("dvr", "360p", c, at(t0)).expect("segment");
    }
    let sum = &s.summaries(t0)[0];
    assert!(sum.memory_bytes <= 16 << 20, "held {}", sum.memory_bytes);
    assert!(sum.trimmed_segments > 0);
    let pl = text(s.media_playlist("dvr", "360p", false));
    let listed = pl.matches("#EXTINF").count();
    assert!((3..10).contains(&listed), "{listed} listed\n{pl}");
    // The newest segment is always there; the media sequence only moved forward.
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:"));
    assert!(pl.contains(&segment_name(&sum.epoch, 13)));
}

#[test]
fn disk_overflow_moves_the_oldest_segments_to_files_and_removes_them_with_the_stream() {
    let dir = std::env::temp_dir().join(format!("whipcast-spill-{:016x}", rand::random::<u64>()));
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        dvr_window: Duration::from_secs(40),
        stream_memory_mib: 1,
        dvr_overflow: DvrOverflow::Disk,
        spill_directory: dir.clone(),
        ..cfg()
    };
    let s = HlsStore::new(cfg.clone());
    let t0 = start();
    let epoch = s.begin("dvr", ingest(), at(t0));
    s.expect("dvr", vec!["360p".into()]);
    s.init("dvr", info("360p", true), Bytes::from_static(b"i"), at(t0))
        .expect("init");
    // 8 segments of 256 KiB: 2 MiB against a 1 MiB budget.
    for i in 0..8u8 {
        let mut c = chunk(true, 2000, b"");
        c.data = Bytes::from(vec![i; 256 << 10]);
        s.publish("dvr", "360p", c, at(t0)).expect("segment");
    }
    let wait = |cond: &dyn Fn() -> bool| {
        // Real time: the spill writer is a thread writing real files.
        let end = Instant::now() + Duration::from_secs(5);
        while !cond() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        cond()
    };
    assert!(
        wait(&|| s.summaries(t0)[0].spilled_segments >= 4),
        "spilled {}",
        s.summaries(t0)[0].spilled_segments
    );
    let sum = &s.summaries(t0)[0];
    assert!(sum.memory_bytes <= 1 << 20, "held {}", sum.memory_bytes);
    assert_eq!(sum.trimmed_segments, 0, "disk mode lists everything");
    // Still listed, and served from the file with the same bytes.
    let pl = text(s.media_playlist("dvr", "360p", false));
    assert_eq!(pl.matches("#EXTINF").count(), 8);
    match s
        .media_segment("dvr", "360p", &epoch, 0)
        .expect("segment 0")
    {
        (SegmentBody::File(path), _) => {
            assert_eq!(
                std::fs::read(path.as_path()).expect("file"),
                vec![0u8; 256 << 10]
            );
        }
        (SegmentBody::Memory(_), _) => panic!("segment 0 should be on disk"),
    }
    // The newest segment stays in memory.
    assert!(matches!(
        s.media_segment("dvr", "360p", &epoch, 7),
        Some((SegmentBody::Memory(_), _))
    ));
    // The stream goes: so does its directory.
    s.end("dvr", at(t0));
    assert_eq!(s.expire(t0 + cfg.grace_period), ["dvr"]);
    let broadcast_dir = dir.join("dvr").join(&epoch);
    assert!(wait(&|| !broadcast_dir.exists()), "{broadcast_dir:?} left");
    let _ = std::fs::remove_dir_all(&dir);
}
