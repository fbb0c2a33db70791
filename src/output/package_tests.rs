//! The packager through its public API: whole segments from chunks, then the playlists
//! that list them; the multivariant playlist once every rendition has media; the window.

use super::*;

fn video(name: &str, height: u32) -> RenditionInfo {
    RenditionInfo {
        name: name.into(),
        kind: RenditionKind::Video {
            width: height * 16 / 9,
            height,
            fps: 30.0,
        },
        codecs: "avc1.64001f".into(),
        bitrate: 500_000,
    }
}

fn audio() -> RenditionInfo {
    RenditionInfo {
        name: "audio".into(),
        kind: RenditionKind::Audio {
            channels: 2,
            rate: 48_000,
            language: "en".into(),
        },
        codecs: "mp4a.40.2".into(),
        bitrate: 96_000,
    }
}

fn chunk(seq: u64, starts: bool, tag: u8) -> ChunkIn {
    ChunkIn {
        seq,
        starts_segment: starts,
        duration: Duration::from_millis(500),
        wallclock: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq),
        data: Bytes::from(vec![tag; 10]),
    }
}

fn paths(objs: &[Object]) -> Vec<&str> {
    objs.iter().map(|o| o.path.as_str()).collect()
}

#[test]
fn chunks_become_whole_segments_then_playlists() {
    let mut p = Packager::new(Listing::Everything, "ep", 1, 0);
    p.expect(&["360p".into()]);
    assert_eq!(
        paths(&p.init(video("360p", 360), Bytes::from_static(b"i"))),
        ["360p/init-ep.mp4"]
    );
    assert!(p.chunk("360p", &chunk(4, true, 1)).is_empty());
    assert!(p.chunk("360p", &chunk(4, false, 2)).is_empty());
    let out = p.chunk("360p", &chunk(5, true, 3));
    assert_eq!(
        paths(&out),
        ["360p/seg-ep-4.m4s", "360p/index.m3u8", "master.m3u8"]
    );
    // The segment is both chunks, in order.
    let mut want = vec![1u8; 10];
    want.extend([2u8; 10]);
    assert_eq!(out[0].body.as_ref(), &want[..]);
    assert_eq!(out[0].kind, ObjectKind::Segment);
    let pl = String::from_utf8(out[1].body.to_vec()).expect("utf8");
    assert!(pl.contains("#EXT-X-PLAYLIST-TYPE:EVENT"), "{pl}");
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:4"), "{pl}");
    assert!(pl.contains("#EXTINF:1,\nseg-ep-4.m4s"), "{pl}");
    assert!(pl.contains("#EXT-X-MAP:URI=\"init-ep.mp4\""), "{pl}");
    // Master is not rewritten while the set of renditions is unchanged.
    assert!(p.chunk("360p", &chunk(5, false, 4)).is_empty());
    assert_eq!(
        paths(&p.chunk("360p", &chunk(6, true, 5))),
        ["360p/seg-ep-5.m4s", "360p/index.m3u8"]
    );
    // End: the open segment, then VOD playlists, then the master.
    let out = p.end();
    assert_eq!(
        paths(&out),
        ["360p/seg-ep-6.m4s", "360p/index.m3u8", "master.m3u8"]
    );
    let pl = String::from_utf8(out[1].body.to_vec()).expect("utf8");
    assert!(pl.contains("#EXT-X-PLAYLIST-TYPE:VOD"), "{pl}");
    assert!(pl.trim_end().ends_with("#EXT-X-ENDLIST"), "{pl}");
    assert_eq!(pl.matches("#EXTINF").count(), 3);
    assert!(p.end().is_empty());
    assert!(p.chunk("360p", &chunk(7, true, 6)).is_empty());
}

#[test]
fn master_waits_for_every_rendition_and_lists_audio() {
    let mut p = Packager::new(Listing::Everything, "ep", 1, 0);
    p.expect(&["audio".into(), "360p".into(), "180p".into()]);
    p.init(video("360p", 360), Bytes::new());
    p.init(video("180p", 180), Bytes::new());
    p.init(audio(), Bytes::new());
    p.chunk("360p", &chunk(0, true, 1));
    p.chunk("180p", &chunk(0, true, 1));
    p.chunk("audio", &chunk(0, true, 1));
    let out = p.chunk("audio", &chunk(1, true, 1));
    // Audio alone makes no playlist at all (the target duration is not fixed yet).
    assert_eq!(paths(&out), ["audio/seg-ep-0.m4s"]);
    // Nor audio and one of two rungs: playlists are complete or not written.
    let out = p.chunk("180p", &chunk(1, true, 1));
    assert_eq!(paths(&out), ["180p/seg-ep-0.m4s"]);
    let out = p.chunk("360p", &chunk(1, true, 1));
    assert_eq!(
        paths(&out),
        [
            "360p/seg-ep-0.m4s",
            "180p/index.m3u8",
            "360p/index.m3u8",
            "audio/index.m3u8",
            "master.m3u8"
        ]
    );
    let m = String::from_utf8(out[4].body.to_vec()).expect("utf8");
    assert!(m.find("360p/index.m3u8") < m.find("180p/index.m3u8"), "{m}");
    assert!(m.contains("audio/index.m3u8"), "{m}");
    assert!(m.contains("CODECS=\"avc1.64001f,mp4a.40.2\""), "{m}");
}

#[test]
fn window_slides_and_ends_without_vod() {
    let mut p = Packager::new(Listing::Window(2), "ep", 2, 3);
    p.expect(&["360p".into()]);
    p.init(video("360p", 360), Bytes::new());
    let mut last = Vec::new();
    for seq in 10..15 {
        last = p.chunk("360p", &chunk(seq, true, 1));
    }
    let pl = String::from_utf8(last[1].body.to_vec()).expect("utf8");
    assert!(pl.contains("#EXT-X-MEDIA-SEQUENCE:12"), "{pl}");
    assert!(pl.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3"), "{pl}");
    assert!(!pl.contains("PLAYLIST-TYPE"), "{pl}");
    assert_eq!(pl.matches("#EXTINF").count(), 2);
    let out = p.end();
    let pl = String::from_utf8(out[1].body.to_vec()).expect("utf8");
    assert!(
        pl.contains("seg-ep-14.m4s") && pl.contains("#EXT-X-ENDLIST"),
        "{pl}"
    );
    assert!(!pl.contains("PLAYLIST-TYPE"), "{pl}");
}
