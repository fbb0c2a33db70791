//! End to end over the WebSocket signalling channel: VP8 + Opus in, H.264 + AAC HLS out;
//! closing the socket ends the broadcast.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::publisher::{Publisher, PublisherOptions, VideoCodec};
use common::{TestGateway, probe_rendition, resolve, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_vp8_publish_is_transcoded_to_h264_and_ends_on_close() {
    let gw = TestGateway::start(test_config("")).await;
    let mut opts = PublisherOptions::ws(&gw.ws_url("vp8cam"))
        .with_video(VideoCodec::Vp8)
        .with_format(640, 360, 30);
    // Trickle both ways: the offer goes first, candidates follow as messages.
    opts.trickle = true;
    let publisher = Publisher::start(opts)
        .await
        .expect("publisher connects over WS");

    let master_url = gw.master_url("vp8cam");
    let master = gw
        .wait_master("vp8cam", 3, Duration::from_secs(30))
        .await
        .unwrap();
    for v in &master.variants {
        assert!(
            v.codecs.as_deref().unwrap().starts_with("avc1."),
            "{:?}",
            v.codecs
        );
        let url = resolve(&master_url, &v.uri);
        let pl = gw
            .wait_segments(&url, 3, Duration::from_secs(30))
            .await
            .unwrap();
        let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
        for (seq, p) in &probes {
            assert_eq!(p.codec, "h264", "segment {seq}");
            assert!(p.frames[0].1, "segment {seq} starts with a keyframe");
        }
    }
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    assert!(api.contains("\"websocket\""), "{api}");
    assert!(api.contains("VP8"), "{api}");

    // Closing the socket ends the broadcast: ENDLIST appears.
    publisher.stop().await.unwrap();
    let url = resolve(&master_url, &master.variants[0].uri);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = gw.get_text(&url).await.unwrap();
        if text.trim_end().ends_with("#EXT-X-ENDLIST") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ENDLIST after socket close:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_ends_every_playlist() {
    let gw = TestGateway::start(test_config("")).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("sd")).with_format(320, 180, 30))
            .await
            .unwrap();
    // And one over the WebSocket: shutdown tells it with an `ended` message.
    let ws_publisher =
        Publisher::start(PublisherOptions::ws(&gw.ws_url("sdws")).with_format(320, 180, 30))
            .await
            .unwrap();
    let master = gw
        .wait_master("sd", 1, Duration::from_secs(30))
        .await
        .unwrap();
    gw.wait_master("sdws", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let url = resolve(&gw.master_url("sd"), &master.variants[0].uri);
    gw.wait_segments(&url, 2, Duration::from_secs(20))
        .await
        .unwrap();
    // SIGTERM equivalent: the server ends every broadcast, then lingers briefly so players
    // and caches can read the final playlists.
    let http = gw.http.clone();
    let base = gw.base.clone();
    let stopping = tokio::spawn(gw.shutdown());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut ended = false;
    while std::time::Instant::now() < deadline {
        if let Ok(r) = http.get(&url).send().await {
            let text = r.text().await.unwrap_or_default();
            if text.trim_end().ends_with("#EXT-X-ENDLIST") {
                ended = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended, "no ENDLIST during graceful shutdown");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ws_publisher.server_ended().is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ws_publisher.server_ended().as_deref(),
        Some("unpublished"),
        "the WebSocket publisher is told its broadcast ended"
    );
    // New publishers are refused while shutting down.
    if let Ok(r) = http
        .post(format!("{base}/whip/late"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
    {
        assert_eq!(r.status(), 503);
    }
    stopping.await.unwrap();
    assert!(
        http.get(format!("{base}/healthz")).send().await.is_err(),
        "server still up"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    use webrtc::peer_connection::RTCPeerConnectionState as S;
    while !matches!(
        publisher.connection_state(),
        S::Closed | S::Failed | S::Disconnected
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "peer not closed: {:?}",
            publisher.connection_state()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
