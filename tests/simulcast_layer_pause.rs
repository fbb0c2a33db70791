//! A simulcast layer that stops and comes back (a browser's encoder drops its lowest layer
//! under congestion and resumes it later): the other layers' renditions go on advancing
//! meanwhile, the paused one stays on the clock (a still picture: repeats of its last
//! keyframe) so its segment numbers stay in step, and when it comes back its segments start
//! where the others' segments of the same number start (ABR switching needs segment N to
//! begin at the same instant in every rendition). No playlist lists the pause as
//! `EXT-X-GAP`: with the gap in the paused layer's playlist alone hls.js stalled before
//! switching level (tests/simulcast.rs), with the still picture it plays on. Found by
//! this test: the repeats counted as keyframes "alone" and the paused layer's segment was
//! cut 0.665 s early (align.rs). The test ladder's 240p rung, which no layer covers, is
//! transcoded from the top layer: it goes on too, and its segments start where the
//! layers' do, its keyframes forced where theirs are.
//!
//! Our own publisher, because a browser cannot be told to pause one layer at a chosen
//! instant and for a chosen time: one encoder (`publisher::FeedSource`) encodes a 1280x720
//! picture three times (full, ½, ¼ size; the same frames and GOP, so the same pictures are
//! keyframes) and one WebRTC peer sends them as one video track with three rid encodings
//! (h, m, l; RFC 8853), each with its SSRC and the MID and RtpStreamId header extensions,
//! as Chromium does. Readers nobody here wrote check the result: m3u8-rs parses the
//! playlists, ffprobe reads the segments' first frames.
//!
//! Needs a loopback-only network namespace (`deploy/netns-run.sh`) and ffprobe.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::ll::LlPlaylist;
use common::publisher::{FeedSource, Publisher, PublisherOptions};
use common::{
    TestGateway, assert_segments_aligned, plan_renditions, segment_starts, stream_summary,
    test_config,
};
use gstreamer as gst;
use gstreamer::prelude::*;

/// One frame at the publisher's 30 fps, plus a millisecond for the muxers' rounding.
const ONE_FRAME_S: f64 = 1.0 / 30.0 + 0.001;

/// The renditions the three layers become.
const RENDITIONS: [&str; 3] = ["720p", "360p", "180p"];

/// The test ladder's rung no layer covers (360p and 180p are layers; 240 lines are 25 %
/// from either), transcoded from the top layer.
const TRANSCODED: &str = "240p";

/// Follows a rendition's playlist as an LL-HLS player does, with blocking reloads for the
/// next part (HLS2 §6.2.5.2), until `until`; returns the longest time between two new
/// parts and when (seconds since the follower started) that wait ended.
async fn follow_parts(gw: &TestGateway, rendition: &str, until: Instant) -> (Duration, f64) {
    let base = gw.url(&format!("/hls/sc/{rendition}/index.m3u8"));
    let started = Instant::now();
    let (mut last_new, mut longest) = (Instant::now(), (Duration::ZERO, 0.0));
    let mut next: Option<(u64, usize)> = None;
    while Instant::now() < until {
        let url = match next {
            Some((msn, part)) => format!("{base}?_HLS_msn={msn}&_HLS_part={part}"),
            None => base.clone(),
        };
        let (status, text) = gw.get_text(&url).await.unwrap();
        assert_eq!(status, 200, "{url}: {text}");
        let at = Some(LlPlaylist::parse(&text).last_part())
            .flatten()
            .map(|(msn, part)| (msn, part + 1));
        if at != next {
            let now = Instant::now();
            if next.is_some() && now - last_new > longest.0 {
                longest = (now - last_new, (now - started).as_secs_f64());
            }
            (last_new, next) = (now, at);
        }
    }
    longest
}

/// Segments published so far per rendition (`/api/streams`).
async fn published(gw: &TestGateway) -> BTreeMap<String, u64> {
    let s = stream_summary(gw, "sc").await;
    s["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["segments"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_layer_stalls_no_other_and_comes_back_aligned() {
    let mut cfg = test_config("");
    // The feed ignores keyframe requests (one encoder, any number of peers) and sends a
    // keyframe every 2 s: 1.8 s segments are cut at every one of them.
    cfg.hls.segment_duration = Duration::from_millis(1800);
    cfg.validate().unwrap();
    let gw = TestGateway::start(cfg).await;
    let mut opts = PublisherOptions::whip(&gw.whip_url("sc")).with_format(1280, 720, 30);
    opts.bitrate_kbps = 1500;
    let source = FeedSource::new(&opts, 3).unwrap();
    opts.feed = Some(source.feed.clone());
    source.pipeline.set_state(gst::State::Playing).unwrap();
    let publisher = Publisher::start(opts).await.unwrap();

    gw.wait_master("sc", 3, Duration::from_secs(20))
        .await
        .unwrap();
    let plan = stream_summary(&gw, "sc").await["simulcast"].clone();
    assert_eq!(plan_renditions(&plan, "layers"), RENDITIONS, "{plan}");
    assert_eq!(
        plan["transcoded"],
        serde_json::json!([TRANSCODED]),
        "{plan}"
    );

    // Every layer under way.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = published(&gw).await;
        if RENDITIONS
            .iter()
            .all(|r| n.get(*r).copied().unwrap_or(0) >= 2)
        {
            break;
        }
        assert!(Instant::now() < deadline, "layers not under way: {n:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The lowest layer stops for 8 s: four keyframes of the others. Meanwhile a player
    // follows the paused layer's rendition: how long does it wait for a part?
    let follower = follow_parts(&gw, "180p", Instant::now() + Duration::from_secs(9));
    let pause = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        source.pause_layer(2, true);
        let before = published(&gw).await;
        tokio::time::sleep(Duration::from_secs(8)).await;
        (before, published(&gw).await)
    };
    let ((longest, when), (before, during)) = tokio::join!(follower, pause);
    println!(
        "180p: longest wait for a part {} ms, ending {when:.2} s into the follow (paused at 1 s)",
        longest.as_millis()
    );
    // While `livesync` waits before repeating the last keyframe, the rendition publishes no
    // part. hls.js gives a blocking playlist reload max(3 × PART-TARGET, 0.8 ×
    // TARGETDURATION) before a `levelLoadTimeOut`: 1.6 s with this test's 1.8 s segments
    // (0.8 s with 1 s segments, where hls.js stalled once as Chromium's layer stopped:
    // tests/simulcast.rs). Measured: 748 ms (`livesync` waiting 400 ms, elements.rs).
    assert!(
        longest < Duration::from_millis(1600),
        "a player on 180p waited {} ms for a part as the layer stopped",
        longest.as_millis()
    );
    for r in ["720p", "360p", TRANSCODED] {
        assert!(
            during[r] >= before[r] + 3,
            "{r} did not go on while 180p was paused: {before:?} → {during:?}"
        );
    }
    println!("segments published before the pause {before:?}, after 8 s of it {during:?}");
    // The paused layer's rendition stays on the clock too (repeats of its last keyframe,
    // a still picture), so its segment numbers stay in step with the others'.
    assert!(
        during["180p"] >= before["180p"] + 3,
        "180p's segments stopped with its layer: {before:?} → {during:?}"
    );

    // No rendition shows the pause as a gap: the paused one is a still picture.
    for r in RENDITIONS.into_iter().chain([TRANSCODED]) {
        let url = gw.url(&format!("/hls/sc/{r}/index.m3u8"));
        let (_, text) = gw.get_text(&url).await.unwrap();
        let pl = LlPlaylist::parse(&text);
        let mut gaps: Vec<u64> = pl
            .segments
            .iter()
            .filter(|s| s.gap)
            .map(|s| s.msn)
            .collect();
        gaps.extend(pl.parts.iter().filter(|p| p.gap).map(|p| p.msn));
        assert!(gaps.is_empty(), "{r} lists gaps {gaps:?}:\n{text}");
    }

    // It comes back.
    source.pause_layer(2, false);
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let n = published(&gw).await;
        if n["180p"] >= during["180p"] + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "180p did not come back within 12 s of its layer: {during:?} → {n:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Two more segments everywhere, then what every playlist lists.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // `/api/streams` names the renditions whose boundaries were not always common: the
    // paused layer at most (absent at some boundaries), never the others.
    let plan = stream_summary(&gw, "sc").await["simulcast"].clone();
    let troubled = plan_renditions(&plan, "alignment");
    println!("alignment trouble: {}", plan["alignment"]);
    assert!(
        troubled.iter().all(|r| *r == "180p"),
        "renditions other than the paused one lost alignment: {plan}"
    );

    // Every rendition, the one transcoded from the top layer too.
    let mut all = RENDITIONS.to_vec();
    all.push(TRANSCODED);
    let starts = segment_starts(&gw, "sc", &all).await;
    // The segments 180p published after the pause, compared by number with the others'.
    let resumed: Vec<u64> = starts["180p"]
        .keys()
        .copied()
        .filter(|seq| *seq >= during["180p"])
        .collect();
    let (compared, _) = assert_segments_aligned(&starts, resumed, ONE_FRAME_S);
    assert!(
        compared >= 2,
        "only {compared} segments of 180p after the pause share a number with the others: \
         {starts:?} (180p had published {} before its layer came back)",
        during["180p"]
    );

    publisher.stop().await.unwrap();
    let _ = source.pipeline.set_state(gst::State::Null);
    gw.shutdown().await;
}
