//! An OBS-shaped publisher: what OBS Studio's WHIP output sends (audio section first, ICE
//! and DTLS attributes at session level only, `a=group:LS`, no candidates, an H.264 fmtp of
//! `42e01f` over a High profile stream, PLI ignored) with its audio flowing 1.5 s before the
//! first video packet. Our own publisher ([`PublisherOptions::like_obs`]) plays OBS because
//! OBS itself cannot run here; the offer is rewritten into OBS's shape.
//!
//! Checked: the broadcast takes the publisher's own Opus (not generated silence), every
//! AAC frame of the audio rendition's first 10 s is exactly 1024 samples after the one
//! before (this publisher shape used to give shrinking and repeated timestamps: `ffmpeg`
//! printed "non monotonically increasing dts" 42 times), and ffmpeg decodes every
//! rendition without a word. The same with OBS's simulcast (three layers, rids `0;1;2`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::publisher::{FeedSource, OBS_SIMULCAST_RIDS, Publisher, PublisherOptions};
use common::{
    TestGateway, assert_segments_aligned, join_rendition, resolve, segment_starts, test_config,
};
use gstreamer as gst;
use gstreamer::prelude::*;

/// One frame at the publisher's 30 fps, plus a millisecond for the muxers' rounding.
const ONE_FRAME_S: f64 = 1.0 / 30.0 + 0.001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_shaped_offer_gives_continuous_audio_from_the_first_frame() {
    let mut cfg = test_config("");
    // The first 10 s must still be listed when they are all there.
    cfg.hls.window_segments = 14;
    let gw = TestGateway::start(cfg).await;
    let opts = PublisherOptions::whip(&gw.whip_url("obs")).like_obs();
    let publisher = Publisher::start(opts)
        .await
        .expect("OBS-shaped publisher connects");
    let master_url = gw.master_url("obs");
    let master = gw
        .wait_master("obs", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let summary = common::stream_summary(&gw, "obs").await;
    assert_eq!(summary["ingest"]["audio"], true, "{summary}");
    let audio = master
        .alternatives
        .iter()
        .find(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .and_then(|a| a.uri.clone())
        .unwrap();
    let audio_url = resolve(&master_url, &audio);
    // 1 s segments: the first ten whole ones.
    let pl = gw
        .wait_segments(&audio_url, 11, Duration::from_secs(40))
        .await
        .unwrap();
    let joined = join_rendition(&gw, &audio_url, &pl, 10).await.unwrap();
    let (packets, tb) = common::audio_packets(&joined).unwrap();
    assert_eq!(tb, 48_000, "AAC at 48 kHz");
    assert!(
        packets.len() > 9 * 48_000 / 1024,
        "{} packets",
        packets.len()
    );
    let steps: Vec<i64> = packets.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let bad: Vec<(usize, i64)> = steps
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, d)| d != 1024)
        .collect();
    assert!(
        bad.is_empty(),
        "AAC frames not 1024 samples apart in the first 10 s: {} of {} steps, first {:?}",
        bad.len(),
        steps.len(),
        &bad[..bad.len().min(12)]
    );
    // ffmpeg, a reader nobody here wrote, agrees (it warned on every repeated timestamp).
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "warning", "-i"])
        .arg(&joined)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "ffmpeg on the audio rendition: {stderr}"
    );
    // Every video rendition decodes without a word.
    for v in &master.variants {
        let url = resolve(&master_url, &v.uri);
        let pl = gw
            .wait_segments(&url, 3, Duration::from_secs(20))
            .await
            .unwrap();
        let joined = join_rendition(&gw, &url, &pl, 3).await.unwrap();
        common::decode_all(joined.to_str().unwrap());
    }
    // The playlists follow RFC 8216bis §4 and §6.
    assert!(common::check_playlists(&gw, "obs").await.unwrap() >= 4);
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

/// OBS Studio's WHIP simulcast (its "simulcast layers" setting, 3 here): one video section
/// with `a=rid:0 send`, `a=rid:1 send`, `a=rid:2 send` and `a=simulcast:send 0;1;2`, the
/// layers named by encoder index with layer 0 the full-size picture, only layer 0's SSRC
/// declared (`a=ssrc`, the others' SSRCs appear with their first packets, each carrying the
/// MID and RtpStreamId header extensions), every layer's keyframes at its own GOP, PLI
/// ignored, audio 1.5 s ahead of the first video packet. The layers must become renditions
/// by their size, not by their names, with no transcoding for the rungs they cover, and
/// segment N must start at the same picture in every rendition (the layers' encoders get
/// the same frames and GOP, as OBS's do). Found by this test: parts of 7 frames (0.233 s)
/// above PART-TARGET in every passthrough rendition (mux.rs `VIDEO_EARLY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_shaped_simulcast_layers_become_aligned_renditions() {
    let mut cfg = test_config("");
    // Keyframes every 2 s, never on request: 1.8 s segments are cut at every one of them.
    cfg.hls.segment_duration = Duration::from_millis(1800);
    // Every segment since the start listed, to compare them all.
    cfg.hls.window_segments = 12;
    cfg.validate().unwrap();
    let gw = TestGateway::start(cfg).await;
    let mut opts = PublisherOptions::whip(&gw.whip_url("obs-sc"))
        .with_format(1280, 720, 30)
        .like_obs();
    opts.bitrate_kbps = 1500;
    let source = FeedSource::new(&opts, 3).unwrap();
    opts.feed = Some(source.feed.clone());
    source.pipeline.set_state(gst::State::Playing).unwrap();
    let publisher = Publisher::start(opts)
        .await
        .expect("OBS-shaped simulcast publisher connects");

    gw.wait_master("obs-sc", 4, Duration::from_secs(30))
        .await
        .unwrap();
    let summary = common::stream_summary(&gw, "obs-sc").await;
    let plan = summary["simulcast"].clone();
    // By size: the test ladder is 360p/240p/180p; the layers are 1280x720, 640x360, 320x180.
    assert_eq!(
        common::plan_renditions(&plan, "layers"),
        ["720p", "360p", "180p"],
        "{plan}"
    );
    let rids: Vec<&str> = plan["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["rid"].as_str().unwrap())
        .collect();
    assert_eq!(rids, OBS_SIMULCAST_RIDS, "{plan}");
    assert_eq!(plan["transcoded"], serde_json::json!(["240p"]), "{plan}");
    assert_eq!(plan["left_out"], serde_json::json!([]), "{plan}");
    assert_eq!(summary["ingest"]["audio"], true, "{summary}");

    // Six segments everywhere (the top layer begins up to two boundaries late: its first
    // keyframes lost their first slice), then segment N starts at the same picture in
    // every rendition.
    let renditions = ["720p", "360p", "240p", "180p"];
    for r in renditions {
        gw.wait_segments(
            &gw.url(&format!("/hls/obs-sc/{r}/index.m3u8")),
            6,
            Duration::from_secs(40),
        )
        .await
        .unwrap();
    }
    let starts = segment_starts(&gw, "obs-sc", &renditions).await;
    let listed: Vec<u64> = starts["720p"].keys().copied().collect();
    let (compared, spread) = assert_segments_aligned(&starts, listed, ONE_FRAME_S);
    println!("{compared} segment numbers compared, largest start spread {spread:.4} s");
    assert!(compared >= 6, "{starts:?}");

    // ffmpeg decodes each rendition without a word; the playlists follow RFC 8216bis.
    let master_url = gw.master_url("obs-sc");
    for r in renditions {
        let url = gw.url(&format!("/hls/obs-sc/{r}/index.m3u8"));
        let (_, text) = gw.get_text(&url).await.unwrap();
        let pl = common::parse_media(&text).unwrap();
        let joined = join_rendition(&gw, &url, &pl, 4).await.unwrap();
        common::decode_all(joined.to_str().unwrap());
    }
    assert!(
        common::check_playlists(&gw, "obs-sc").await.unwrap() >= 5,
        "{master_url}"
    );
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let _ = source.pipeline.set_state(gst::State::Null);
    gw.shutdown().await;
}
