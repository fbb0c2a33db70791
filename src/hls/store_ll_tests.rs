//! LL-HLS through the store: parts, blocking-reload readiness and its limits, preload
//! hints, rendition reports, and the end of a stream.

use super::*;

#[test]
fn ll_parts_reports_readiness_and_hints() {
    let t0 = start();
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
    let epoch = s.begin("cam", ingest(), at(t0));
    s.expect("cam", vec!["audio".into(), "360p".into()]);
    s.init("cam", info("360p", true), Bytes::from_static(b"i"), at(t0))
        .expect("init");
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(t0),
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
        s.publish("cam", "360p", chunk(i % 5 == 0, 200, b"v"), at(t0))
            .expect("part");
    }
    s.publish("cam", "audio", chunk(true, 213, b"a"), at(t0))
        .expect("part");
    s.publish("cam", "audio", chunk(true, 213, b"a"), at(t0))
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
    s.publish("cam", "360p", chunk(false, 200, b"v"), at(t0))
        .expect("part");
    let apl = text(s.media_playlist("cam", "audio", false));
    assert!(apl.contains("LAST-MSN=1,LAST-PART=2"), "{apl}");

    let sum = s.summaries(t0);
    assert_eq!(sum[0].lag_ms.samples, 10);
    assert_eq!(sum[0].lag_ms.p50, 50.0);
    assert!(sum[0].first_playable_s.is_some());
    // End: the open segment is completed, hints stop, parameters are ignored.
    s.end("cam", at(t0));
    assert!(matches!(
        s.readiness("cam", "360p", 9, Some(3)),
        Readiness::Ready
    ));
    assert_eq!(s.next_part("cam", "360p"), None);
    let pl = text(s.media_playlist("cam", "360p", true));
    assert!(pl.contains(&segment_name(&epoch, 1)) && pl.contains("#EXT-X-ENDLIST"));
    assert!(!pl.contains("PRELOAD-HINT") && !pl.contains("EXT-X-SKIP"));
}

/// A stalled publisher: the media layer's gap parts are listed `GAP=YES` (HLS2 §4.4.4.9)
/// and a segment made only of them gets `EXT-X-GAP` (§4.4.4.7) before its `EXTINF`; the
/// segment around them keeps its number, duration and program date-time, in the LL-HLS,
/// the plain and the MPEG-TS playlist alike.
#[test]
fn gap_parts_and_segments_are_listed_as_gaps() {
    let t0 = start();
    let cfg = HlsConfig {
        segment_duration: Duration::from_secs(1),
        part_duration: Duration::from_millis(200),
        window_segments: 10,
        ..HlsConfig::default()
    };
    let s = HlsStore::new(cfg);
    s.begin("cam", ingest(), at(t0));
    s.expect("cam", vec!["360p".into()]);
    s.init("cam", info("360p", true), Bytes::from_static(b"i"), at(t0))
        .expect("init");
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    // Segment 0 real, 1 a gap, 2 real (open).
    for i in 0..13u64 {
        let mut c = chunk(i % 5 == 0, 200, b"v");
        c.gap = (5..10).contains(&i);
        c.wallclock = wall + Duration::from_millis(200 * i);
        s.publish("cam", "360p", c, at(t0)).expect("part");
    }
    let text = text(s.media_playlist("cam", "360p", false));
    let gap_parts = text.matches(",GAP=YES").count();
    assert_eq!(gap_parts, 5, "{text}");
    assert_eq!(text.matches("#EXT-X-GAP\n").count(), 1, "{text}");
    // The tag belongs to segment 1: after its parts and date, right before its EXTINF.
    let gap_at = text.find("#EXT-X-GAP\n").expect("gap tag");
    let rest = &text[gap_at..];
    assert!(rest.starts_with("#EXT-X-GAP\n#EXTINF:1,\n"), "{text}");
    assert!(rest.contains("seg-") && rest.lines().nth(2).is_some_and(|l| l.ends_with("-1.m4s")));
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:21.000Z\n"),
        "{text}"
    );
    // The open segment's parts are not gaps.
    let last_parts: Vec<&str> = text.lines().filter(|l| l.contains("-2.")).collect();
    assert!(last_parts.iter().all(|l| !l.contains("GAP")), "{text}");
    // m3u8-rs reads it (the gap tag is one it does not model).
    m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
}
