//! The store through its public API: lifecycle, the target duration, re-publish
//! continuity, streams not waiting for each other; and the helpers of the other store
//! tests (memory budget and spill in `store_memory_tests.rs`, LL-HLS in
//! `store_ll_tests.rs`).

use super::*;
use crate::hls::names::*;
use crate::hls::stream::At;
use crate::media::RenditionKind;
use std::time::SystemTime;

/// The tests' one clock read (`Instant` has no other constructor); every other moment is
/// this one, or this one plus a stated offset.
pub(super) fn start() -> Instant {
    Instant::now()
}

/// The moment `instant`; its wall-clock time does not matter to these tests.
pub(super) fn at(instant: Instant) -> At {
    At {
        instant,
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    }
}

pub(super) fn cfg() -> HlsConfig {
    HlsConfig {
        window_segments: 3,
        retain_segments: 2,
        ..HlsConfig::default()
    }
}

pub(super) fn info(name: &str, video: bool) -> RenditionInfo {
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

pub(super) fn ingest() -> IngestSummary {
    IngestSummary {
        signaling: "whip",
        video_codec: "H264".into(),
        audio: true,
    }
}

pub(super) fn chunk(starts: bool, ms: u64, data: &'static [u8]) -> Chunk {
    Chunk {
        starts_segment: starts,
        segment: None,
        next_starts_segment: None,
        duration: Duration::from_millis(ms),
        wallclock: SystemTime::UNIX_EPOCH,
        gap: false,
        lag: Some(Duration::from_millis(ms / 4)),
        data: Bytes::from_static(data),
    }
}

pub(super) fn text(d: Option<Doc>) -> String {
    String::from_utf8(d.expect("playlist").body.to_vec()).expect("utf8")
}

#[path = "store_ll_tests.rs"]
mod ll;
#[path = "store_memory_tests.rs"]
mod memory;

#[test]
fn lifecycle_plain_hls() {
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg.clone());
    assert!(s.ll().is_none());
    let t0 = start();
    let epoch = s.begin("cam", ingest(), at(t0));
    assert!(s.master("cam").is_none());
    assert_eq!(
        s.publish("cam", "360p", chunk(true, 2000, b""), at(t0)),
        Err(StoreError::NoInit("360p".into()))
    );
    s.init(
        "cam",
        info("360p", true),
        Bytes::from_static(b"init"),
        at(t0),
    )
    .expect("init");
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"ainit"),
        at(t0),
    )
    .expect("init");
    assert!(
        s.media_playlist("cam", "360p", false).is_none(),
        "no segment yet"
    );
    s.expect("cam", vec!["audio".into(), "360p".into()]);
    for _ in 0..6 {
        s.publish("cam", "360p", chunk(true, 2000, b"0123456789"), at(t0))
            .expect("segment");
    }
    // Video is playable, audio is not yet: no multivariant playlist (it would be one
    // without the audio group, and players read it once).
    assert!(s.master("cam").is_none(), "master without its audio");
    s.publish("cam", "audio", chunk(true, 2000, b"a"), at(t0))
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
        s.publish("cam", "360p", chunk(true, 2000, b""), at(t0))
            .is_err()
    );
    assert!(s.expire(t0 + Duration::from_secs(1)).is_empty());
    assert_eq!(s.expire(t0 + cfg.grace_period), ["cam"]);
    assert!(s.master("cam").is_none());
}

#[test]
fn target_duration_is_fixed_from_the_passthrough_gop_before_anything_is_served() {
    let t0 = start();
    let cfg = HlsConfig {
        segment_duration: Duration::from_secs(1),
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg);
    s.begin("cam", ingest(), at(t0));
    s.expect("cam", vec!["audio".into(), "360p".into(), "source".into()]);
    for name in ["360p", "source"] {
        s.init("cam", info(name, true), Bytes::from_static(b"i"), at(t0))
            .expect("init");
    }
    s.init(
        "cam",
        info("audio", false),
        Bytes::from_static(b"a"),
        at(t0),
    )
    .expect("init");
    for _ in 0..3 {
        s.publish("cam", "360p", chunk(true, 1000, b"v"), at(t0))
            .expect("seg");
        s.publish("cam", "audio", chunk(true, 1000, b"a"), at(t0))
            .expect("seg");
    }
    // The transcoded rung is complete, but nothing is served before every rendition is.
    assert!(s.media_playlist("cam", "360p", false).is_none());
    assert!(s.master("cam").is_none());
    // The publisher ignores keyframe requests: its first GOP is 2.2 s.
    s.publish("cam", "source", chunk(true, 2200, b"s"), at(t0))
        .expect("seg");
    s.publish("cam", "source", chunk(true, 2200, b"s"), at(t0))
        .expect("seg");
    assert!(s.master("cam").is_some());
    for name in ["360p", "source", "audio"] {
        let pl = text(s.media_playlist("cam", name, false));
        assert!(pl.contains("#EXT-X-TARGETDURATION:3\n"), "{name}: {pl}");
    }
}

#[test]
fn a_rendition_that_starts_late_takes_the_number_of_its_first_boundary() {
    // Simulcast: 720p's layer lost its first keyframes and begins two boundaries after
    // 360p; its first segment is numbered as 360p's segment at the same instant.
    let s = HlsStore::new(cfg());
    let t0 = start();
    s.begin("sc", ingest(), at(t0));
    for r in ["360p", "720p"] {
        s.init("sc", info(r, true), Bytes::from_static(b"init"), at(t0))
            .expect("init");
    }
    for n in 0..3 {
        let c = Chunk {
            segment: Some(n),
            ..chunk(true, 1000, b"x")
        };
        assert_eq!(s.publish("sc", "360p", c, at(t0)), Ok(n));
    }
    let late = Chunk {
        segment: Some(2),
        ..chunk(true, 1000, b"x")
    };
    assert_eq!(s.publish("sc", "720p", late, at(t0)), Ok(2));
    // The next ones follow on.
    assert_eq!(
        s.publish("sc", "720p", chunk(false, 200, b"x"), at(t0)),
        Ok(2)
    );
    assert_eq!(
        s.publish("sc", "720p", chunk(true, 1000, b"x"), at(t0)),
        Ok(3)
    );
}

#[test]
fn republish_continues_numbering_with_a_discontinuity() {
    let cfg = HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    };
    let s = HlsStore::new(cfg.clone());
    let t0 = start();
    let broadcast = |n: usize| {
        let epoch = s.begin("cam", ingest(), at(t0));
        s.expect("cam", vec!["360p".into()]);
        s.init("cam", info("360p", true), Bytes::from_static(b"i"), at(t0))
            .expect("init");
        for _ in 0..n {
            s.publish("cam", "360p", chunk(true, 2000, b"x"), at(t0))
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
    s.publish("cam", "360p", chunk(true, 2000, b"x"), at(t0))
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
        s.publish("cam", "360p", chunk(true, 2000, b"x"), at(t0))
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
    let t0 = start();
    let s = HlsStore::new(cfg());
    let e1 = s.begin("cam", ingest(), at(t0));
    s.end("cam", at(t0));
    let e2 = s.begin("cam", ingest(), at(t0));
    assert_ne!(e1, e2);
    assert!(s.is_live("cam"));
}

/// Streams never wait for each other: while one stream's lock is held (as during a slow
/// render of its playlist), another stream publishes and its playlists are rendered and
/// read. With one lock for every stream (as before) the worker would block until the first
/// let go, and the receive below would time out.
#[test]
fn one_stream_held_does_not_block_another() {
    let t0 = start();
    let s = HlsStore::new(HlsConfig {
        part_duration: Duration::ZERO,
        ..cfg()
    });
    for name in ["slow", "fast"] {
        s.begin(name, ingest(), at(t0));
        s.expect(name, vec!["360p".into()]);
        s.init(name, info("360p", true), Bytes::from_static(b"i"), at(t0))
            .expect("init");
    }
    let slot = s.slot("slow").expect("slow stream");
    let held = lock(&slot);
    let (tx, rx) = std::sync::mpsc::channel();
    let other = s.clone();
    let worker = std::thread::spawn(move || {
        for _ in 0..3 {
            other
                .publish("fast", "360p", chunk(true, 2000, b"v"), at(t0))
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
    assert_eq!(s.summaries(t0).len(), 2);
}
