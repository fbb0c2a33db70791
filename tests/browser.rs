//! Browser end to end: Debian's Chromium publishes through whipcast's own pages
//! (`/publish/`: WHIP + H.264, then WebSocket + VP8, fake camera and microphone) and hls.js
//! plays the result (`/watch/`). The browser side is `tests/browser/publish_and_play.mjs`
//! (playwright-core driving `/usr/bin/chromium`); this test serves whipcast in-process on
//! loopback, runs the script and checks the JSON it reports.
//!
//! Needs `deploy/install-browser-deps.sh` (chromium, `player/node_modules`), which
//! `make test` runs, and a loopback-only network namespace (`deploy/netns-run.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{TestGateway, test_config};
use serde_json::Value;

/// The script stops itself after 170 s; this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_over_whip_and_websocket_and_hlsjs_plays() {
    let chromium = common::browser_preconditions("browser");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

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

    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/publish_and_play.mjs"))
        .arg(&gw.base)
        .env("CHROMIUM", &chromium)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`node` runs (Node.js >= 20)");
    let out = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("browser script still running after {SCRIPT_TIMEOUT:?}"))
        .expect("browser script output");
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("---- browser script log ----\n{stderr}----");
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let summary: Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "no JSON summary from the script ({e}); exit {:?}; stdout:\n{stdout}",
            out.status
        )
    });
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    println!(
        "browser script: {:?} in {:.1}s",
        out.status.code(),
        took.as_secs_f64()
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "browser script failed: {}",
        failures(&summary)
    );
    assert_eq!(summary["ok"], true);

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

fn failures(summary: &Value) -> String {
    let mut out: Vec<String> = Vec::new();
    if let Some(f) = summary["failures"].as_array() {
        out.extend(f.iter().map(|x| x.to_string()));
    }
    if let Some(e) = summary["setupError"].as_str() {
        out.push(e.to_string());
    }
    for c in summary["cases"].as_array().into_iter().flatten() {
        for f in c["failures"].as_array().into_iter().flatten() {
            out.push(format!("{}: {f}", c["stream"]));
        }
    }
    out.join("; ")
}
