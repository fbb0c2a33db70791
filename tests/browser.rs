//! Browser end to end: Debian's Chromium publishes through whipcast's own pages and hls.js
//! plays the result. Two scripts under `tests/browser/` (playwright-core driving
//! `/usr/bin/chromium`, launched by `chromium.mjs`); each test serves whipcast in-process on
//! loopback, runs one script and checks the JSON it reports:
//!
//! - `publish_and_play.mjs`: `/publish/` over WHIP + H.264 and WebSocket + VP8 with a fake
//!   camera and microphone, `/watch/`, the dashboard, the rendition picker, the ended state,
//!   the 409 message and screenshots under `target/screenshots/`;
//! - `publish_paths.mjs`, against a whipcast that requires a token: the permission-denied,
//!   network-down and 401 messages, the form driven by keyboard alone, VP9 published and
//!   played as H.264, the bitrate cap, screen share (then its connection cut while live), and
//!   accessibility (axe-core, labels, Tab) on the three pages.
//!
//! Needs `deploy/install-browser-deps.sh` (chromium, `player/node_modules`), which
//! `make test` runs, and a loopback-only network namespace (`deploy/netns-run.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TestGateway, test_config};
use serde_json::Value;

/// Each script stops itself before this (170 s, 200 s); this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

/// One browser at a time: the tests of this file share 2 cores with the encoders.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `tests/browser/{script}` with `args` and returns its JSON summary (the last stdout
/// line), after checking it exited 0 and said `"ok": true`.
async fn run_script(chromium: &str, script: &str, args: &[&str]) -> Value {
    // For scripts that need a whipcast of their own (one they can kill).
    let bin = std::ffi::OsStr::new(env!("CARGO_BIN_EXE_whipcast"));
    let (code, summary) = common::run_browser_script(
        chromium,
        script,
        args,
        &[("WHIPCAST_BIN", bin)],
        SCRIPT_TIMEOUT,
    )
    .await;
    assert_eq!(
        code,
        Some(0),
        "{script} failed: {}",
        common::script_failures(&summary)
    );
    assert_eq!(summary["ok"], true);

    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_over_whip_and_websocket_and_hlsjs_plays() {
    let chromium = common::browser_preconditions("browser");
    let _one = ONE_BROWSER.lock().await;

    let gw = TestGateway::start(test_config("")).await;
    // The pages and hls.js come from whipcast itself (server.player_dir defaults to player/).
    for (path, needle) in [
        ("/publish/", "publish.js"),
        ("/watch/", "../vendor/hls.min.js"),
        ("/vendor/hls.min.js", "Hls"),
    ] {
        let (code, body) = gw.get_text(&gw.url(path)).await.unwrap();
        assert_eq!(code, 200, "GET {path}");
        assert!(
            body.contains(needle),
            "GET {path} does not mention {needle}"
        );
    }

    let summary = run_script(&chromium, "publish_and_play.mjs", &[&gw.base]).await;

    // Re-check the essentials here, so a lenient script cannot pass a broken run.
    let cases = summary["cases"].as_array().expect("cases");
    let names: Vec<(&str, &str, &str)> = cases
        .iter()
        .map(|c| {
            (
                c["stream"].as_str().unwrap(),
                c["signaling"].as_str().unwrap(),
                c["codec"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("b1", "whip", "h264"), ("b2", "ws", "vp8")]);
    for c in cases {
        let s = c["stream"].as_str().unwrap();
        assert_eq!(c["publish"]["status"], "live", "{s}");
        let sent = c["publish"]["negotiated"]["codec"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        assert_eq!(
            sent,
            format!("video/{}", c["codec"].as_str().unwrap()),
            "{s}: codec the browser sends"
        );
        assert_eq!(c["publish"]["audioCodec"], "audio/opus", "{s}");
        assert_eq!(c["api"]["whileLive"]["state"], "live", "{s}");
        assert_eq!(c["api"]["afterStop"]["state"], "ended", "{s}");
        assert_eq!(c["watch"]["engine"], "hls.js", "{s}");
        assert!(
            !c["watch"]["levels"].as_array().unwrap().is_empty(),
            "{s}: no levels"
        );
        assert_eq!(c["watch"]["fatalErrors"], 0, "{s}: hls.js fatal errors");
        let advanced = c["watch"]["advanced"].as_f64().unwrap();
        assert!(
            advanced >= 2.5,
            "{s}: currentTime advanced only {advanced}s"
        );
        assert_eq!(
            c["watch"]["sawEnd"], true,
            "{s}: player did not see the end"
        );
    }
    assert_eq!(cases[0]["publish"]["deleteStatus"], 200, "WHIP DELETE");

    // After the script: every stream ended, nothing left publishing.
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let api: Value = serde_json::from_str(&api).unwrap();
    for s in api["streams"].as_array().unwrap() {
        assert_eq!(s["state"], "ended", "{s}");
    }
    gw.shutdown().await;
}

/// The token the second gateway requires; the script types wrong ones too.
const TOKEN: &str = "browser-test-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_page_failures_screen_share_vp9_bitrate_cap_and_accessibility() {
    let chromium = common::browser_preconditions("browser");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("player/node_modules/axe-core/axe.min.js")
            .is_file(),
        "player/node_modules/axe-core is missing: run `bash deploy/install-browser-deps.sh`"
    );
    let _one = ONE_BROWSER.lock().await;
    let gw = TestGateway::start(test_config(&format!("[auth]\ntoken = \"{TOKEN}\"\n"))).await;
    let s = run_script(&chromium, "publish_paths.mjs", &[&gw.base, TOKEN]).await;

    // Re-check the essentials here, so a lenient script cannot pass a broken run.
    let denied = &s["permissionDenied"];
    for source in ["camera", "screen"] {
        assert_eq!(denied[source]["phase"], "error", "{source}: {denied}");
        let status = denied[source]["status"].as_str().unwrap();
        assert!(status.contains("permission denied"), "{source}: {status}");
    }
    let lost = &s["whipServerLost"];
    assert_eq!(lost["phase"], "error", "{lost}");
    assert!(
        lost["status"]
            .as_str()
            .unwrap()
            .contains("network down: lost the connection"),
        "{lost}"
    );
    for signaling in ["whip", "ws"] {
        let down = &s["networkDown"][signaling];
        assert!(
            down["status"].as_str().unwrap().contains("network down"),
            "{signaling}: {down}"
        );
        let auth = &s["wrongToken"][signaling];
        assert_eq!(auth["httpStatus"], 401, "{signaling}: {auth}");
        assert!(
            auth["status"].as_str().unwrap().contains("bearer token"),
            "{signaling}: {auth}"
        );
    }
    let vp9 = &s["vp9"];
    assert_eq!(
        vp9["sent"].as_str().unwrap().to_ascii_lowercase(),
        "video/vp9"
    );
    for case in [vp9, &s["screen"]] {
        let codecs = case["masterCodecs"].as_array().unwrap();
        assert!(!codecs.is_empty(), "{case}");
        assert!(
            codecs
                .iter()
                .all(|c| c.as_str().unwrap().starts_with("avc1.")),
            "{case}"
        );
        assert!(case["watch"]["advanced"].as_f64().unwrap() > 0.0, "{case}");
        assert_eq!(case["ended"], true, "{case}");
    }
    let (uncapped, capped) = (
        vp9["uncappedKbps"].as_f64().unwrap(),
        vp9["cappedKbps"].as_f64().unwrap(),
    );
    assert!(capped > 0.0 && capped < uncapped, "cap: {vp9}");
    assert_eq!(s["screen"]["track"]["displaySurface"], "monitor");
    let dropped = &s["screen"]["dropped"];
    assert!(
        dropped["status"]
            .as_str()
            .unwrap()
            .contains("network down: lost the connection"),
        "connection cut while live: {dropped}"
    );
    let a11y = s["accessibility"].as_object().unwrap();
    assert!(a11y.len() >= 5, "pages checked for accessibility: {a11y:?}");
    for (page, r) in a11y {
        assert_eq!(r["axe"], serde_json::json!([]), "{page}");
        assert_eq!(r["axeDark"], serde_json::json!([]), "{page}");
        assert_eq!(r["keyboard"]["missed"], serde_json::json!([]), "{page}");
    }

    // Nothing that failed published anything; the two that did have ended.
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let api: Value = serde_json::from_str(&api).unwrap();
    let mut names: Vec<&str> = api["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|st| {
            assert_eq!(st["state"], "ended", "{st}");
            st["name"].as_str().unwrap()
        })
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["screen1", "vp9kbd"]);
    gw.shutdown().await;
}
