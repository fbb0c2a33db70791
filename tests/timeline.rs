//! A publisher whose network stalls or loses packets: the timeline of what whipcast
//! publishes, per rendition, against the wall clock.
//!
//! Needs a loopback-only network namespace and nftables (`nft`), as `make test` runs:
//! `bash deploy/netns-run.sh cargo test --test timeline -- --test-threads=1`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::ll::LlPlaylist;
use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, resolve, test_config};

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn parse_pdt(s: &str) -> f64 {
    let t = chrono::DateTime::parse_from_rfc3339(s).unwrap();
    t.timestamp_millis() as f64 / 1000.0
}

// ---- nftables: loss and stalls of the UDP that reaches whipcast ----------------------------

/// An nftables table of this test in the test's own network namespace, dropping UDP to
/// whipcast's ICE port range (publisher → whipcast: RTP, RTCP, STUN, DTLS).
struct Firewall {
    ports: (u16, u16),
}

const NFT_TABLE: &str = "whipcast_timeline";

fn nft(args: &[&str]) {
    let out = Command::new("nft")
        .args(args)
        .output()
        .expect("`nft` runs (Debian package nftables: deploy/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Firewall {
    fn new(ports: (u16, u16)) -> Firewall {
        // Never touch the firewall of a real network namespace.
        let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
            .unwrap()
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
            .collect();
        assert_eq!(
            interfaces,
            ["lo"],
            "run this test in a loopback-only network namespace: \
             `bash deploy/netns-run.sh cargo test --test timeline`"
        );
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", NFT_TABLE])
            .output();
        nft(&["add", "table", "inet", NFT_TABLE]);
        nft(&[
            "add",
            "chain",
            "inet",
            NFT_TABLE,
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ]);
        Firewall { ports }
    }

    fn range(&self) -> String {
        format!("{}-{}", self.ports.0, self.ports.1)
    }

    /// Drops every packet to whipcast's media ports.
    fn stall(&self) {
        nft(&[
            "add",
            "rule",
            "inet",
            NFT_TABLE,
            "input",
            "udp",
            "dport",
            &self.range(),
            "drop",
        ]);
    }

    /// Drops `percent` % of the packets to whipcast's media ports, at random.
    fn loss(&self, percent: u32) {
        nft(&[
            "add",
            "rule",
            "inet",
            NFT_TABLE,
            "input",
            "udp",
            "dport",
            &self.range(),
            "numgen",
            "random",
            "mod",
            "100",
            "<",
            &percent.to_string(),
            "drop",
        ]);
    }

    /// Lets everything through again.
    fn clear(&self) {
        nft(&["flush", "chain", "inet", NFT_TABLE, "input"]);
    }
}

impl Drop for Firewall {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", NFT_TABLE])
            .output();
    }
}

/// A free-looking range of 10 UDP ports for whipcast's peers.
fn port_range() -> (u16, u16) {
    let min = 40_000 + (rand::random::<u16>() % 2_000) * 10;
    (min, min + 9)
}

// ---- what every rendition's playlist lists, seen over time --------------------------------

/// One part (or, `part: None`, one complete segment) as first seen in a playlist.
#[derive(Debug, Clone)]
struct Seen {
    gap: bool,
    /// `EXT-X-PROGRAM-DATE-TIME` of its first sample (Unix seconds).
    pdt: f64,
    duration: f64,
    /// When it was first listed (Unix seconds).
    at: f64,
}

#[derive(Default)]
struct Timeline {
    /// (rendition, msn, part) → first sighting.
    items: BTreeMap<(String, u64, Option<usize>), Seen>,
    /// The furthest a listed part or segment ended after the moment it was served, and
    /// where (seconds, rendition, msn, part).
    ahead: Option<(f64, String, u64, Option<usize>)>,
    polls: u64,
}

/// Polls every rendition's (full) playlist every 100 ms until `stop`.
fn record(
    gw: &TestGateway,
    urls: Vec<(String, String)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Timeline>>) {
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    let t = Arc::clone(&timeline);
    let http = gw.http.clone();
    let task = tokio::spawn(async move {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for (name, url) in &urls {
                let Ok(r) = http.get(url).send().await else {
                    continue;
                };
                let Ok(text) = r.text().await else { continue };
                let served = unix(SystemTime::now());
                if !text.starts_with("#EXTM3U") {
                    continue;
                }
                let pl = LlPlaylist::parse(&text);
                let mut tl = t.lock().unwrap();
                tl.polls += 1;
                let mut note = |key: (String, u64, Option<usize>), seen: Seen| {
                    let end = seen.pdt + seen.duration;
                    if tl.ahead.as_ref().is_none_or(|a| end - served > a.0) {
                        tl.ahead = Some((end - served, key.0.clone(), key.1, key.2));
                    }
                    tl.items.entry(key).or_insert(seen);
                };
                // PDTs of the open segment and of complete ones: parts follow them.
                let mut pdt_of: BTreeMap<u64, f64> = BTreeMap::new();
                for s in &pl.segments {
                    if let Some(p) = &s.pdt {
                        pdt_of.insert(s.msn, parse_pdt(p));
                    }
                }
                // The open segment's PDT precedes its first part; the parser keeps only
                // complete segments' PDTs, so read it from the text.
                if let Some(open) = open_segment_pdt(&text, &pl) {
                    pdt_of.insert(open.0, open.1);
                }
                for s in &pl.segments {
                    let Some(&pdt) = pdt_of.get(&s.msn) else {
                        continue;
                    };
                    note(
                        (name.clone(), s.msn, None),
                        Seen {
                            gap: s.gap,
                            pdt,
                            duration: s.duration,
                            at: served,
                        },
                    );
                }
                let mut offset: BTreeMap<u64, (usize, f64)> = BTreeMap::new();
                for p in &pl.parts {
                    let Some(&pdt) = pdt_of.get(&p.msn) else {
                        continue;
                    };
                    let o = offset.entry(p.msn).or_insert((0, 0.0));
                    let (idx, start) = *o;
                    o.0 += 1;
                    o.1 += p.duration;
                    note(
                        (name.clone(), p.msn, Some(idx)),
                        Seen {
                            gap: p.gap,
                            pdt: pdt + start,
                            duration: p.duration,
                            at: served,
                        },
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (task, timeline)
}

/// `(msn, pdt)` of the open segment (parts after the last `EXTINF`), if any.
fn open_segment_pdt(text: &str, pl: &LlPlaylist) -> Option<(u64, f64)> {
    let last_complete = pl.segments.last().map(|s| s.msn);
    let open_msn = pl.parts.last().map(|p| p.msn)?;
    if Some(open_msn) == last_complete {
        return None;
    }
    let tail = match text.rfind("#EXTINF:") {
        Some(i) => &text[i..],
        None => text,
    };
    let pdt = tail
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))?;
    Some((open_msn, parse_pdt(pdt)))
}

/// Prints every rendition's segments: sequence number, GAP, duration, media start and end
/// (PDT) and when it was first listed whole, relative to `t0`.
fn print_timeline(tl: &Timeline, t0: f64) {
    let mut current = String::new();
    for ((name, msn, part), s) in &tl.items {
        if part.is_some() {
            continue;
        }
        if *name != current {
            current = name.clone();
            println!("-- {name}: msn  gap  dur   media[start, end)   listed  (listed − end)");
        }
        println!(
            "   {msn:>4} {:>4} {:5.3} [{:7.3}, {:7.3})  {:7.3}  {:+6.3}",
            if s.gap { "GAP" } else { "" },
            s.duration,
            s.pdt - t0,
            s.pdt + s.duration - t0,
            s.at - t0,
            s.at - (s.pdt + s.duration),
        );
    }
    if let Some((ahead, name, msn, part)) = &tl.ahead {
        println!(
            "furthest ahead of the wall clock when served: {ahead:+.3} s ({name} {msn}.{part:?}); {} polls",
            tl.polls
        );
    }
}

/// Every rendition's media playlist URL, by name, from the multivariant playlist.
async fn rendition_urls(gw: &TestGateway, stream: &str) -> Vec<(String, String)> {
    let master = gw
        .wait_master(stream, 1, Duration::from_secs(30))
        .await
        .unwrap();
    let mut urls: Vec<(String, String)> = master
        .variants
        .iter()
        .map(|v| v.uri.clone())
        .chain(master.alternatives.iter().filter_map(|a| a.uri.clone()))
        .map(|uri| {
            let name = uri.split('/').next().unwrap().to_string();
            (name, resolve(&gw.master_url(stream), &uri))
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// How the publisher's media stops for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stall {
    /// Every packet to whipcast is dropped (nftables): RTP resumes with the live edge.
    Drop,
    /// Nothing reaches whipcast, and what the publisher sent meanwhile arrives in one burst
    /// at the end, with its original timestamps (a stopped and continued publisher process,
    /// a link that buffered through the outage).
    Burst,
}

/// The configuration of these tests: the test ladder with the passthrough rung, ICE on
/// `ports`.
fn config(ports: (u16, u16), extra: &str) -> whipcast::Config {
    let mut cfg = test_config(&format!(
        "[ice]\nport_min = {}\nport_max = {}\n{extra}",
        ports.0, ports.1
    ));
    if let Some(l) = cfg.media.ladder.as_mut() {
        l.source.enabled = true;
    }
    cfg
}

/// Downloads init + segments `seqs` of a rendition and decodes them with ffmpeg; returns
/// what ffmpeg printed at level `error` (nothing when they decode cleanly).
async fn decode_errors(gw: &TestGateway, url: &str, seqs: &[u64]) -> String {
    let text = gw.get_text(url).await.unwrap().1;
    let pl = LlPlaylist::parse(&text);
    let mut data = gw
        .get_bytes(&resolve(url, pl.map_uri.as_ref().unwrap()))
        .await
        .unwrap();
    // Segments stay downloadable for a while after they leave the window: by name
    // (`seg-EPOCH-N.m4s`, the epoch of `init-EPOCH.mp4`).
    let map = pl.map_uri.as_ref().unwrap();
    let epoch = map
        .trim_start_matches("init-")
        .trim_end_matches(".mp4")
        .to_string();
    for seq in seqs {
        let uri = format!("seg-{epoch}-{seq}.m4s");
        data.extend(gw.get_bytes(&resolve(url, &uri)).await.unwrap());
    }
    let path = std::env::temp_dir().join(format!(
        "whipcast-timeline-{:016x}.mp4",
        rand::random::<u64>()
    ));
    std::fs::write(&path, &data).unwrap();
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    let mut errors = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() && errors.is_empty() {
        errors = format!("ffmpeg exit {:?}", out.status);
    }
    errors
}

/// What the timeline must show after a stall of `stall_for` that began at `from` (Unix
/// seconds): checked per rendition, then across renditions.
fn check_timeline(tl: &Timeline, from: f64, stall_for: Duration) -> Vec<u64> {
    // 1. Nothing listed before its media ended (PDT never ahead of the wall clock): a part
    //    or segment is listed once complete, a few ms of clock and rounding allowed.
    let (ahead, name, msn, part) = tl.ahead.clone().unwrap();
    assert!(
        ahead <= 0.05,
        "{name} {msn}.{part:?} was listed {ahead:.3} s before its media ended"
    );
    let mut renditions: BTreeMap<&str, Vec<(u64, &Seen)>> = BTreeMap::new();
    for ((name, msn, part), seen) in &tl.items {
        if part.is_none() {
            renditions.entry(name).or_default().push((*msn, seen));
        }
    }
    let mut gap_sets = Vec::new();
    for (name, segs) in &renditions {
        // 2. No burst: from the stall on, at most 2 segments completed within any 0.5 s
        //    (one per segment duration is the cadence; one more while catching up).
        let times: Vec<f64> = segs
            .iter()
            .map(|(_, s)| s.at)
            .filter(|&t| t >= from)
            .collect();
        for (i, t) in times.iter().enumerate() {
            let within = times[i..].iter().take_while(|&&u| u - t < 0.5).count();
            assert!(
                within <= 2,
                "{name}: {within} segments listed within 0.5 s from {:.3}",
                t - from
            );
        }
        // 3. The gap is shown: contiguous gap segments...
        let gaps: Vec<u64> = segs
            .iter()
            .filter(|(_, s)| s.gap)
            .map(|(m, _)| *m)
            .collect();
        assert!(!gaps.is_empty(), "{name}: no EXT-X-GAP");
        assert_eq!(
            gaps.len() as u64,
            gaps[gaps.len() - 1] - gaps[0] + 1,
            "{name}: gaps {gaps:?}"
        );
        // ...covering the stall but the first MIN_SILENCE (2 s) and a segment at each end,
        let covered: f64 = segs
            .iter()
            .filter(|(_, s)| s.gap)
            .map(|(_, s)| s.duration)
            .sum();
        assert!(
            covered >= stall_for.as_secs_f64() - 4.0,
            "{name}: gaps cover {covered:.3} s of a {stall_for:?} stall"
        );
        // ...and real media again after it.
        let after = segs
            .iter()
            .filter(|(m, _)| *m > gaps[gaps.len() - 1])
            .count();
        assert!(after >= 5, "{name}: {after} segments after the gap");
        gap_sets.push((name.to_string(), gaps));
    }
    // 4. The same gap at the same media sequence numbers in every rendition.
    for (name, gaps) in &gap_sets {
        assert_eq!(gaps, &gap_sets[0].1, "{name} vs {}", gap_sets[0].0);
    }
    gap_sets[0].1.clone()
}

async fn stall_run(kind: Stall, stall_for: Duration) {
    let ports = port_range();
    let fw = Firewall::new(ports);
    let gw = TestGateway::start(config(ports, "")).await;
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("stall")).with_format(640, 360, 30))
            .await
            .unwrap();
    let urls = rendition_urls(&gw, "stall").await;
    println!(
        "renditions: {:?}",
        urls.iter().map(|u| &u.0).collect::<Vec<_>>()
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    assert_eq!(urls.len(), 5, "3 rungs, source and audio: {urls:?}");
    let (task, tl) = record(&gw, urls.clone(), Arc::clone(&stop));
    let t0 = unix(SystemTime::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stall = Instant::now();
    fw.stall();
    if kind == Stall::Burst {
        p.hold_media(true);
    }
    println!("{kind:?} stall at {:.3}", unix(SystemTime::now()) - t0);
    tokio::time::sleep(stall_for).await;
    fw.clear();
    p.hold_media(false);
    println!(
        "resume at {:.3} ({:.1} s)",
        unix(SystemTime::now()) - t0,
        stall.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    let tl = std::mem::take(&mut *tl.lock().unwrap());
    print_timeline(&tl, t0);
    let gaps = check_timeline(&tl, t0 + 5.0, stall_for);
    // 5. Every rendition's first segments after the gap decode without an error line.
    let after: Vec<u64> = (1..=3).map(|i| gaps[gaps.len() - 1] + i).collect();
    for (name, url) in &urls {
        let errors = decode_errors(&gw, url, &after).await;
        assert!(errors.is_empty(), "{name} {after:?}: {errors}");
    }
    println!("gap segments {gaps:?} in every rendition; {after:?} decode cleanly");
    assert!(p.media_error().is_none(), "{:?}", p.media_error());
    assert_eq!(p.stop().await.unwrap(), 200);
    gw.shutdown().await;
    drop(fw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_timeline() {
    stall_run(Stall::Drop, Duration::from_secs(7)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_timeline() {
    stall_run(Stall::Burst, Duration::from_secs(7)).await;
}

// ---- hls.js in headless Chromium --------------------------------------------------------

/// Runs tests/browser/llhls_play.mjs (hls.js, low-latency mode) on `stream` for
/// `watch_seconds`, stalls allowed; returns its summary after checking what must hold
/// whatever the network did: no fatal hls.js error, currentTime never going back.
async fn play(
    chromium: &str,
    gw: &TestGateway,
    stream: &str,
    watch_seconds: u64,
) -> serde_json::Value {
    let watch = watch_seconds.to_string();
    let (code, summary) = common::run_browser_script(
        chromium,
        "llhls_play.mjs",
        &[&gw.base, stream],
        &[
            ("WATCH_SECONDS", std::ffi::OsStr::new(&watch)),
            ("TOLERATE_STALLS", std::ffi::OsStr::new("1")),
        ],
        Duration::from_secs(watch_seconds + 120),
    )
    .await;
    assert_eq!(
        code,
        Some(0),
        "browser script failed: {}",
        common::script_failures(&summary)
    );
    assert_eq!(summary["engine"], "hls.js");
    assert_eq!(summary["fatalErrors"], 0, "{summary}");
    let back = summary["playback"]["backwardsS"].as_f64().unwrap();
    assert!(back <= 0.01, "currentTime went back {back} s");
    summary
}

/// hls.js through a 7 s stall: it skips the gap (never loading a GAP part or segment) and
/// plays on, without a fatal error and without seeking back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hlsjs_plays_through_a_stall() {
    let chromium = common::browser_preconditions("timeline");
    let ports = port_range();
    let fw = Firewall::new(ports);
    let gw = TestGateway::start(config(ports, "")).await;
    let p = Publisher::start(PublisherOptions::whip(&gw.whip_url("hjs")).with_format(640, 360, 30))
        .await
        .unwrap();
    gw.wait_master("hjs", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let stall = async {
        // Playback starts within ~10 s of the script; the stall is well inside the watch.
        tokio::time::sleep(Duration::from_secs(18)).await;
        fw.stall();
        tokio::time::sleep(Duration::from_secs(7)).await;
        fw.clear();
    };
    let (summary, ()) = tokio::join!(play(&chromium, &gw, "hjs", 35), stall);
    let during = &summary["during"];
    let advanced = summary["playback"]["advancedS"].as_f64().unwrap();
    let wall = summary["playback"]["wallS"].as_f64().unwrap();
    println!(
        "hls.js through a 7 s stall: {} stall(s), {} BUFFER_STALLED_ERROR, currentTime advanced {advanced} s in {wall} s, max freeze {} s, errors {}",
        during["stalls"],
        during["stallErrors"],
        summary["playback"]["maxFreezeS"],
        during["errors"]
    );
    // Playing again after the stall: the gap is skipped forward, not waited out.
    assert!(advanced >= wall - 8.0, "advanced {advanced} s in {wall} s");
    assert!(p.media_error().is_none(), "{:?}", p.media_error());
    let _ = p.stop().await;
    gw.shutdown().await;
    drop(fw);
}

/// 5 % of the packets to whipcast lost for a minute (NACK recovers most): ffmpeg decodes
/// every rendition without an error line and hls.js plays without a fatal error; its
/// stalls are counted and printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_percent_loss_for_a_minute() {
    let chromium = common::browser_preconditions("timeline");
    let ports = port_range();
    let fw = Firewall::new(ports);
    let gw = TestGateway::start(config(ports, "")).await;
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("lossy")).with_format(640, 360, 30))
            .await
            .unwrap();
    let urls = rendition_urls(&gw, "lossy").await;
    fw.loss(5);
    let summary = play(&chromium, &gw, "lossy", 60).await;
    let during = &summary["during"];
    println!(
        "hls.js under 5 % loss for 60 s: {} stall(s), {} BUFFER_STALLED_ERROR, max freeze {} s, currentTime advanced {} s in {} s, errors {}",
        during["stalls"],
        during["stallErrors"],
        summary["playback"]["maxFreezeS"],
        summary["playback"]["advancedS"],
        summary["playback"]["wallS"],
        during["errors"]
    );
    // Every rendition's listed segments, decoded while the loss goes on.
    for (name, url) in &urls {
        let pl = LlPlaylist::parse(&gw.get_text(url).await.unwrap().1);
        let seqs: Vec<u64> = pl.segments.iter().map(|s| s.msn).collect();
        assert!(seqs.len() >= 5, "{name}: {seqs:?}");
        let errors = decode_errors(&gw, url, &seqs).await;
        assert!(errors.is_empty(), "{name} {seqs:?}: {errors}");
    }
    fw.clear();
    assert!(p.media_error().is_none(), "{:?}", p.media_error());
    let _ = p.stop().await;
    gw.shutdown().await;
    drop(fw);
}

/// A stall longer than `ice.media_timeout` ends the stream the ordinary way: gaps while
/// it lasts, then `EXT-X-ENDLIST` in every rendition once the timeout is reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_past_the_media_timeout_ends_with_endlist() {
    let ports = port_range();
    let fw = Firewall::new(ports);
    let gw = TestGateway::start(config(ports, "media_timeout = \"5s\"\n")).await;
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("gone")).with_format(320, 180, 30))
            .await
            .unwrap();
    let urls = rendition_urls(&gw, "gone").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    fw.stall();
    let deadline = Instant::now() + Duration::from_secs(20);
    for (name, url) in &urls {
        let pl = loop {
            let pl = LlPlaylist::parse(&gw.get_text(url).await.unwrap().1);
            if pl.ended {
                break pl;
            }
            assert!(Instant::now() < deadline, "{name}: no ENDLIST");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let gaps: Vec<u64> = pl
            .segments
            .iter()
            .filter(|s| s.gap)
            .map(|s| s.msn)
            .collect();
        println!("{name}: ended, gap segments {gaps:?}");
        assert!(!gaps.is_empty(), "{name}: no gap before the end");
        // ffmpeg (5.1) does not know EXT-X-GAP: it reads the gap segments too, which hold
        // repeated frames or silence, and decodes the whole playlist without an error line.
        common::decode_all(url);
    }
    drop(p);
    gw.shutdown().await;
    drop(fw);
}
