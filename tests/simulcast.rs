//! Simulcast publishing (RFC 8853) from Chromium: three H.264 layers of one 1280x720 source
//! (rid h/m/l, `scaleResolutionDownBy` 1/2/4), encoded by Chromium's own encoder, become
//! three renditions without transcoding, and the test ladder's rung no layer covers (240p)
//! is transcoded from the top layer, with segments aligned across all four; over WHIP from
//! a plain client, and over WebSocket from the bundled publisher page.
//!
//! `tests/browser/simulcast.mjs` publishes over WHIP, waits for a master with the video
//! variants, then has hls.js (the bundled watch page) switch through the levels with
//! `nextLevel` (top, bottom, middle — the transcoded 240p —, top; a switch at a segment
//! boundary of the new level, which only plays through when segment N starts at the same
//! instant in every rendition), with no stall; then pins hls.js to the lowest level and
//! has Chromium pause that layer for 8 s (`setParameters`, encoding `l` inactive, as its
//! encoder does under congestion): the 180p playlist goes on as a still picture (no
//! `EXT-X-GAP`), and hls.js must keep playing through it (at least half the wall time) and
//! after it, with no fatal error. This test then reads what the gateway
//! published, with readers nobody here wrote (m3u8-rs, ffprobe):
//! - the master lists 1280x720, 640x360, 426x240 and 320x180, and `/api/streams` says each
//!   layer became a rendition, none was left out and 240p is transcoded;
//! - no layer's segment 0 holds x264's SEI (x264 writes "x264 - core" into its first
//!   IDR): the publisher's own H.264 is served; 240p's segment 0 holds it;
//! - segment N of every rendition starts at the same time, within one frame (1/30 s), for
//!   every N the four playlists share (the paused layer's within one of its repeat
//!   intervals: its boundaries during the pause are repeats), and every segment decodes.
//!
//! A second test publishes the same three layers as VP8 (`SIMULCAST_CODEC=vp8`): only the
//! top layer is decoded, the whole ladder transcoded from it, and hls.js plays it.
//!
//! Needs `deploy/install-browser-deps.sh` (chromium, `player/node_modules`), ffprobe and a
//! loopback-only network namespace (`deploy/netns-run.sh`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{
    TestGateway, assert_segments_aligned, parse_media, resolve, segment_starts, test_config,
};

/// The script stops itself before this (170 s); this is the backstop.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(220);

/// One frame at the publisher's 30 fps, plus a millisecond for the muxers' rounding.
const ONE_FRAME_S: f64 = 1.0 / 30.0 + 0.001;

/// How late a paused layer's rendition may start a segment: one interval of its repeats
/// (Chromium's paused lowest layer: 100 ms), plus a frame.
const PAUSED_REPEAT_S: f64 = 0.1 + ONE_FRAME_S;

/// The test ladder's rung no layer covers (360p and 180p are layers; 240 lines are 25 %
/// from either), transcoded from the top layer.
const TRANSCODED: &str = "240p";

/// Runs tests/browser/simulcast.mjs against `gw`, publishing `stream` in `codec` (h264,
/// vp8); returns its summary once every check of the script passed.
async fn publish_and_watch(gw: &TestGateway, stream: &str, codec: &str) -> serde_json::Value {
    let chromium = common::browser_preconditions(&format!("simulcast ({codec})"));
    let (code, summary) = common::run_browser_script(
        &chromium,
        "simulcast.mjs",
        &[&gw.base, stream],
        &[("SIMULCAST_CODEC", std::ffi::OsStr::new(codec))],
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
    summary
}

/// `(rid, rendition)` of each planned layer (`/api/streams` in the script's summary).
fn planned_layers(summary: &serde_json::Value) -> Vec<(&str, &str)> {
    summary["api"]["simulcast"]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no simulcast plan in /api/streams: {}", summary["api"]))
        .iter()
        .map(|l| (l["rid"].as_str().unwrap(), l["rendition"].as_str().unwrap()))
        .collect()
}

/// The first master with the video variants (the script's), parsed by m3u8-rs, and its
/// video sizes, smallest first.
fn master_sizes(summary: &serde_json::Value) -> (m3u8_rs::MasterPlaylist, Vec<(u64, u64)>) {
    let text = summary["master"].as_str().expect("a master in the summary");
    let master = m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .unwrap_or_else(|e| panic!("master does not parse: {e:?}\n{text}"));
    let mut sizes: Vec<(u64, u64)> = master
        .variants
        .iter()
        .filter_map(|v| v.resolution.map(|r| (r.width, r.height)))
        .collect();
    sizes.sort_unstable();
    (master, sizes)
}

/// Whether the first segment of a rendition holds x264's SEI (x264 writes "x264 - core …"
/// into its first IDR only): out of the playlist by the end of a test, but still served
/// (`retain_segments`). A rendition's first segment is number 0, or a later one when its
/// layer's first keyframe came after the others' second boundary (media/align.rs).
async fn x264_wrote_segment_0(gw: &TestGateway, stream: &str, rendition: &str) -> bool {
    let url = gw.url(&format!("/hls/{stream}/{rendition}/index.m3u8"));
    let (status, text) = gw.get_text(&url).await.unwrap();
    assert_eq!(status, 200, "{url}");
    let playlist = parse_media(&text).unwrap();
    assert!(
        playlist.segments.len() >= 4,
        "{rendition}: only {} segments\n{text}",
        playlist.segments.len()
    );
    let first = &playlist.segments[0].uri;
    let dash = first.rfind('-').expect("seg-<epoch>-<n>.m4s");
    for n in 0..=playlist.media_sequence {
        let seg = format!("{}{n}.m4s", &first[..=dash]);
        if let Ok(data) = gw.get_bytes(&resolve(&url, &seg)).await {
            return data.windows(4).any(|w| w == b"x264");
        }
    }
    panic!(
        "{rendition}: no segment from 0 to {} served",
        playlist.media_sequence
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_simulcast_layers_become_aligned_renditions_without_transcoding() {
    let mut cfg = test_config("");
    // Segment 0 stays downloadable to the end (it holds x264's SEI if a rung is encoded).
    cfg.hls.retain_segments = 60;
    // The default window in time (15 segments of 2 s): a level hls.js comes back to after
    // longer than the window is placed by estimate (config/hls.rs `window_segments`).
    cfg.hls.window_segments = 30;
    let gw = TestGateway::start(cfg).await;
    let summary = publish_and_watch(&gw, "sim", "h264").await;

    println!("the paused layer, as hls.js saw it: {}", summary["pause"]);

    // The layers as planned: each a rendition, none left out.
    let plan = &summary["api"]["simulcast"];
    let layers = planned_layers(&summary);
    assert_eq!(layers, [("h", "720p"), ("m", "360p"), ("l", "180p")]);
    assert_eq!(plan["left_out"].as_array().map(Vec::len), Some(0), "{plan}");
    assert_eq!(
        plan["transcoded"],
        serde_json::json!([TRANSCODED]),
        "{plan}"
    );
    // Alignment trouble (cuts alone, absent layers) is reported, not asserted: a browser's
    // encoder may answer a keyframe request on one layer only.
    assert!(plan["alignment"].is_array(), "{plan}");
    println!("alignment trouble: {}", plan["alignment"]);

    // The bundled publisher page, over WebSocket, simulcast by default: it offers three
    // layers (the script checks), each a rendition or reported left out. Chromium may hold
    // its top layer back on a busy machine (measured beside a busy loop: "h" had not come
    // when the plan's deadline passed, and the stream was planned from "m" and "l"), so
    // two planned layers pass; the master lists the planned and the transcoded renditions.
    let page = &summary["page"];
    let page_plan = &page["api"]["simulcast"];
    let page_layers = page_plan["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("the page's stream has no simulcast plan: {page}"));
    let left_out = page_plan["left_out"].as_array().map_or(0, Vec::len);
    let transcoded = page_plan["transcoded"].as_array().map_or(0, Vec::len);
    assert!(
        page_layers.len() >= 2 && page_layers.len() + left_out == 3,
        "{page}"
    );
    assert_eq!(
        page["variants"].as_array().map(Vec::len),
        Some(page_layers.len() + transcoded),
        "{page}"
    );

    // The master: the three layers' sizes and the transcoded rung's (240 lines at the top
    // layer's aspect ratio).
    let (_, sizes) = master_sizes(&summary);
    assert_eq!(
        sizes,
        [(320, 180), (426, 240), (640, 360), (1280, 720)],
        "{}",
        summary["master"]
    );

    // Every layer's segments: the publisher's own H.264; the transcoded rung's, x264's.
    let mut renditions: Vec<&str> = layers.iter().map(|(_, r)| *r).collect();
    renditions.push(TRANSCODED);
    for rendition in &renditions {
        let x264 = x264_wrote_segment_0(&gw, "sim", rendition).await;
        if *rendition == TRANSCODED {
            assert!(
                x264,
                "{rendition}'s segment 0 holds no x264 SEI: not encoded here?"
            );
        } else {
            assert!(
                !x264,
                "{rendition}'s segment 0 was encoded by x264, not passed through"
            );
        }
    }
    // Decodable, each segment starting with a keyframe, segment N at the same instant in
    // every rendition.
    let starts = segment_starts(&gw, "sim", &renditions).await;
    let seqs: Vec<u64> = starts["720p"].keys().copied().collect();
    // The renditions whose layer never paused: within one frame.
    let mut playing = starts.clone();
    playing.remove("180p");
    let (compared, worst) = assert_segments_aligned(&playing, seqs.clone(), ONE_FRAME_S);
    assert!(
        compared >= 4,
        "only {compared} segment numbers in common: {starts:?}"
    );
    // The paused layer's: while it is paused its boundaries are repeats of its last
    // keyframe, which come at its own frame interval (Chromium's paused lowest layer: every
    // 100 ms), so its segment can start up to that much after the others' (CI: 73 ms).
    // Known, not fixed: moving the repeats onto the others' instant made things worse
    // (BENCHMARKS.md, "The wait for a part as a layer stops"). A whole segment off is
    // still a failure.
    let (_, paused_worst) = assert_segments_aligned(&starts, seqs, PAUSED_REPEAT_S);
    println!(
        "{compared} segment numbers compared; largest start spread {worst:.4} s \
         (with the paused layer's rendition: {paused_worst:.4} s)"
    );
    gw.shutdown().await;
}

/// VP8 simulcast from Chromium (the same three layers, VP8): HLS players need H.264, so the
/// gateway decodes the top layer only and transcodes the whole ladder from it. The plan
/// names the top layer (the one that sent the most bytes: VP8 says no size in-band before
/// decoding) and leaves the other two out; every rendition is x264's; hls.js plays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_vp8_simulcast_is_decoded_from_the_top_layer_and_transcoded() {
    let mut cfg = test_config("");
    cfg.hls.retain_segments = 60;
    let gw = TestGateway::start(cfg).await;
    let summary = publish_and_watch(&gw, "vp8sim", "vp8").await;
    println!("hls.js on the VP8 simulcast stream: {}", summary["watch"]);

    let offer = summary["publish"]["offerSimulcast"].as_str().unwrap_or("");
    assert!(offer.contains("h;m;l"), "offer: {}", summary["publish"]);
    assert_eq!(
        summary["api"]["ingest"]["video_codec"], "VP8",
        "{}",
        summary["api"]
    );
    let plan = &summary["api"]["simulcast"];
    assert_eq!(planned_layers(&summary), [("h", "layer_h")], "{plan}");
    let mut left_out: Vec<&str> = plan["left_out"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    left_out.sort_unstable();
    assert_eq!(left_out, ["l", "m"], "{plan}");

    // The test ladder, transcoded from the 1280x720 top layer.
    let (master, sizes) = master_sizes(&summary);
    assert_eq!(
        sizes,
        [(320, 180), (426, 240), (640, 360)],
        "{}",
        summary["master"]
    );
    assert!(
        master
            .variants
            .iter()
            .all(|v| v.codecs.as_deref().is_some_and(|c| c.starts_with("avc1."))),
        "{}",
        summary["master"]
    );
    let renditions = ["360p", "240p", "180p"];
    for rendition in renditions {
        assert!(
            x264_wrote_segment_0(&gw, "vp8sim", rendition).await,
            "{rendition}'s segment 0 holds no x264 SEI"
        );
    }
    let starts = segment_starts(&gw, "vp8sim", &renditions).await;
    let seqs: Vec<u64> = starts["360p"].keys().copied().collect();
    let (compared, worst) = assert_segments_aligned(&starts, seqs, ONE_FRAME_S);
    assert!(compared >= 4, "only {compared} segment numbers in common");
    println!("{compared} segment numbers compared; largest start spread {worst:.4} s");
    gw.shutdown().await;
}
