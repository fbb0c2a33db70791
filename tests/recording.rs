//! Recording (live-to-VOD), end to end: a real WebRTC publisher asks for a recording with
//! `?record=1`; while live the recorded EVENT playlists are valid and list only complete
//! files; after DELETE the VOD recording decodes in ffmpeg end to end, every rendition, for
//! about as long as was published. A write error mid-stream stops the recording (state
//! `failed` in /api/streams) and the live HLS goes on to its ENDLIST.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{
    TestGateway, decode_all, metrics, output_status, parse_media, probe, resolve, test_config,
    wait_output,
};

fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("whipcast-{tag}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn wait_output_state(gw: &TestGateway, stream: &str, state: &str) -> serde_json::Value {
    wait_output(gw, stream, state, |o| o["state"] == state).await
}

/// Polls a recorded media playlist until it lists `n` segments.
async fn wait_recorded(path: &Path, n: usize) -> m3u8_rs::MediaPlaylist {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            let pl = parse_media(&text).unwrap();
            if pl.segments.len() >= n {
                return pl;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} never listed {n} segments",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `ffprobe` duration of a playlist (what a player would see), seconds.
fn probed_duration(playlist: &Path) -> f64 {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(playlist)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffprobe {}: {}",
        playlist.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no duration for {}", playlist.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_event_while_live_and_a_decodable_vod_after() {
    let dir = tempdir("rec");
    let gw = TestGateway::start(test_config(&format!(
        "[record]\nallow_request = true\ndirectory = \"{}\"\n",
        dir.display()
    )))
    .await;
    let published = Instant::now();
    let url = format!("{}?record=1", gw.whip_url("rec1"));
    let publisher = Publisher::start(PublisherOptions::whip(&url).with_format(640, 360, 30))
        .await
        .expect("publisher connects");
    gw.wait_master("rec1", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (epoch, status) = output_status(&gw, "rec1").await;
    assert_eq!(status["kind"], "record");
    let root = dir.join("rec1").join(&epoch);
    assert_eq!(status["location"], root.display().to_string());

    // While live: EVENT playlists, no ENDLIST, every listed file complete and decodable.
    let live = wait_recorded(&root.join("360p/index.m3u8"), 3).await;
    assert_eq!(
        live.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Event),
        "recording must be EVENT while live"
    );
    assert!(!live.end_list);
    assert_eq!(live.target_duration, 1);
    let init_uri = &live.segments[0].map.as_ref().expect("EXT-X-MAP").uri;
    let init = std::fs::read(root.join("360p").join(init_uri)).unwrap();
    for s in &live.segments {
        let data = std::fs::read(root.join("360p").join(&s.uri)).unwrap();
        let p = probe(&init, &data, true).unwrap();
        assert_eq!((p.width, p.height), (640, 360));
        assert!(
            p.frames.first().is_some_and(|f| f.1),
            "keyframe first in {}",
            s.uri
        );
    }
    let master_text = std::fs::read_to_string(root.join("master.m3u8")).unwrap();
    let master = m3u8_rs::parse_master_playlist_res(master_text.as_bytes()).unwrap();
    assert!(!master.variants.is_empty(), "{master_text}");
    // The recorded segment is the live origin's segment, byte for byte.
    let origin_url = resolve(&gw.master_url("rec1"), "360p/index.m3u8");
    let origin_seg = resolve(&origin_url, &live.segments[1].uri);
    assert_eq!(
        gw.get_bytes(&origin_seg).await.unwrap(),
        std::fs::read(root.join("360p").join(&live.segments[1].uri)).unwrap(),
        "recorded segment differs from the origin's"
    );
    // No temporary file is ever listed or left behind under a final name.
    for s in &live.segments {
        assert!(s.uri.ends_with(".m4s") && !s.uri.contains(".tmp"));
    }

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let published_s = published.elapsed().as_secs_f64();
    let done = wait_output_state(&gw, "rec1", "finished").await;
    assert!(done["error"].is_null(), "{done}");
    assert!(done["objects"].as_u64().unwrap() > 10, "{done}");

    // After: VOD with ENDLIST, the whole broadcast, decodable end to end.
    let master_text = std::fs::read_to_string(root.join("master.m3u8")).unwrap();
    let master = m3u8_rs::parse_master_playlist_res(master_text.as_bytes()).unwrap();
    let mut playlists: Vec<String> = master.variants.iter().map(|v| v.uri.clone()).collect();
    assert_eq!(playlists.len(), 3, "{master_text}");
    playlists.extend(master.alternatives.iter().filter_map(|a| a.uri.clone()));
    assert_eq!(playlists.len(), 4, "audio rendition missing: {master_text}");
    let mut durations = Vec::new();
    for uri in &playlists {
        let path = root.join(uri);
        let text = std::fs::read_to_string(&path).unwrap();
        let pl = parse_media(&text).unwrap();
        assert_eq!(
            pl.playlist_type,
            Some(m3u8_rs::MediaPlaylistType::Vod),
            "{uri}: {text}"
        );
        assert!(pl.end_list, "{uri}: {text}");
        // Contiguous numbering from the first segment: nothing was lost.
        let seqs: Vec<u64> = pl
            .segments
            .iter()
            .map(|s| {
                s.uri
                    .rsplit('-')
                    .next()
                    .unwrap()
                    .trim_end_matches(".m4s")
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{uri}: {seqs:?}");
        assert_eq!(seqs[0], pl.media_sequence);
        let listed: f64 = pl.segments.iter().map(|s| f64::from(s.duration)).sum();
        for s in &pl.segments {
            assert!(
                path.parent().unwrap().join(&s.uri).is_file(),
                "{uri}: {} missing",
                s.uri
            );
        }
        decode_all(path.to_str().unwrap());
        let d = probed_duration(&path);
        assert!(
            (d - listed).abs() < 0.5,
            "{uri}: decoded {d:.2}s, listed {listed:.2}s"
        );
        durations.push((uri.clone(), d));
    }
    // Everything from the first segment to the end: at most the publish time, and short of
    // it only by the start-up (connect, first keyframe, first segment).
    for (uri, d) in &durations {
        assert!(
            *d <= published_s + 0.5 && *d >= published_s - 4.0,
            "{uri}: recorded {d:.2}s of {published_s:.2}s published"
        );
    }
    // The multivariant playlist plays as a whole.
    decode_all(root.join("master.m3u8").to_str().unwrap());
    // No temporary file left anywhere.
    for sub in std::fs::read_dir(&root).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in std::fs::read_dir(&sub).unwrap() {
                let name = f.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.ends_with(".tmp"), "left behind: {name}");
            }
        }
    }
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_error_stops_the_recording_not_the_live_stream() {
    let dir = tempdir("rec-fail");
    // Recording on for every stream (no query flag needed).
    let gw = TestGateway::start(test_config(&format!(
        "[record]\nenabled = true\ndirectory = \"{}\"\n",
        dir.display()
    )))
    .await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("rec2")).with_format(640, 360, 30))
            .await
            .expect("publisher connects");
    gw.wait_master("rec2", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (epoch, status) = output_status(&gw, "rec2").await;
    assert_eq!(status["state"], "active", "{status}");
    let root = dir.join("rec2").join(&epoch);
    wait_recorded(&root.join("360p/index.m3u8"), 2).await;

    // Mid-stream, the rendition's directory becomes a file: every further write there
    // fails (as on a full or broken disk; root ignores permission bits, not this).
    std::fs::remove_dir_all(root.join("360p")).unwrap();
    std::fs::write(root.join("360p"), b"not a directory").unwrap();
    let failed = wait_output_state(&gw, "rec2", "failed").await;
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains("360p"), "{failed}");

    // The live stream goes on: new segments keep coming in every rendition, then ENDLIST.
    let media = resolve(&gw.master_url("rec2"), "360p/index.m3u8");
    let before = gw
        .wait_segments(&media, 1, Duration::from_secs(10))
        .await
        .unwrap();
    let last_before = before.media_sequence + before.segments.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, text) = gw.get_text(&media).await.unwrap();
        let pl = parse_media(&text).unwrap();
        if pl.media_sequence + pl.segments.len() as u64 >= last_before + 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "live stream stalled after the recording failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, still) = output_status(&gw, "rec2").await;
    assert_eq!(still["state"], "failed");
    // The failure is counted process-wide too (it outlives the stream's own status).
    let m = metrics(&gw).await;
    assert_eq!(
        m["whipcast_output_failures_total{kind=\"record\"}"], 1.0,
        "{m:?}"
    );
    assert_eq!(m["whipcast_output_failures_total{kind=\"s3\"}"], 0.0);
    assert!(
        m["whipcast_output_objects_total{kind=\"record\"}"] >= still["objects"].as_f64().unwrap()
    );
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let (_, text) = gw.get_text(&media).await.unwrap();
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_a_recording_requested_over_websocket_as_vod() {
    let dir = tempdir("rec-term");
    // No linger: what is on disk when `run` returns is what the drain waited for.
    let gw = TestGateway::start(test_config(&format!(
        "[server]\nshutdown_linger = \"0s\"\n[record]\nallow_request = true\ndirectory = \"{}\"\n",
        dir.display()
    )))
    .await;
    // Asked for over the WebSocket signalling channel this time.
    let url = format!("{}?record=1", gw.ws_url("rec3"));
    let publisher = Publisher::start(PublisherOptions::ws(&url).with_format(640, 360, 30))
        .await
        .expect("publisher connects");
    gw.wait_master("rec3", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (epoch, _) = output_status(&gw, "rec3").await;
    let root = dir.join("rec3").join(&epoch);
    wait_recorded(&root.join("360p/index.m3u8"), 3).await;
    // As on SIGTERM, with the publisher still sending.
    gw.shutdown().await;
    let text = std::fs::read_to_string(root.join("360p/index.m3u8")).unwrap();
    let pl = parse_media(&text).unwrap();
    assert_eq!(
        pl.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Vod),
        "{text}"
    );
    assert!(pl.end_list, "{text}");
    decode_all(root.join("master.m3u8").to_str().unwrap());
    drop(publisher);
    let _ = std::fs::remove_dir_all(&dir);
}
