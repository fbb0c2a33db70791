//! Simulcast publishing (RFC 8853) from Chromium: three H.264 layers of one 1280x720 source
//! (rid h/m/l, `scaleResolutionDownBy` 1/2/4), encoded by Chromium's own encoder, become
//! three renditions without transcoding, with segments aligned across them; over WHIP from
//! a plain client, and over WebSocket from the bundled publisher page.
//!
//! `tests/browser/simulcast.mjs` publishes over WHIP, waits for a master with three video
//! variants, then has hls.js (the bundled watch page) switch up and down through every
//! level with `nextLevel` (a switch at a segment boundary of the new level, which only
//! plays through when segment N starts at the same instant in every rendition), with no
//! stall. This test then reads what the gateway published, with readers nobody here wrote
//! (m3u8-rs, ffprobe):
//! - the master lists 1280x720, 640x360 and 320x180, and `/api/streams` says each layer
//!   became a rendition and none was left out;
//! - no segment holds x264's SEI (every transcoded rung's IDR carries "x264 - core"): the
//!   publisher's own H.264 is served;
//! - segment N of every rendition starts at the same time, within one frame (1/30 s), for
//!   every N the three playlists share, and every segment decodes.
//!
//! Needs `deploy/install-browser-deps.sh` (chromium, `player/node_modules`), ffprobe and a
//! loopback-only network namespace (`deploy/netns-run.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestGateway, parse_media, probe_rendition, resolve, test_config};

/// The script stops itself before this (170 s); this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(220);

/// One frame at the publisher's 30 fps, plus a millisecond for the muxers' rounding.
const ONE_FRAME_S: f64 = 1.0 / 30.0 + 0.001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_simulcast_layers_become_aligned_renditions_without_transcoding() {
    let chromium = common::browser_preconditions("simulcast");
    let gw = TestGateway::start(test_config("")).await;
    let (code, summary) = common::run_browser_script(
        &chromium,
        "simulcast.mjs",
        &[&gw.base, "sim"],
        &[],
        SCRIPT_TIMEOUT,
    )
    .await;
    assert_ne!(
        code,
        Some(2),
        "browser setup failed: {}",
        summary["setupError"]
    );
    assert_eq!(
        code,
        Some(0),
        "the browser's checks failed: {}",
        common::script_failures(&summary)
    );

    // The layers as planned: each a rendition, none left out.
    let plan = &summary["api"]["simulcast"];
    let layers: Vec<(&str, &str)> = plan["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no simulcast plan in /api/streams: {}", summary["api"]))
        .iter()
        .map(|l| (l["rid"].as_str().unwrap(), l["rendition"].as_str().unwrap()))
        .collect();
    assert_eq!(layers, [("h", "720p"), ("m", "360p"), ("l", "180p")]);
    assert_eq!(plan["left_out"].as_array().map(Vec::len), Some(0), "{plan}");

    // The bundled publisher page, over WebSocket, simulcast by default: three layers, each
    // a rendition.
    let page = &summary["page"];
    let page_layers = page["api"]["simulcast"]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("the page's stream has no simulcast plan: {page}"));
    assert_eq!(page_layers.len(), 3, "{page}");
    assert_eq!(page["variants"].as_array().map(Vec::len), Some(3), "{page}");

    // The master: the three layers' sizes.
    let master_text = summary["master"].as_str().expect("a master in the summary");
    let master = m3u8_rs::parse_master_playlist_res(master_text.as_bytes())
        .unwrap_or_else(|e| panic!("master does not parse: {e:?}\n{master_text}"));
    let mut sizes: Vec<(u64, u64)> = master
        .variants
        .iter()
        .filter_map(|v| v.resolution.map(|r| (r.width, r.height)))
        .collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        [(320, 180), (640, 360), (1280, 720)],
        "{master_text}"
    );

    // Every rendition's segments: decodable, the publisher's own H.264, aligned.
    let mut starts: BTreeMap<&str, BTreeMap<u64, f64>> = BTreeMap::new();
    for (_, rendition) in &layers {
        let url = gw.url(&format!("/hls/sim/{rendition}/index.m3u8"));
        let (status, text) = gw.get_text(&url).await.unwrap();
        assert_eq!(status, 200, "{url}");
        let playlist = parse_media(&text).unwrap();
        assert!(
            playlist.segments.len() >= 4,
            "{rendition}: only {} segments\n{text}",
            playlist.segments.len()
        );
        for seg in &playlist.segments {
            let data = gw.get_bytes(&resolve(&url, &seg.uri)).await.unwrap();
            assert!(
                !data.windows(4).any(|w| w == b"x264"),
                "{rendition} segment {} was encoded by x264, not passed through",
                seg.uri
            );
        }
        let probes = probe_rendition(&gw, &url, &playlist, true)
            .await
            .unwrap_or_else(|e| panic!("{rendition}: {e:#}"));
        let firsts = probes
            .into_iter()
            .map(|(seq, p)| {
                let (pts, key) = p.frames.first().copied().unwrap_or((f64::NAN, false));
                assert!(
                    key,
                    "{rendition} segment {seq} does not start with a keyframe"
                );
                (seq, pts)
            })
            .collect();
        starts.insert(rendition, firsts);
    }
    let mut compared = 0;
    let mut worst = 0.0f64;
    let seqs: Vec<u64> = starts["720p"].keys().copied().collect();
    for seq in seqs {
        let at: Vec<f64> = starts
            .values()
            .filter_map(|m| m.get(&seq).copied())
            .collect();
        if at.len() < starts.len() {
            continue;
        }
        let spread = at.iter().copied().fold(f64::MIN, f64::max)
            - at.iter().copied().fold(f64::MAX, f64::min);
        worst = worst.max(spread);
        assert!(
            spread <= ONE_FRAME_S,
            "segment {seq} starts {spread:.3} s apart across renditions: {:?}",
            starts
                .iter()
                .map(|(r, m)| (r, m.get(&seq)))
                .collect::<Vec<_>>()
        );
        compared += 1;
    }
    assert!(
        compared >= 4,
        "only {compared} segment numbers in common: {starts:?}"
    );
    println!("{compared} segment numbers compared; largest start spread {worst:.4} s");
    gw.shutdown().await;
}
