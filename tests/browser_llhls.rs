//! LL-HLS in a real browser: the Rust WebRTC publisher (640x360 @ 30, with its capture-time
//! barcode) publishes over WHIP to an in-process whipcast (`test_config`: 1 s segments,
//! 200 ms parts, 360p/240p/180p); ffmpeg reads the master playlist; then hls.js in headless
//! Chromium plays `/watch/` in low-latency mode for 60 s, which must go without a stall; then
//! a stock hls.js (`tests/browser/stock_player.html`: `new Hls({ lowLatencyMode: true })`,
//! nothing else) plays the same stream for 30 s, also without a stall. The browser side is `tests/browser/llhls_play.mjs`; it also
//! measures glass-to-glass latency from the barcode (reported, not asserted: 2 shared cores
//! make it noisy).
//!
//! Needs `deploy/install-browser-deps.sh` (chromium, `player/node_modules`) and a
//! loopback-only network namespace: `bash deploy/netns-run.sh cargo test --test browser_llhls`.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::publisher::{Publisher, PublisherOptions, timecode_reference_luma, unix_ms};
use common::{TestGateway, test_config};
use serde_json::Value;

const STREAM: &str = "ll1";
/// Observation time in the browser, after playback started.
const WATCH_SECONDS: u64 = 60;
/// Observation time of the stock hls.js.
const STOCK_WATCH_SECONDS: u64 = 30;
/// The script stops itself after WATCH_SECONDS + 90 s; this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(WATCH_SECONDS + 120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_plays_llhls_in_low_latency_mode_without_stalls() {
    let chromium = common::browser_preconditions("browser_llhls");

    // With a 30 s DVR window: hls.js must play the live edge of a long playlist.
    let gw = TestGateway::start(test_config("dvr_window = \"30s\"\n")).await;
    let publisher = Publisher::start(
        PublisherOptions::whip(&gw.whip_url(STREAM))
            .with_format(640, 360, 30)
            .with_timecode(true),
    )
    .await
    .expect("publisher connects");
    let m = gw
        .wait_master(STREAM, 3, Duration::from_secs(30))
        .await
        .unwrap();
    // ffmpeg is no LL-HLS client: it needs whole segments in the playlist, whereas the
    // master is served as soon as the first parts exist.
    let media = common::resolve(&gw.master_url(STREAM), &m.variants[0].uri);
    gw.wait_segments(&media, 2, Duration::from_secs(30))
        .await
        .unwrap();

    // ffmpeg reads the same master URL for a few seconds.
    let master = gw.master_url(STREAM);
    let ffmpeg = tokio::process::Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", &master, "-t", "3", "-f", "null", "-",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), ffmpeg)
        .await
        .expect("ffmpeg finishes within 30 s")
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg -i {master} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // The decoder's known answer: a frame painted by the publisher's own barcode code.
    let dir = std::env::temp_dir().join(format!("whipcast-llhls-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let ref_ms = unix_ms();
    let (w, h) = (640usize, 360usize);
    std::fs::write(dir.join("ref.y"), timecode_reference_luma(w, h, ref_ms)).unwrap();
    let ref_json = serde_json::json!({
        "file": dir.join("ref.y"), "width": w, "height": h, "ms": ref_ms,
    });
    std::fs::write(dir.join("ref.json"), ref_json.to_string()).unwrap();

    let watch = WATCH_SECONDS.to_string();
    let reference = dir.join("ref.json");
    let (code, summary) = common::run_browser_script(
        &chromium,
        "llhls_play.mjs",
        &[&gw.base, STREAM],
        &[
            ("WATCH_SECONDS", std::ffi::OsStr::new(&watch)),
            ("TIMECODE_REF", reference.as_os_str()),
        ],
        SCRIPT_TIMEOUT,
    )
    .await;
    // A player nobody here configured, joining the running stream.
    let stock_watch = STOCK_WATCH_SECONDS.to_string();
    let (stock_code, stock) = common::run_browser_script(
        &chromium,
        "llhls_play.mjs",
        &[&gw.base, STREAM],
        &[
            ("WATCH_SECONDS", std::ffi::OsStr::new(&stock_watch)),
            ("TIMECODE_REF", reference.as_os_str()),
            ("STOCK", std::ffi::OsStr::new("1")),
        ],
        SCRIPT_TIMEOUT,
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);

    // Server side, after a minute and a half of playback.
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let api: Value = serde_json::from_str(&api).unwrap();
    let s = api["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == STREAM)
        .expect("stream in /api/streams")
        .clone();
    println!(
        "server lag ms {} · first playable {} s · memory {} bytes",
        s["lag_ms"], s["first_playable_s"], s["memory_bytes"]
    );
    // The DVR window: after > 60 s of 1 s segments, 30 are listed (the live window is 6).
    let (_, text) = gw.get_text(&media).await.unwrap();
    let listed = text.matches("#EXTINF").count();
    assert!((29..=31).contains(&listed), "{listed} segments listed");
    assert!(s["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(s["trimmed_segments"], 0);
    assert!(
        publisher.media_error().is_none(),
        "publisher: {:?}",
        publisher.media_error()
    );
    let _ = publisher.stop().await;
    gw.shutdown().await;

    assert_eq!(
        code,
        Some(0),
        "browser script failed: {}",
        common::script_failures(&summary)
    );
    assert_eq!(summary["ok"], true);

    // Re-check the essentials here, so a lenient script cannot pass a broken run.
    assert_eq!(summary["engine"], "hls.js");
    assert_eq!(summary["lowLatencyMode"], true, "hls.js lowLatencyMode");
    assert_eq!(summary["fatalErrors"], 0);
    assert_eq!(
        summary["during"]["stalls"], 0,
        "waiting events after startup"
    );
    assert_eq!(summary["during"]["stallErrors"], 0, "BUFFER_STALLED_ERROR");
    let observed = summary["playback"]["wallS"].as_f64().unwrap();
    let advanced = summary["playback"]["advancedS"].as_f64().unwrap();
    assert!(
        observed >= (WATCH_SECONDS - 2) as f64,
        "observed {observed} s"
    );
    assert!(
        advanced >= observed - 1.0,
        "currentTime advanced {advanced} s in {observed} s"
    );
    assert!(summary["playback"]["maxFreezeS"].as_f64().unwrap() <= 0.75);
    let parts = summary["during"]["partLoads"].as_u64().unwrap();
    assert!(
        parts >= WATCH_SECONDS * 2,
        "{parts} parts loaded in {WATCH_SECONDS} s"
    );
    assert!(summary["levelDetails"]["partListLength"].as_u64().unwrap() > 0);
    assert_eq!(summary["levelDetails"]["canBlockReload"], true);
    let latency = summary["hlsLatency"]["median"].as_f64().unwrap();
    let target = summary["hlsLatency"]["target"].as_f64().unwrap();
    assert!(
        latency > 0.0 && latency < 10.0,
        "hls.latency median {latency}"
    );
    assert!(target > 0.0, "hls.targetLatency {target}");
    assert_eq!(summary["decoderSelfCheck"]["node"], "pass");
    assert_eq!(summary["decoderSelfCheck"]["page"], "pass");
    let g2g = &summary["glassToGlass"];
    assert!(g2g["samples"].as_u64().unwrap() > 0, "no barcode decoded");
    println!(
        "hls.js latency median {latency} s (target {target} s); glass-to-glass median {} ms, p95 {} ms",
        g2g["medianMs"], g2g["p95Ms"]
    );

    // The stock player: the script's checks (no stall, no freeze, parts loaded, barcode
    // decoded in order and agreeing with PROGRAM-DATE-TIME), re-checked here.
    assert_eq!(
        stock_code,
        Some(0),
        "stock hls.js failed: {}",
        common::script_failures(&stock)
    );
    assert_eq!(
        stock["player"],
        "stock hls.js (tests/browser/stock_player.html)"
    );
    assert_eq!(stock["lowLatencyMode"], true);
    assert_eq!(stock["fatalErrors"], 0);
    assert_eq!(stock["during"]["stalls"], 0, "stock hls.js: waiting events");
    assert!(stock["playback"]["maxFreezeS"].as_f64().unwrap() <= 0.75);
    // It started PART-HOLD-BACK (3 × 0.222 s) before the edge of the playlist it read, plus
    // that playlist's age (hls.js' startPosition, traced at its first part request).
    let first_part = stock["startupTrace"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ev"] == "part" && e["type"] == "main")
        .cloned()
        .expect("stock hls.js loaded a part");
    let start = first_part["startPosition"].as_f64().unwrap();
    let edge = stock["startupTrace"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ev"] == "level")
        .and_then(|e| e["edge"].as_f64())
        .expect("a level playlist in the trace");
    assert!(
        (edge - start - 0.666).abs() < 0.1,
        "stock hls.js started at {start}, edge {edge}: {first_part}"
    );
    println!(
        "stock hls.js: glass-to-glass median {} ms; started {:.3} s behind the edge",
        stock["glassToGlass"]["medianMs"],
        edge - start
    );
}
