//! One stream's playlist load does not delay another stream's parts: two publishers at
//! once, then 32 clients hammer the first stream's playlists (full, delta, blocking
//! reloads, the multivariant playlist) while the second's parts are timed as a player
//! sees them, through blocking reloads. The store keeps one lock per stream, so the
//! second stream's parts arrive on the same cadence with or without the load.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::ll::LlPlaylist;
use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, resolve, test_config};

/// The gaps between successive parts of `playlist_url` as blocking reloads deliver them,
/// for `span`.
async fn part_gaps(gw: &TestGateway, playlist_url: &str, span: Duration) -> Vec<Duration> {
    let (_, text) = gw.get_text(playlist_url).await.unwrap();
    let mut next = LlPlaylist::parse(&text).last_part().unwrap();
    let mut gaps = Vec::new();
    let mut last = Instant::now();
    let end = Instant::now() + span;
    while Instant::now() < end {
        // The part after the last one listed: the next segment's first when the last
        // listed part closed its segment is also fine (the server answers either).
        let (msn, part) = (next.0, next.1 + 1);
        let url = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
        let (code, text) = gw.get_text(&url).await.unwrap();
        assert_eq!(code, 200, "{url}: {text}");
        let now = Instant::now();
        let p = LlPlaylist::parse(&text);
        let got = p.last_part().unwrap();
        if got != next {
            gaps.push(now - last);
            last = now;
            next = got;
        }
    }
    gaps
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_streams_playlist_load_does_not_delay_anothers_parts() {
    let gw = Arc::new(TestGateway::start(test_config("")).await);
    let busy =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("busy")).with_format(320, 180, 30))
            .await
            .expect("busy publisher");
    let calm =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("calm")).with_format(320, 180, 30))
            .await
            .expect("calm publisher");
    let busy_master = gw
        .wait_master("busy", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let calm_master = gw
        .wait_master("calm", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let busy_media = resolve(&gw.master_url("busy"), &busy_master.variants[0].uri);
    let calm_media = resolve(&gw.master_url("calm"), &calm_master.variants[0].uri);

    let before = part_gaps(&gw, &calm_media, Duration::from_secs(6)).await;

    // 32 clients on the busy stream's playlists, as fast as they are answered.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for i in 0..32 {
        let (gw, stop, served) = (gw.clone(), stop.clone(), served.clone());
        let (media, master) = (busy_media.clone(), gw.master_url("busy"));
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let url = match i % 4 {
                    0 => master.clone(),
                    1 => media.clone(),
                    2 => format!("{media}?_HLS_skip=YES"),
                    _ => {
                        let (_, text) = gw.get_text(&media).await.unwrap();
                        let (msn, part) = LlPlaylist::parse(&text).last_part().unwrap();
                        format!("{media}?_HLS_msn={msn}&_HLS_part={}", part + 1)
                    }
                };
                if let Ok((200, _)) = gw.get_text(&url).await {
                    served.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let during = part_gaps(&gw, &calm_media, Duration::from_secs(6)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        let _ = t.await;
    }
    let n = served.load(Ordering::Relaxed);
    let (b95, d95) = (percentile(&before, 0.95), percentile(&during, 0.95));
    let (bmax, dmax) = (percentile(&before, 1.0), percentile(&during, 1.0));
    eprintln!(
        "calm stream's part gaps: before p95 {b95:?} max {bmax:?} ({} parts); during {n} busy-stream playlist requests: p95 {d95:?} max {dmax:?} ({} parts)",
        before.len(),
        during.len()
    );
    assert!(n > 500, "the busy stream was loaded: {n} requests answered");
    assert!(
        during.len() >= 20,
        "the calm stream kept publishing: {during:?}"
    );
    // Within noise: the same cadence (parts of ~200 ms), a generous margin for the CPU the
    // load itself takes on a 2-core machine.
    assert!(
        d95 <= b95 + Duration::from_millis(250),
        "calm stream delayed by the busy one: p95 {d95:?} vs {b95:?} before"
    );
    assert!(
        dmax <= Duration::from_millis(1000),
        "a part came {dmax:?} after the previous"
    );

    assert_eq!(busy.stop().await.unwrap(), 200);
    assert_eq!(calm.stop().await.unwrap(), 200);
    Arc::try_unwrap(gw).ok().unwrap().shutdown().await;
}
