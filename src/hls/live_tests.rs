//! Golden playlists of live windows: plain, LL-HLS full and delta, a re-published stream's
//! prelude, MPEG-TS hold-back, and the preload hint's prediction.

use std::time::SystemTime;

use super::*;
use crate::hls::tags::ServerControl;
use crate::hls::window::Part;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn text(b: Bytes) -> String {
    String::from_utf8(Vec::from(b)).expect("utf8")
}

/// A plain window of 3 listed segments (1, 2, 3) of 2 s; segment 0 retired.
fn plain_window() -> Window {
    let mut w = Window::new(3, 3);
    for i in 0..4u64 {
        w.push(
            Duration::from_millis(2000),
            t0() + Duration::from_secs(2 * i),
            Bytes::new(),
        );
    }
    w
}

fn plain<'a>(w: &'a Window, uri: &'a dyn Fn(u64) -> String, ended: bool) -> LiveView<'a> {
    LiveView {
        target_duration: 2,
        window: w,
        init_uri: Some("init-7.mp4"),
        segment_uri: uri,
        discontinuity_sequence: 0,
        prelude: None,
        ended,
        last_seq: None,
        ll: None,
    }
}

#[test]
fn plain_playlist_golden() {
    let w = plain_window();
    let uri = |seq: u64| format!("seg-7-{seq}.m4s");
    let text = text(render(&plain(&w, &uri, false)));
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:6\n"), "{text}");
    assert!(text.contains("#EXT-X-TARGETDURATION:2\n"));
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
    assert!(text.contains("#EXT-X-MAP:URI=\"init-7.mp4\"\n"));
    assert_eq!(text.matches("#EXT-X-MAP").count(), 1);
    assert_eq!(text.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
    assert!(text.contains("2023-11-14T22:13:22"), "{text}");
    assert!(text.contains("#EXTINF:2,\nseg-7-1.m4s\n"), "{text}");
    assert!(text.contains("seg-7-3.m4s"));
    assert!(!text.contains("seg-7-0.m4s"));
    assert!(!text.contains("ENDLIST"));
    assert!(!text.contains("EXT-X-PART") && !text.contains("PRELOAD-HINT"));

    let ended = render(&plain(&w, &uri, true));
    assert!(
        String::from_utf8_lossy(&ended)
            .trim_end()
            .ends_with("#EXT-X-ENDLIST")
    );

    // A re-published stream: the previous broadcast's last segments, then a
    // discontinuity and the new init segment; m3u8-rs reads it back the same way.
    let mut old = Window::starting_at(6, 0, 0);
    old.push(Duration::from_secs(2), t0(), Bytes::new());
    let old_segments: Vec<Segment> = old.segments().cloned().collect();
    let old_uri = |seq: u64| format!("seg-6-{seq}.m4s");
    let mut v = plain(&w, &uri, false);
    v.discontinuity_sequence = 1;
    v.prelude = Some(Prelude {
        segments: &old_segments,
        init_uri: "init-6.mp4",
        segment_uri: &old_uri,
    });
    let text = self::text(render(&v));
    let pl = match m3u8_rs::parse_media_playlist_res(text.as_bytes()) {
        Ok(pl) => pl,
        Err(e) => panic!("{e:?}\n{text}"),
    };
    assert_eq!(
        (pl.media_sequence, pl.discontinuity_sequence),
        (0, 0),
        "{text}"
    );
    let maps: Vec<(usize, String, bool)> = pl
        .segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map.as_ref().map(|m| (i, m.uri.clone(), s.discontinuity)))
        .collect();
    assert_eq!(
        maps,
        [
            (0, "init-6.mp4".to_string(), false),
            (1, "init-7.mp4".to_string(), true)
        ]
    );
    assert_eq!(pl.segments[0].uri, "seg-6-0.m4s");
    assert_eq!(pl.segments[1].uri, "seg-7-1.m4s");
}

/// The MPEG-TS twin of a window: no `EXT-X-MAP` (so version 3), and nothing after the
/// segment it is held back at.
#[test]
fn ts_playlist_is_version_3_and_held_back() {
    let w = plain_window();
    let uri = |seq: u64| format!("seg-7-{seq}.ts");
    let mut v = plain(&w, &uri, false);
    v.init_uri = None;
    v.last_seq = Some(2);
    let text = text(render(&v));
    assert!(text.starts_with("#EXTM3U\n#EXT-X-VERSION:3\n"), "{text}");
    assert!(!text.contains("EXT-X-MAP"), "{text}");
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1\n"));
    assert!(
        text.contains("seg-7-2.ts") && !text.contains("seg-7-3.ts"),
        "{text}"
    );
}

fn part(independent: bool) -> Part {
    Part {
        duration: Duration::from_millis(200),
        independent,
        gap: false,
        data: Bytes::from_static(b"x"),
    }
}

/// `n` segments of 5 parts each, then 2 parts of an open one.
fn ll_window(n: usize) -> Window {
    let mut w = Window::new(20, 5);
    for s in 0..n {
        for i in 0..5 {
            w.push_part(i == 0, part(i == 0), t0() + Duration::from_secs(s as u64));
        }
    }
    w.push_part(true, part(true), t0() + Duration::from_secs(n as u64));
    w.push_part(false, part(false), t0());
    w
}

/// Target duration 1 s, parts of 200 ms (part target 222 ms), 5 per segment.
fn settings() -> LlSettings {
    let part_target = Duration::from_millis(222);
    LlSettings {
        part_duration: Duration::from_millis(200),
        part_target,
        parts_per_segment: 5,
        server_control: ServerControl::new(1, part_target, 3.0),
        start_offset: None,
    }
}

fn audio_report() -> Vec<RenditionReport> {
    vec![RenditionReport {
        uri: "../audio/index.m3u8".into(),
        last_msn: 10,
        last_part: Some(1),
    }]
}

fn ll_view<'a>(
    w: &'a Window,
    settings: &'a LlSettings,
    reports: &'a [RenditionReport],
    skip: bool,
    ended: bool,
    seg: &'a dyn Fn(u64) -> String,
    part: &'a dyn Fn(u64, usize) -> String,
) -> LiveView<'a> {
    LiveView {
        target_duration: 1,
        window: w,
        init_uri: Some("init-e.mp4"),
        segment_uri: seg,
        discontinuity_sequence: 0,
        prelude: None,
        ended,
        last_seq: None,
        ll: Some(LlView {
            settings,
            part_uri: part,
            next_starts_segment: None,
            skip,
            reports,
        }),
    }
}

#[test]
fn full_playlist_golden_structure() {
    let w = ll_window(10);
    let (s, r) = (settings(), audio_report());
    let seg = |m: u64| format!("seg-e-{m}.m4s");
    let prt = |m: u64, i: usize| format!("part-e-{m}.{i}.m4s");
    let text = text(render(&ll_view(&w, &s, &r, false, false, &seg, &prt)));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "#EXTM3U");
    assert_eq!(lines[1], "#EXT-X-VERSION:6");
    assert_eq!(lines[2], "#EXT-X-TARGETDURATION:1");
    assert!(lines[3].starts_with("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"));
    assert_eq!(lines[4], "#EXT-X-PART-INF:PART-TARGET=0.222");
    assert_eq!(lines[5], "#EXT-X-MEDIA-SEQUENCE:0");
    assert!(text.contains("#EXT-X-MAP:URI=\"init-e.mp4\"\n"));
    // Parts only for the last 3 target durations: segments 8, 9 and the open 10.
    assert!(!text.contains("part-e-7."));
    assert!(text.contains("#EXT-X-PART:DURATION=0.2,URI=\"part-e-8.0.m4s\",INDEPENDENT=YES\n"));
    assert!(text.contains("#EXT-X-PART:DURATION=0.2,URI=\"part-e-8.1.m4s\"\n"));
    // Parts come before their segment's EXTINF.
    assert!(text.find("part-e-9.4.m4s") < text.find("seg-e-9.m4s"));
    assert!(text.contains("#EXTINF:1,\nseg-e-9.m4s\n"));
    // The open segment: PDT then its parts, no EXTINF.
    assert!(!text.contains("seg-e-10.m4s"));
    let open_pdt = text.rfind("#EXT-X-PROGRAM-DATE-TIME:").expect("pdt");
    assert!(open_pdt < text.find("part-e-10.0.m4s").expect("open part"));
    assert!(text.contains("2023-11-14T22:13:30.000Z"), "{text}");
    // Exactly one hint, for the next part; then the reports.
    assert_eq!(text.matches("#EXT-X-PRELOAD-HINT").count(), 1);
    assert!(text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-e-10.2.m4s\"\n"));
    assert!(
        text.trim_end().ends_with(
            "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=10,LAST-PART=1"
        )
    );
    assert!(!text.contains("ENDLIST"));
    // m3u8-rs still parses it as an ordinary media playlist (non-LL players ignore the
    // LL tags).
    let pl = m3u8_rs::parse_media_playlist_res(text.as_bytes()).expect("parses");
    assert_eq!(pl.segments.len(), 10);
}

#[test]
fn part_hold_back_and_start_offset_from_the_settings() {
    let w = ll_window(10);
    let r = audio_report();
    let seg = |m: u64| format!("seg-e-{m}.m4s");
    let prt = |m: u64, i: usize| format!("part-e-{m}.{i}.m4s");
    let hls = |toml: &str| {
        let cfg: crate::config::HlsConfig = toml::from_str(toml).expect("hls table");
        LlSettings::from_config(&cfg).expect("LL on")
    };
    // Defaults: 3 × PART-TARGET (200 ms + one AAC frame = 222 ms), no EXT-X-START.
    let s = hls("");
    let shipped = text(render(&ll_view(&w, &s, &r, false, false, &seg, &prt)));
    assert!(shipped.contains(",PART-HOLD-BACK=0.666\n"), "{shipped}");
    assert!(!shipped.contains("EXT-X-START"), "{shipped}");
    // A start 200 ms from the end, after EXT-X-PART-INF.
    let s = hls("start_offset = \"200ms\"");
    let start = text(render(&ll_view(&w, &s, &r, false, false, &seg, &prt)));
    assert_eq!(start.lines().nth(5), Some("#EXT-X-START:TIME-OFFSET=-0.2"));
    // Twice the part target (HLS2 §4.4.3.8's minimum) and a start 300 ms from the end.
    let s = hls("part_hold_back_factor = 2.0\nstart_offset = \"300ms\"");
    let tuned = text(render(&ll_view(&w, &s, &r, false, false, &seg, &prt)));
    assert!(tuned.contains(",PART-HOLD-BACK=0.444\n"), "{tuned}");
    let lines: Vec<&str> = tuned.lines().collect();
    assert_eq!(lines[4], "#EXT-X-PART-INF:PART-TARGET=0.222");
    assert_eq!(lines[5], "#EXT-X-START:TIME-OFFSET=-0.3");
    let pl = m3u8_rs::parse_media_playlist_res(tuned.as_bytes()).expect("parses");
    assert_eq!(pl.segments.len(), 10);
}

#[test]
fn delta_update_skips_old_segments_and_matches_the_full_playlist() {
    let w = ll_window(12);
    let (s, r) = (settings(), audio_report());
    let seg = |m: u64| format!("seg-e-{m}.m4s");
    let prt = |m: u64, i: usize| format!("part-e-{m}.{i}.m4s");
    let full = text(render(&ll_view(&w, &s, &r, false, false, &seg, &prt)));
    let delta = text(render(&ll_view(&w, &s, &r, true, false, &seg, &prt)));
    // 12 complete segments + 0.4 s open = 12.4 s; CAN-SKIP-UNTIL 6 s: segments ending
    // at or before 6.4 s are skipped: 0..=5 → 6.
    assert_eq!(skippable(&w, Duration::from_secs(6)), 6);
    assert!(delta.contains("#EXT-X-VERSION:9\n"));
    assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=6\n"));
    assert!(!delta.contains("seg-e-5.m4s") && delta.contains("seg-e-6.m4s"));
    // Everything after the skipped segments is identical to the full playlist.
    let tail = |t: &str| t[t.find("seg-e-6.m4s").expect("seg 6")..].to_string();
    assert_eq!(tail(&full), tail(&delta));
    // No skip once the stream ended.
    let ended = text(render(&ll_view(&w, &s, &r, true, true, &seg, &prt)));
    assert!(!ended.contains("EXT-X-SKIP"));
    assert!(!ended.contains("PRELOAD-HINT") && !ended.contains("RENDITION-REPORT"));
    assert!(ended.trim_end().ends_with("#EXT-X-ENDLIST"));
}

#[test]
fn prelude_of_the_previous_broadcast_before_a_discontinuity() {
    // The previous broadcast (epoch "old") ended after segment 9; this one starts at 10.
    let mut old = Window::starting_at(6, 0, 8);
    old.push(Duration::from_secs(1), t0(), Bytes::from_static(b"a"));
    old.push(
        Duration::from_secs(1),
        t0() + Duration::from_secs(1),
        Bytes::from_static(b"b"),
    );
    let old_segments: Vec<Segment> = old.segments().cloned().collect();
    let mut w = Window::starting_at(6, 0, 10);
    for i in 0..5 {
        w.push_part(i == 0, part(i == 0), t0() + Duration::from_secs(60));
    }
    w.push_part(true, part(true), t0() + Duration::from_secs(61));
    let (s, r) = (settings(), audio_report());
    let seg = |n: u64| format!("seg-new-{n}.m4s");
    let prt = |n: u64, i: usize| format!("part-new-{n}.{i}.m4s");
    let old_seg = |n: u64| format!("seg-old-{n}.m4s");
    let mut v = ll_view(&w, &s, &r, true, false, &seg, &prt);
    v.discontinuity_sequence = 3;
    v.init_uri = Some("init-new.mp4");
    v.prelude = Some(Prelude {
        segments: &old_segments,
        init_uri: "init-old.mp4",
        segment_uri: &old_seg,
    });
    let text = self::text(render(&v));
    // The first listed segment is the previous broadcast's: its numbers head the list.
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:8\n"), "{text}");
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:2\n"), "{text}");
    // No delta update across the discontinuity, even when asked.
    assert!(!text.contains("EXT-X-SKIP") && text.contains("#EXT-X-VERSION:6\n"));
    let order: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("#EXT-X-MAP")
                || l.starts_with("seg-")
                || *l == "#EXT-X-DISCONTINUITY"
                || l.starts_with("#EXT-X-PART:")
        })
        .collect();
    assert_eq!(
        order,
        [
            "#EXT-X-MAP:URI=\"init-old.mp4\"",
            "seg-old-8.m4s",
            "seg-old-9.m4s",
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP:URI=\"init-new.mp4\"",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.0.m4s\",INDEPENDENT=YES",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.1.m4s\"",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.2.m4s\"",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.3.m4s\"",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-10.4.m4s\"",
            "seg-new-10.m4s",
            "#EXT-X-PART:DURATION=0.2,URI=\"part-new-11.0.m4s\",INDEPENDENT=YES",
        ]
    );
    // An empty prelude is no prelude.
    v.prelude = Some(Prelude {
        segments: &[],
        init_uri: "init-old.mp4",
        segment_uri: &old_seg,
    });
    let text = self::text(render(&v));
    assert!(!text.contains("DISCONTINUITY\n") && text.contains("#EXT-X-MEDIA-SEQUENCE:10\n"));
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:3\n"));
}

#[test]
fn hint_predicts_the_next_segment_after_a_full_one() {
    let mut w = Window::new(6, 0);
    let t = SystemTime::UNIX_EPOCH;
    assert_eq!(next_part(&w, 5, None), (0, 0));
    for i in 0..5 {
        w.push_part(i == 0, part(i == 0), t);
    }
    assert_eq!(next_part(&w, 5, None), (1, 0));
    w.push_part(true, part(true), t);
    assert_eq!(next_part(&w, 5, None), (1, 1));
    w.close();
    assert_eq!(next_part(&w, 5, None), (2, 0));
    // An announcement overrides the count either way.
    assert_eq!(next_part(&w, 5, Some(false)), (2, 0), "no open segment");
    w.push_part(true, part(true), SystemTime::UNIX_EPOCH);
    assert_eq!(next_part(&w, 5, None), (2, 1));
    assert_eq!(next_part(&w, 5, Some(true)), (3, 0));
    assert_eq!(next_part(&w, 1, Some(false)), (2, 1));
}
