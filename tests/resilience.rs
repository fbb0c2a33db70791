//! A live stream under stress: the source changes resolution, its RTP goes wild, its RTP
//! stops. Each is handled without losing published segments; only a stream whose media
//! stops is ended, and its name is free again.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, parse_media, probe, resolve, test_config};

/// Collects `(sequence, uri)` of every segment listed while polling for `dur`.
async fn observe(gw: &TestGateway, url: &str, dur: Duration) -> BTreeSet<(u64, String)> {
    let mut seen = BTreeSet::new();
    let end = Instant::now() + dur;
    while Instant::now() < end {
        if let Ok((200, text)) = gw.get_text(url).await {
            let pl = parse_media(&text).unwrap();
            for (i, s) in pl.segments.iter().enumerate() {
                seen.insert((pl.media_sequence + i as u64, s.uri.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    seen
}

fn assert_contiguous(seen: &BTreeSet<(u64, String)>) {
    let seqs: Vec<u64> = seen.iter().map(|(s, _)| *s).collect();
    let (first, last) = (seqs[0], *seqs.last().unwrap());
    assert_eq!(seqs.len() as u64, last - first + 1, "gap: {seqs:?}");
    let epochs: BTreeSet<&str> = seen
        .iter()
        .filter_map(|(_, u)| u.split('-').nth(1))
        .collect();
    assert_eq!(epochs.len(), 1, "stream restarted: {epochs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_change_and_garbage_rtp_keep_the_stream_going() {
    let gw = TestGateway::start(test_config("")).await;
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("wild")).with_format(640, 360, 30))
            .await
            .unwrap();
    let master = gw
        .wait_master("wild", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let top = master
        .variants
        .iter()
        .find(|v| v.resolution.unwrap().height == 360)
        .unwrap();
    let url = resolve(&gw.master_url("wild"), &top.uri);
    gw.wait_segments(&url, 2, Duration::from_secs(20))
        .await
        .unwrap();

    // 1. The source drops to 320x180 mid-stream: the rungs keep their size and cadence.
    p.set_resolution(320, 180).unwrap();
    let mut seen = observe(&gw, &url, Duration::from_secs(4)).await;

    // 2. 60 video packets with random payloads: the depayloader/decoder lose sync, whipcast
    //    asks for a keyframe (PLI) and the stream carries on.
    let plis_before = p.keyframe_requests();
    p.corrupt_video_packets(60);
    seen.extend(observe(&gw, &url, Duration::from_secs(5)).await);
    assert_contiguous(&seen);
    assert!(seen.len() >= 8, "stream stalled: {seen:?}");
    assert!(
        p.keyframe_requests() > plis_before,
        "no PLI after corrupt RTP"
    );

    // The newest segments are still 640x360 H.264 starting with a keyframe.
    let pl = parse_media(&gw.get_text(&url).await.unwrap().1).unwrap();
    let init = gw
        .get_bytes(&resolve(&url, &pl.segments[0].map.as_ref().unwrap().uri))
        .await
        .unwrap();
    let last = pl.segments.last().unwrap();
    let data = gw.get_bytes(&resolve(&url, &last.uri)).await.unwrap();
    let pr = probe(&init, &data, true).unwrap();
    assert_eq!((pr.width, pr.height), (640, 360));
    assert!(pr.frames[0].1);
    // The other rungs and audio went on too.
    for v in &master.variants {
        let u = resolve(&gw.master_url("wild"), &v.uri);
        let text = gw.get_text(&u).await.unwrap().1;
        assert!(!text.contains("ENDLIST"), "{u} ended");
    }
    assert_eq!(p.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_that_stops_ends_the_stream_and_frees_the_name() {
    let gw = TestGateway::start(test_config("[ice]\nmedia_timeout = \"2s\"\n")).await;
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("quiet")).with_format(320, 180, 30))
            .await
            .unwrap();
    let master = gw
        .wait_master("quiet", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let url = resolve(&gw.master_url("quiet"), &master.variants[0].uri);
    let before = gw
        .wait_segments(&url, 2, Duration::from_secs(20))
        .await
        .unwrap();
    p.pause_media(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        let text = gw.get_text(&url).await.unwrap().1;
        if text.trim_end().ends_with("#EXT-X-ENDLIST") {
            break parse_media(&text).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "stream not ended after RTP stopped:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Nothing published before the silence was lost.
    let first_before = before.media_sequence;
    let last_ended = ended.media_sequence + ended.segments.len() as u64 - 1;
    assert!(last_ended >= first_before + before.segments.len() as u64 - 1);
    for s in &ended.segments {
        let r = gw.http.get(resolve(&url, &s.uri)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", s.uri);
    }
    // The name is free again: a new publisher gets 201.
    let again =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("quiet")).with_format(320, 180, 30))
            .await
            .unwrap();
    assert_eq!(again.stop().await.unwrap(), 200);
    drop(p);
    gw.shutdown().await;
}
