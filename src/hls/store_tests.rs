//! The store through its public API: lifecycle, target duration, budget and spill,
//! LL-HLS readiness, re-publish continuity.

use super::*;
use crate::hls::names::*;
use crate::hls::stream::At;
use crate::media::RenditionKind;
use std::time::SystemTime;

fn at(instant: Instant) -> At {
    At {
        instant,
        wall: SystemTime::now(),
    }
}

fn cfg() -> HlsConfig {
    HlsConfig {
        window_segments: 3,
        retain_segments: 2,
        ..HlsConfig::default()
    }
}

fn info(name: &str, video: bool) -> RenditionInfo {
    RenditionInfo {
        name: name.into(),
        kind: if video {
            RenditionKind::Video {
                width: 640,
                height: 360,
                fps: 30.0,
            }
        } else {
            RenditionKind::Audio {
                channels: 2,
                rate: 48_000,
                language: "und".into(),
            }
        },
        codecs: if video { "avc1.64001e" } else { "mp4a.40.2" }.into(),
        bitrate: 600_000,
    }
}

fn ingest() -> IngestSummary {
    IngestSummary {
        signaling: "whip",
        video_codec: "H264".into(),
        audio: true,
    }
}

fn chunk(starts: bool, ms: u64, data: &'static [u8]) -> Chunk {
    Chunk {
        starts_segment: starts,
        next_starts_segment: None,
        duration: Duration::from_millis(ms),
        wallclock: SystemTime::UNIX_EPOCH,
        lag: Some(Duration::from_millis(ms / 4)),
        data: Bytes::from_static(data),
    }
}

fn text(d: Option<Doc>) -> String {
    String::from_utf8(d.expect("playlist").body.to_vec()).expect("utf8")
}

#[test]
fn lifecycle_plain_hls() {
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg.clone());
    assert!(s.ll().is_none());
    let t0 = Instant::now();
    let epoch = s.begin("cam", ingest(), at(t0));
    assert!(s.master("cam").is_none());
    assert_eq!(
        s.publish("cam", "360p", chunk(true, 2000, b""), at(Instant::now())),
        Err(StoreError::NoInit("360p".into()))
    );
    s.init(
        "cam",
        info("360p", true),
        Bytes::from_static(b"init"),
        at(Instant::now()),
    )
    .expect("init");
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"ainit"),
        at(Instant::now()),
    )
    .expect("init");
    assert!(
        s.media_playlist("cam", "360p", false).is_none(),
        "no segment yet"
    );
    s.expect("cam", vec!["audio".into(), "360p".into()]);
    for _ in 0..6 {
        s.publish(
            "cam",
            "360p",
            chunk(true, 2000, b"0123456789"),
            at(Instant::now()),
        )
        .expect("segment");
    }
    // Video is playable, audio is not yet: no multivariant playlist (it would be one
    // without the audio group, and players read it once).
    assert!(s.master("cam").is_none(), "master without its audio");
    s.publish("cam", "audio", chunk(true, 2000, b"a"), at(Instant::now()))
        .expect("segment");
    let master = text(s.master("cam"));
    assert!(master.contains("360p/index.m3u8") && master.contains("audio/index.m3u8"));
    let pl = text(s.media_playlist("cam", "360p", false));
    assert!(pl.contains(&segment_name(&epoch, 5)));
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3"));
    assert!(!pl.contains("EXT-X-PART"), "plain HLS has no parts");
    // Retired segment 1 still downloadable, 0 gone, wrong epoch unknown.
    assert!(s.media_segment("cam", "360p", &epoch, 1).is_some());
    assert!(s.media_segment("cam", "360p", &epoch, 0).is_none());
    assert!(s.media_segment("cam", "360p", "other", 4).is_none());
    assert_eq!(
        s.init_segment("cam", "360p", &epoch).as_deref(),
        Some(&b"init"[..])
    );

    let sum = s.summaries(t0);
    assert_eq!(sum[0].state, "live");
    assert_eq!(sum[0].renditions.len(), 2);

    s.end("cam", at(t0));
    assert!(!s.is_live("cam"));
    assert!(text(s.media_playlist("cam", "360p", false)).contains("#EXT-X-ENDLIST"));
    assert!(
        s.publish("cam", "360p", chunk(true, 2000, b""), at(Instant::now()))
            .is_err()
    );
    assert!(s.expire(t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(s.expire(t0 + cfg.grace_period), ["cam"]);
    assert!(s.master("cam").is_none());
}

#[test]
fn target_duration_is_fixed_from_the_passthrough_gop_before_anything_is_served() {
    let cfg = HlsConfig {
        segment_duration: Duration::from_secs(1),
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg);
    s.begin("cam", ingest(), at(Instant::now()));
    s.expect("cam", vec!["audio".into(), "360p".into(), "source".into()]);
    for name in ["360p", "source"] {
        s.init(
            "cam",
            info(name, true),
            Bytes::from_static(b"i"),
            at(Instant::now()),
        )
        .expect("init");
    }
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(Instant::now()),
    )
    .expect("init");
    for _ in 0..3 {
        s.publish("cam", "360p", chunk(true, 1000, b"v"), at(Instant::now()))
            .expect("seg");
        s.publish("cam", "audio", chunk(true, 1000, b"a"), at(Instant::now()))
            .expect("seg");
    }
    // The transcoded rung is complete, but nothing is served before every rendition is.
    assert!(s.media_playlist("cam", "360p", false).is_none());
    assert!(s.master("cam").is_none());
    // The publisher ignores keyframe requests: its first GOP is 2.2 s.
    s.publish("cam", "source", chunk(true, 2200, b"s"), at(Instant::now()))
        .expect("seg");
    s.publish("cam", "source", chunk(true, 2200, b"s"), at(Instant::now()))
        .expect("seg");
    assert!(s.master("cam").is_some());
    for name in ["360p", "source", "audio"] {
        let pl = text(s.media_playlist("cam", name, false));
        assert!(pl.contains("#EXT-X-TARGETDURATION:3\n"), "{name}: {pl}");
    }
}

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
    let t0 = Instant::now();
    s.begin("dvr", ingest(), at(t0));
    s.expect("dvr", vec!["audio".into(), "360p".into()]);
    s.init(
        "dvr",
        info("360p", true),
        Bytes::from_static(b"i"),
        at(Instant::now()),
    )
    .expect("init");
    s.init(
        "dvr",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(Instant::now()),
    )
    .expect("init");
    let mib = Bytes::from(vec![7u8; 1 << 20]);
    // 8 segments of 1 MiB video + tiny audio: within budget, all listed (window 10).
    for _ in 0..8 {
        let mut c = chunk(true, 2000, b"");
        c.data = mib.clone();
        s.publish("dvr", "360p", c, at(Instant::now()))
            .expect("segment");
        s.publish("dvr", "audio", chunk(true, 2000, b"aa"), at(Instant::now()))
            .expect("segment");
    }
    let pl = text(s.media_playlist("dvr", "360p", false));
    assert_eq!(pl.matches("#EXTINF").count(), 8);
    assert_eq!(s.summaries(t0)[0].trimmed_segments, 0);
    // 3 MiB segments: past 16 MiB the oldest go, and the playlist shows the shorter window.
    for _ in 0..6 {
        let mut c = chunk(true, 2000, b"");
        c.data = Bytes::from(vec![9u8; 3 << 20]);
        s.publish("dvr", "360p", c, at(Instant::now()))
            .expect("segment");
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
    let t0 = Instant::now();
    let epoch = s.begin("dvr", ingest(), at(t0));
    s.expect("dvr", vec!["360p".into()]);
    s.init(
        "dvr",
        info("360p", true),
        Bytes::from_static(b"i"),
        at(Instant::now()),
    )
    .expect("init");
    // 8 segments of 256 KiB: 2 MiB against a 1 MiB budget.
    for i in 0..8u8 {
        let mut c = chunk(true, 2000, b"");
        c.data = Bytes::from(vec![i; 256 << 10]);
        s.publish("dvr", "360p", c, at(Instant::now()))
            .expect("segment");
    }
    let wait = |cond: &dyn Fn() -> bool| {
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

#[test]
fn ll_parts_reports_readiness_and_hints() {
    let cfg = HlsConfig {
        segment_duration: Duration::from_secs(1),
        part_duration: Duration::from_millis(200),
        window_segments: 10,
        ..HlsConfig::default()
    };
    let s = HlsStore::new(cfg);
    let ll = *s.ll().expect("LL on");
    assert_eq!(ll.parts_per_segment, 5);
    assert_eq!(ll.part_target, Duration::from_millis(222));
    assert_eq!(ll.advance_part_limit(), 13);
    let epoch = s.begin("cam", ingest(), at(Instant::now()));
    s.expect("cam", vec!["audio".into(), "360p".into()]);
    s.init(
        "cam",
        info("360p", true),
        Bytes::from_static(b"i"),
        at(Instant::now()),
    )
    .expect("init");
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(Instant::now()),
    )
    .expect("init");
    // Nothing yet: a blocking request for msn 0 waits.
    assert!(matches!(
        s.readiness("cam", "360p", 0, Some(0)),
        Readiness::Wait(_)
    ));
    let Readiness::Wait(rx) = s.readiness("cam", "360p", 0, Some(1)) else {
        panic!("must wait");
    };
    for i in 0..7u64 {
        s.publish(
            "cam",
            "360p",
            chunk(i % 5 == 0, 200, b"v"),
            at(Instant::now()),
        )
        .expect("part");
    }
    s.publish("cam", "audio", chunk(true, 213, b"a"), at(Instant::now()))
        .expect("part");
    s.publish("cam", "audio", chunk(true, 213, b"a"), at(Instant::now()))
        .expect("part");
    assert!(
        rx.has_changed().expect("sender alive"),
        "parked request is woken"
    );
    // 7 parts: segment 0 complete (5 parts), segment 1 open with 2.
    assert!(matches!(
        s.readiness("cam", "360p", 0, None),
        Readiness::Ready
    ));
    assert!(matches!(
        s.readiness("cam", "360p", 1, Some(1)),
        Readiness::Ready
    ));
    assert!(matches!(
        s.readiness("cam", "360p", 1, Some(2)),
        Readiness::Wait(_)
    ));
    assert!(matches!(
        s.readiness("cam", "360p", 1, None),
        Readiness::Wait(_)
    ));
    // More than two segments ahead, or past the advance part limit: 400.
    assert!(matches!(
        s.readiness("cam", "360p", 4, None),
        Readiness::TooFar
    ));
    assert!(matches!(
        s.readiness("cam", "360p", 3, Some(4)),
        Readiness::Wait(_)
    ));
    assert!(matches!(
        s.readiness("cam", "360p", 3, Some(6)),
        Readiness::TooFar
    ));
    assert!(matches!(
        s.readiness("cam", "nope", 0, None),
        Readiness::NotFound
    ));
    assert_eq!(s.next_part("cam", "360p"), Some((1, 2)));
    assert_eq!(
        s.part("cam", "360p", &epoch, 1, 1).as_deref(),
        Some(&b"v"[..])
    );
    let (seg0, ttl) = s
        .media_segment("cam", "360p", &epoch, 0)
        .expect("segment 0");
    assert!(matches!(seg0, SegmentBody::Memory(b) if b.as_ref() == b"vvvvv"));
    // Window 10 + retain 6 (default): segment 0 stays for 16 more segments (1 s each)
    // after segment 1 began; next_seq is 2.
    assert_eq!(ttl, Some(Duration::from_secs(15)));

    let pl = text(s.media_playlist("cam", "360p", false));
    assert!(pl.contains("#EXT-X-PART-INF:PART-TARGET=0.222"), "{pl}");
    assert!(pl.contains(&format!("URI=\"{}\"", part_name(&epoch, 1, 1))));
    assert!(pl.contains(&format!(
        "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
        part_name(&epoch, 1, 2)
    )));
    assert!(
        pl.contains("#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=1,LAST-PART=0"),
        "{pl}"
    );
    let apl = text(s.media_playlist("cam", "audio", false));
    assert!(
        apl.contains("#EXT-X-RENDITION-REPORT:URI=\"../360p/index.m3u8\",LAST-MSN=1,LAST-PART=1"),
        "{apl}"
    );
    // Audio parts are always independent.
    assert!(apl.contains("INDEPENDENT=YES"));

    // A new part invalidates the cached playlists of the other renditions (reports).
    s.publish("cam", "360p", chunk(false, 200, b"v"), at(Instant::now()))
        .expect("part");
    let apl = text(s.media_playlist("cam", "audio", false));
    assert!(apl.contains("LAST-MSN=1,LAST-PART=2"), "{apl}");

    let sum = s.summaries(Instant::now());
    assert_eq!(sum[0].lag_ms.samples, 10);
    assert_eq!(sum[0].lag_ms.p50, 50.0);
    assert!(sum[0].first_playable_s.is_some());
    // End: the open segment is completed, hints stop, parameters are ignored.
    s.end("cam", at(Instant::now()));
    assert!(matches!(
        s.readiness("cam", "360p", 9, Some(3)),
        Readiness::Ready
    ));
    assert_eq!(s.next_part("cam", "360p"), None);
    let pl = text(s.media_playlist("cam", "360p", true));
    assert!(pl.contains(&segment_name(&epoch, 1)) && pl.contains("#EXT-X-ENDLIST"));
    assert!(!pl.contains("PRELOAD-HINT") && !pl.contains("EXT-X-SKIP"));
}

#[test]
fn republish_continues_numbering_with_a_discontinuity() {
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg.clone());
    let t0 = Instant::now();
    let broadcast = |n: usize| {
        let epoch = s.begin("cam", ingest(), at(t0));
        s.expect("cam", vec!["360p".into()]);
        s.init(
            "cam",
            info("360p", true),
            Bytes::from_static(b"i"),
            at(Instant::now()),
        )
        .expect("init");
        for _ in 0..n {
            s.publish("cam", "360p", chunk(true, 2000, b"x"), at(Instant::now()))
                .expect("segment");
        }
        epoch
    };
    let e1 = broadcast(4);
    s.end("cam", at(t0));
    // Re-published within the grace period: numbers continue (HLS2 §6.2.2); the
    // previous broadcast's last segments fill the window before an EXT-X-DISCONTINUITY
    // (window 3: old segment 3, then new 4 and 5), so players need no reload.
    let e2 = broadcast(2);
    let pl = text(s.media_playlist("cam", "360p", false));
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:3"), "{pl}");
    assert!(!pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE"), "{pl}");
    let order: Vec<&str> = pl
        .lines()
        .filter(|l| {
            l.starts_with("#EXT-X-MAP") || l.starts_with("seg-") || l.starts_with("#EXT-X-DISC")
        })
        .collect();
    assert_eq!(
        order,
        [
            format!("#EXT-X-MAP:URI=\"{}\"", init_name(&e1)).as_str(),
            &segment_name(&e1, 3),
            // Plain playlists put a segment's MAP before its DISCONTINUITY (as m3u8-rs
            // did); both tags apply to the segment that follows them, in either order
            // (HLS2 §4.4.4).
            &format!("#EXT-X-MAP:URI=\"{}\"", init_name(&e2)),
            "#EXT-X-DISCONTINUITY",
            &segment_name(&e2, 4),
            &segment_name(&e2, 5),
        ]
    );
    // The previous broadcast's objects stay served under their own names.
    assert!(s.media_segment("cam", "360p", &e1, 3).is_some());
    assert_eq!(
        s.init_segment("cam", "360p", &e1).as_deref(),
        Some(&b"i"[..])
    );
    // A third new segment fills the window: the discontinuity leaves the playlist.
    s.publish("cam", "360p", chunk(true, 2000, b"x"), at(Instant::now()))
        .expect("segment");
    let pl = text(s.media_playlist("cam", "360p", false));
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:4"), "{pl}");
    assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1"), "{pl}");
    assert!(
        !pl.contains("#EXT-X-DISCONTINUITY\n") && !pl.contains(&e1),
        "{pl}"
    );
    assert!(
        s.media_segment("cam", "360p", &e1, 3).is_some(),
        "still retained"
    );
    // Window 3 + retain 2 new segments: the previous broadcast is forgotten.
    for _ in 0..2 {
        s.publish("cam", "360p", chunk(true, 2000, b"x"), at(Instant::now()))
            .expect("segment");
    }
    assert!(s.media_segment("cam", "360p", &e1, 3).is_none());
    assert!(s.init_segment("cam", "360p", &e1).is_none());
    // After expiry too.
    s.end("cam", at(t0));
    assert_eq!(s.expire(t0 + cfg.grace_period), ["cam"]);
    let e3 = broadcast(1);
    let pl = text(s.media_playlist("cam", "360p", false));
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:9"), "{pl}");
    assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2"), "{pl}");
    assert!(pl.contains(&segment_name(&e3, 9)));
    assert!(
        !pl.contains("#EXT-X-DISCONTINUITY\n"),
        "nothing carried after expiry"
    );
}

#[test]
fn republish_gets_new_epoch() {
    let s = HlsStore::new(cfg());
    let e1 = s.begin("cam", ingest(), at(Instant::now()));
    s.end("cam", at(Instant::now()));
    let e2 = s.begin("cam", ingest(), at(Instant::now()));
    assert_ne!(e1, e2);
    assert!(s.is_live("cam"));
}

/// Streams never wait for each other: while one stream's lock is held (as during a slow
/// render of its playlist), another stream publishes and its playlists are rendered and
/// read. With one lock for every stream (as before) the worker would block until the first
/// let go, and the receive below would time out.
#[test]
fn one_stream_held_does_not_block_another() {
    let s = HlsStore::new(HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    });
    for name in ["slow", "fast"] {
        s.begin(name, ingest(), at(Instant::now()));
        s.expect(name, vec!["360p".into()]);
        s.init(
            name,
            info("360p", true),
            Bytes::from_static(b"i"),
            at(Instant::now()),
        )
        .expect("init");
    }
    let slot = s.slot("slow").expect("slow stream");
    let held = lock(&slot);
    let (tx, rx) = std::sync::mpsc::channel();
    let other = s.clone();
    let worker = std::thread::spawn(move || {
        for _ in 0..3 {
            other
                .publish("fast", "360p", chunk(true, 2000, b"v"), at(Instant::now()))
                .expect("publish");
        }
        let master = other.master("fast").is_some();
        let media = other.media_playlist("fast", "360p", false).is_some();
        tx.send((master, media)).expect("send");
    });
    let served = rx.recv_timeout(Duration::from_secs(10));
    drop(held);
    worker.join().expect("worker");
    assert_eq!(
        served.expect("the other stream is served while one is held"),
        (true, true)
    );
    assert_eq!(s.summaries(Instant::now()).len(), 2);
}
