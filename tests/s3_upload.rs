//! Object storage, end to end against a real S3-compatible server (`moto` in server mode,
//! installed by deploy/install-test-deps.sh, started here on 127.0.0.1): a real WebRTC
//! publish is uploaded as regular HLS; the playlists and segments, fetched back from the
//! store over HTTP, carry the right headers and decode in ffmpeg. A store that is down at
//! first and comes up within the retry budget loses nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{
    TestGateway, decode_all, metrics, output_status, parse_media, resolve, test_config, wait_output,
};

const BUCKET: &str = "live";

/// A moto S3 server on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    base: String,
}

impl Moto {
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    fn binary() -> PathBuf {
        let venv = std::env::var("WHIPCAST_TEST_VENV").map_or_else(
            |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-venv"),
            PathBuf::from,
        );
        let bin = venv.join("bin/moto_server");
        assert!(
            bin.is_file(),
            "{} is missing: run `bash deploy/install-test-deps.sh`",
            bin.display()
        );
        bin
    }

    /// Starts moto on `port` and creates the bucket.
    async fn start(port: u16, http: &reqwest::Client) -> Moto {
        let child = Command::new(Self::binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.put(format!("{}/{BUCKET}", moto.base)).send().await
                && r.status().is_success()
            {
                return moto;
            }
            assert!(Instant::now() < deadline, "moto did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{BUCKET}/{key}", self.base)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn s3_config(port: u16) -> whipcast::Config {
    test_config(&format!(
        "[s3]\nenabled = true\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"{BUCKET}\"\nprefix = \"hls\"\naccess_key = \"test\"\nsecret_key = \"test\"\nacl = \"public-read\"\nretry_for = \"60s\"\n"
    ))
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = http.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// Checks what the bucket holds after the broadcast: final playlists with ENDLIST, every
/// segment from the first to the last of every rendition (none lost), right headers, and
/// ffmpeg decodes it all from the store over HTTP.
async fn check_bucket(moto: &Moto, http: &reqwest::Client, stream: &str, epoch: &str) {
    let master_url = moto.url(&format!("hls/{stream}/master.m3u8"));
    let (status, headers, body) = get(http, &master_url).await;
    assert_eq!(status, 200, "{master_url}");
    assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
    assert_eq!(headers["cache-control"], "public, max-age=1");
    let master = m3u8_rs::parse_master_playlist_res(&body).unwrap();
    let mut uris: Vec<String> = master.variants.iter().map(|v| v.uri.clone()).collect();
    assert_eq!(uris.len(), 3, "{}", String::from_utf8_lossy(&body));
    uris.extend(master.alternatives.iter().filter_map(|a| a.uri.clone()));
    assert_eq!(
        uris.len(),
        4,
        "audio missing: {}",
        String::from_utf8_lossy(&body)
    );
    for uri in &uris {
        let url = resolve(&master_url, uri);
        let (status, headers, body) = get(http, &url).await;
        assert_eq!(status, 200, "{url}");
        assert_eq!(headers["content-type"], "application/vnd.apple.mpegurl");
        let text = String::from_utf8(body).unwrap();
        let pl = parse_media(&text).unwrap();
        assert!(pl.end_list, "{url}: {text}");
        assert!(
            pl.playlist_type.is_none(),
            "a live window, not EVENT/VOD: {text}"
        );
        assert!(
            pl.segments.len() <= 6,
            "window is hls.window_segments: {text}"
        );
        let init = pl.segments[0].map.as_ref().unwrap().uri.clone();
        assert_eq!(init, format!("init-{epoch}.mp4"));
        let (status, headers, _) = get(http, &resolve(&url, &init)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "video/mp4");
        assert!(
            headers["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        // Every segment the broadcast made, also those that left the window: none lost.
        let last = pl.media_sequence + pl.segments.len() as u64 - 1;
        assert!(last >= 4, "{url}: only {} segments", last + 1);
        for seq in 0..=last {
            let seg = resolve(&url, &format!("seg-{epoch}-{seq}.m4s"));
            let (status, headers, body) = get(http, &seg).await;
            assert_eq!(status, 200, "{seg} missing from the bucket");
            assert_eq!(headers["content-type"], "video/iso.segment");
            assert!(
                headers["cache-control"]
                    .to_str()
                    .unwrap()
                    .contains("immutable")
            );
            assert!(!body.is_empty());
        }
        decode_all(&url);
    }
    decode_all(&master_url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_and_playlists_are_uploaded_and_play_from_the_store() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let port = Moto::free_port();
    let moto = Moto::start(port, &http).await;
    let gw = TestGateway::start(s3_config(port)).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("s3cam")).with_format(640, 360, 30))
            .await
            .expect("publisher connects");
    gw.wait_master("s3cam", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (epoch, status) = output_status(&gw, "s3cam").await;
    assert_eq!(status["kind"], "s3");
    assert_eq!(status["location"], format!("s3://{BUCKET}/hls/s3cam/"));

    // While live: a regular sliding-window playlist in the store, without ENDLIST, whose
    // segments are all there already (playlists go up after their segments).
    let media_url = moto.url("hls/s3cam/360p/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(30);
    let live = loop {
        let (status, _, body) = get(&http, &media_url).await;
        if status == 200 {
            let pl = parse_media(&String::from_utf8(body).unwrap()).unwrap();
            if pl.segments.len() >= 3 {
                break pl;
            }
        }
        assert!(Instant::now() < deadline, "no live playlist in the store");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!live.end_list);
    assert_eq!(live.target_duration, 1);
    for s in &live.segments {
        let (status, _, _) = get(&http, &resolve(&media_url, &s.uri)).await;
        assert_eq!(status, 200, "{} listed before it was uploaded", s.uri);
    }
    // Same bytes as the origin serves under the same name.
    let origin = resolve(
        &gw.master_url("s3cam"),
        &format!("360p/{}", live.segments[0].uri),
    );
    let (_, _, stored) = get(&http, &resolve(&media_url, &live.segments[0].uri)).await;
    assert_eq!(gw.get_bytes(&origin).await.unwrap(), stored);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let done = wait_output(&gw, "s3cam", "finished", |o| o["state"] != "active").await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["dropped"], 0, "{done}");
    assert_eq!(done["retries"], 0, "{done}");
    check_bucket(&moto, &http, "s3cam", &epoch).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_down_at_first_loses_nothing_once_it_comes_up() {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let port = Moto::free_port();
    // Nothing listens on `port` yet: every upload fails and is retried.
    let gw = TestGateway::start(s3_config(port)).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("s3late")).with_format(640, 360, 30))
            .await
            .expect("publisher connects");
    gw.wait_master("s3late", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let failing = wait_output(&gw, "s3late", "retried", |o| {
        o["retries"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(failing["state"], "active", "{failing}");
    assert_eq!(failing["objects"], 0, "{failing}");
    assert!(failing["error"].as_str().is_some(), "{failing}");
    // Several segments pile up meanwhile (the live stream does not wait).
    let media = resolve(&gw.master_url("s3late"), "360p/index.m3u8");
    gw.wait_segments(&media, 3, Duration::from_secs(20))
        .await
        .unwrap();

    let moto = Moto::start(port, &http).await;
    wait_output(&gw, "s3late", "caught up", |o| {
        o["objects"].as_u64().unwrap_or(0) > 10
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let (epoch, _) = output_status(&gw, "s3late").await;
    let done = wait_output(&gw, "s3late", "finished", |o| o["state"] != "active").await;
    assert_eq!(done["state"], "finished", "{done}");
    assert_eq!(done["dropped"], 0, "{done}");
    assert!(done["retries"].as_u64().unwrap() >= 3, "{done}");
    // The same figures process-wide, for alerting (/metrics).
    let m = metrics(&gw).await;
    assert_eq!(
        m["whipcast_output_retries_total{kind=\"s3\"}"],
        done["retries"].as_f64().unwrap()
    );
    assert_eq!(
        m["whipcast_output_objects_total{kind=\"s3\"}"],
        done["objects"].as_f64().unwrap()
    );
    assert_eq!(
        m["whipcast_output_bytes_total{kind=\"s3\"}"],
        done["bytes"].as_f64().unwrap()
    );
    assert_eq!(m["whipcast_output_dropped_total{kind=\"s3\"}"], 0.0);
    check_bucket(&moto, &http, "s3late", &epoch).await;
    gw.shutdown().await;
}
