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
//! rendition without a word.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, join_rendition, resolve, test_config};

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
