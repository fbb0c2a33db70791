//! Media source for `benches/cpu.sh` (see BENCHMARKS.md); `harness = false`.
//!
//! It runs the test publisher of `tests/common/publisher.rs` in this process, so its encoding
//! cost is never charged to the process being measured:
//!
//! * `cpu publish --url http://127.0.0.1:PORT/whip/NAME --seconds N`: a real WebRTC (WHIP)
//!   publish to whipcast for N seconds of media, then DELETE.
//! * `cpu feed-udp --video-port V --audio-port A --seconds N`: the very same GStreamer media
//!   pipeline (`publisher::pipeline_description`), its RTP sent as plain UDP to 127.0.0.1
//!   instead of through a peer connection: the input of the bare gst-launch-1.0 baseline.
//! * `cpu publish-many --url-base http://127.0.0.1:PORT/whip/ --streams N --seconds S`
//!   (`benches/density.sh`): ONE process, ONE media pipeline (one x264 encode), its RTP
//!   fanned out to N webrtc-rs peer connections, each its own WHIP session to stream
//!   `d0` … `dN-1` (`publisher::Feed`: every peer rewrites PT/SSRC as a lone publisher
//!   does; keyframe requests are counted, never honoured, so keyframes come every 2 s).
//!   Peers connect `--concurrency` at a time; once all are up it prints `ready`, after S
//!   seconds of media `end`, then stops them all (DELETE) and prints its `key=value` line.
//! * `cpu feed-udp-many --video-ports V1,V2,… --audio-ports A1,A2,… --seconds S`: the same
//!   single pipeline, each RTP packet sent by a multiudpsink to every port of the list
//!   (the bare gst-launch-1.0 baselines' input); prints `ready`, `end` and its line.
//! * `--layers 3` (publish-many, feed-udp-many; issue 12 §2 (c)): H.264 simulcast, the
//!   picture encoded three times (full, ½ and ¼ size at 1, ¼ and 1/16 of the bitrate:
//!   `publisher::simulcast_pipeline_description`). publish-many sends them as one video
//!   track with three rid encodings (h, m, l; RFC 8853); feed-udp-many takes three video
//!   ports per stream, `--video-ports H0,M0,L0,H1,M1,L1,…`.
//! * `cpu info`: the payload types the pipeline uses.
//!
//! Both media commands take `--width --height --fps --bitrate` (kbit/s) and print one
//! `key=value` line; `media_seconds` is the wall time media was flowing (live sources).
//! With no command (e.g. under `cargo test --all-targets`) it prints usage and succeeds.

#[path = "../tests/common/publisher.rs"]
mod publisher;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use gstreamer as gst;
use gstreamer::prelude::*;
use publisher::{FeedSource, Publisher, PublisherOptions, VideoCodec};
use webrtc::peer_connection::RTCPeerConnectionState;

const USAGE: &str = "usage: cpu publish --url URL --seconds N [--width W --height H --fps F --bitrate KBPS]
       cpu feed-udp --video-port V --audio-port A --seconds N [--width W --height H --fps F --bitrate KBPS]
       cpu publish-many --url-base URL --streams N --seconds S [--layers 1|3 --concurrency C --width W --height H --fps F --bitrate KBPS]
       cpu feed-udp-many --video-ports V1,V2,.. --audio-ports A1,A2,.. --seconds S [--layers 1|3 --width W --height H --fps F --bitrate KBPS]
       cpu info
(normally run by benches/cpu.sh: `make bench`, and benches/density.sh: `make bench-density`)";

/// Longest accepted run, so a typo cannot make an unbounded benchmark.
const MAX_SECONDS: f64 = 3600.0;

struct Args {
    url: Option<String>,
    video_port: Option<u16>,
    audio_port: Option<u16>,
    url_base: Option<String>,
    streams: usize,
    concurrency: usize,
    video_ports: Vec<u16>,
    audio_ports: Vec<u16>,
    seconds: f64,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
    /// 1, or 3 for simulcast (see the module docs).
    layers: usize,
}

fn parse(rest: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        url: None,
        video_port: None,
        audio_port: None,
        url_base: None,
        streams: 1,
        concurrency: 4,
        video_ports: Vec::new(),
        audio_ports: Vec::new(),
        seconds: 60.0,
        width: 1280,
        height: 720,
        fps: 30,
        bitrate_kbps: 2500,
        layers: 1,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow!("{flag} needs a value\n{USAGE}"))?;
        let bad = || anyhow!("bad value {value:?} for {flag}");
        match flag.as_str() {
            "--url" => a.url = Some(value.clone()),
            "--video-port" => a.video_port = Some(value.parse().map_err(|_| bad())?),
            "--audio-port" => a.audio_port = Some(value.parse().map_err(|_| bad())?),
            "--url-base" => a.url_base = Some(value.clone()),
            "--streams" => a.streams = value.parse().map_err(|_| bad())?,
            "--concurrency" => a.concurrency = value.parse().map_err(|_| bad())?,
            "--video-ports" => a.video_ports = ports(value).ok_or_else(bad)?,
            "--audio-ports" => a.audio_ports = ports(value).ok_or_else(bad)?,
            "--seconds" => a.seconds = value.parse().map_err(|_| bad())?,
            "--width" => a.width = value.parse().map_err(|_| bad())?,
            "--height" => a.height = value.parse().map_err(|_| bad())?,
            "--fps" => a.fps = value.parse().map_err(|_| bad())?,
            "--bitrate" => a.bitrate_kbps = value.parse().map_err(|_| bad())?,
            "--layers" => a.layers = value.parse().map_err(|_| bad())?,
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if !(a.seconds > 0.0 && a.seconds <= MAX_SECONDS) {
        bail!("--seconds must be in (0, {MAX_SECONDS}]");
    }
    if a.layers != 1 && a.layers != 3 {
        bail!("--layers must be 1 or 3");
    }
    if !(1..=MAX_STREAMS).contains(&a.streams) || !(1..=64).contains(&a.concurrency) {
        bail!("--streams must be in 1..={MAX_STREAMS}, --concurrency in 1..=64");
    }
    Ok(a)
}

/// `5000,5002`: a comma-separated port list.
fn ports(list: &str) -> Option<Vec<u16>> {
    list.split(',').map(|p| p.trim().parse().ok()).collect()
}

/// Most peers (or UDP destinations) one `publish-many` / `feed-udp-many` serves.
const MAX_STREAMS: usize = 1000;

fn options(a: &Args, url: &str) -> PublisherOptions {
    let mut o = PublisherOptions::whip(url)
        .with_video(VideoCodec::H264)
        .with_format(a.width, a.height, a.fps)
        .with_audio(true);
    o.bitrate_kbps = a.bitrate_kbps;
    o
}

/// WHIP publish for `seconds` of media; fails if the connection or the media pipeline fails.
async fn publish(a: &Args) -> anyhow::Result<String> {
    let url = a.url.as_deref().context("publish needs --url")?;
    let p = Publisher::start(options(a, url))
        .await
        .context("publisher did not connect")?;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(a.seconds);
    let mut failure = None;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        if let Some(e) = p.media_error() {
            failure = Some(format!("publisher media error: {e}"));
            break;
        }
        let state = p.connection_state();
        if state != RTCPeerConnectionState::Connected {
            failure = Some(format!("peer connection is {state:?}"));
            break;
        }
    }
    let media_seconds = started.elapsed().as_secs_f64();
    let (video, audio) = (p.video_packets_sent(), p.audio_packets_sent());
    let (kf, lost) = (p.keyframe_requests(), p.packets_lost_locally());
    let status = tokio::time::timeout(Duration::from_secs(15), p.stop())
        .await
        .map_err(|_| anyhow!("WHIP DELETE timed out"))??;
    if let Some(f) = failure {
        bail!("{f} after {media_seconds:.1} s");
    }
    if video == 0 || audio == 0 {
        bail!("no media sent (video {video}, audio {audio} packets)");
    }
    Ok(format!(
        "media_seconds={media_seconds:.3} video_packets={video} audio_packets={audio} \
         keyframe_requests={kf} lost_locally={lost} delete_status={status}"
    ))
}

/// The publisher's GStreamer pipeline, RTP to udpsinks on 127.0.0.1, for `seconds`.
fn feed_udp(a: &Args) -> anyhow::Result<String> {
    let vport = a.video_port.context("feed-udp needs --video-port")?;
    let aport = a.audio_port.context("feed-udp needs --audio-port")?;
    gst::init().context("gst::init")?;
    let mut desc = publisher::pipeline_description(&options(a, "http://127.0.0.1/unused"));
    for (name, port) in [("vsink", vport), ("asink", aport)] {
        let from = format!("appsink name={name} sync=false");
        let to = format!("udpsink name={name} host=127.0.0.1 port={port} sync=false");
        if !desc.contains(&from) {
            bail!("publisher pipeline has no `{from}`; update benches/cpu.rs:\n{desc}");
        }
        desc = desc.replace(&from, &to);
    }
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("parse {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let bus = pipeline.bus().context("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| anyhow!("feeder -> Playing: {e}"))?;
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(a.seconds);
    let mut failure = None;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let wait = gst::ClockTime::from_mseconds(left.as_millis().min(250) as u64);
        if let Some(msg) = bus.timed_pop_filtered(wait, &[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                failure = Some(format!("{} ({:?})", e.error(), e.debug()));
            }
            break;
        }
    }
    let media_seconds = started.elapsed().as_secs_f64();
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(f) = failure {
        bail!("feeder error: {f}");
    }
    Ok(format!("media_seconds={media_seconds:.3}"))
}

/// The publisher's pipeline: one layer, or three (`--layers 3`).
fn description(a: &Args) -> String {
    let o = options(a, "http://127.0.0.1/unused");
    if a.layers == 3 {
        publisher::simulcast_pipeline_description(&o)
    } else {
        publisher::pipeline_description(&o)
    }
}

/// This process's utime + stime in clock ticks (/proc/self/stat), 0 if unreadable.
fn self_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(11) + n(12)
}

/// Prints a marker line for benches/density.sh, with this process's CPU ticks so far (it
/// may be gone before the script reads /proc), and flushes it.
fn mark(line: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line} ticks={}", self_ticks());
    let _ = out.flush();
}

/// One encode, N WHIP peers (see the module docs).
async fn publish_many(a: &Args) -> anyhow::Result<String> {
    use futures::StreamExt as _;
    let base = a
        .url_base
        .as_deref()
        .context("publish-many needs --url-base")?;
    let FeedSource { pipeline, feed, .. } =
        FeedSource::new(&options(a, "http://127.0.0.1/unused"), a.layers)?;
    let bus = pipeline.bus().context("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| anyhow!("feeder -> Playing: {e}"))?;
    let connect_start = Instant::now();
    let started: Vec<anyhow::Result<Publisher>> = futures::stream::iter(0..a.streams)
        .map(|i| {
            let mut o = options(a, &format!("{base}d{i}"));
            o.feed = Some(feed.clone());
            async move {
                Publisher::start(o)
                    .await
                    .with_context(|| format!("peer d{i} did not connect"))
            }
        })
        .buffered(a.concurrency)
        .collect()
        .await;
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let mut peers = Vec::with_capacity(started.len());
    let mut failure = None;
    for p in started {
        match p {
            Ok(p) => peers.push(p),
            Err(e) => {
                failure.get_or_insert(format!("{e:#}"));
            }
        }
    }
    let error = |bus: &gst::Bus| {
        bus.pop_filtered(&[gst::MessageType::Error])
            .map(|m| format!("publisher pipeline: {m:?}"))
    };
    if failure.is_none() {
        mark(&format!(
            "ready streams={} connect_seconds={connect_seconds:.1}",
            peers.len()
        ));
        let sent0: u64 = peers.iter().map(Publisher::packets_sent).sum();
        let started = Instant::now();
        let end = started + Duration::from_secs_f64(a.seconds);
        while Instant::now() < end {
            let left = end.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
            if let Some(e) = error(&bus) {
                failure = Some(e);
                break;
            }
            if let Some((i, s)) = peers
                .iter()
                .map(Publisher::connection_state)
                .enumerate()
                .find(|(_, s)| *s != RTCPeerConnectionState::Connected)
            {
                failure = Some(format!("peer d{i} is {s:?}"));
                break;
            }
        }
        let media_seconds = started.elapsed().as_secs_f64();
        mark(&format!("end media_seconds={media_seconds:.3}"));
        let video: u64 = peers.iter().map(Publisher::video_packets_sent).sum();
        let audio: u64 = peers.iter().map(Publisher::audio_packets_sent).sum();
        let sent: u64 = peers.iter().map(Publisher::packets_sent).sum::<u64>() - sent0;
        let kf: u64 = peers.iter().map(Publisher::keyframe_requests).sum();
        let lost: u64 = peers.iter().map(Publisher::packets_lost_locally).sum();
        let n = peers.len();
        let mut statuses = Vec::new();
        for p in peers.drain(..) {
            statuses.push(
                tokio::time::timeout(Duration::from_secs(15), p.stop())
                    .await
                    .map_err(|_| anyhow!("timeout"))
                    .and_then(|r| r)
                    .map_or_else(|e| format!("{e}"), |s| s.to_string()),
            );
        }
        let _ = pipeline.set_state(gst::State::Null);
        if let Some(f) = failure {
            bail!("{f} after {media_seconds:.1} s");
        }
        let bad = statuses.iter().filter(|s| !s.starts_with('2')).count();
        return Ok(format!(
            "media_seconds={media_seconds:.3} streams={n} connect_seconds={connect_seconds:.1} \
             video_packets={video} audio_packets={audio} window_packets={sent} \
             keyframe_requests={kf} lost_locally={lost} failed_deletes={bad}"
        ));
    }
    for p in peers {
        let _ = tokio::time::timeout(Duration::from_secs(5), p.stop()).await;
    }
    let _ = pipeline.set_state(gst::State::Null);
    bail!(
        "{} after {connect_seconds:.1} s of connecting",
        failure.unwrap_or_default()
    )
}

/// One encode, its RTP to every port of the lists (see the module docs).
fn feed_udp_many(a: &Args) -> anyhow::Result<String> {
    if a.audio_ports.is_empty() || a.video_ports.len() != a.audio_ports.len() * a.layers {
        bail!(
            "feed-udp-many needs --audio-ports and --layers video ports per audio port in --video-ports"
        );
    }
    gst::init().context("gst::init")?;
    let mut desc = description(a);
    // Layer k of stream i is video port i * layers + k.
    let layer_ports = |k: usize| -> Vec<u16> {
        a.video_ports
            .iter()
            .skip(k)
            .step_by(a.layers)
            .copied()
            .collect()
    };
    let mut sinks = vec![("vsink", layer_ports(0)), ("asink", a.audio_ports.clone())];
    for (k, name) in publisher::LAYER_SINKS
        .into_iter()
        .enumerate()
        .take(a.layers - 1)
    {
        sinks.push((name, layer_ports(k + 1)));
    }
    for (name, ports) in &sinks {
        let from = format!("appsink name={name} sync=false");
        let clients: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let to = format!(
            "multiudpsink name={name} clients={} sync=false",
            clients.join(",")
        );
        if !desc.contains(&from) {
            bail!("publisher pipeline has no `{from}`; update benches/cpu.rs:\n{desc}");
        }
        desc = desc.replace(&from, &to);
    }
    let pipeline = gst::parse::launch(&desc)
        .with_context(|| format!("parse {desc}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("not a pipeline"))?;
    let bus = pipeline.bus().context("no bus")?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| anyhow!("feeder -> Playing: {e}"))?;
    mark(&format!("ready streams={}", a.audio_ports.len()));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(a.seconds);
    let mut failure = None;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let wait = gst::ClockTime::from_mseconds(left.as_millis().min(250) as u64);
        if let Some(msg) = bus.timed_pop_filtered(wait, &[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                failure = Some(format!("{} ({:?})", e.error(), e.debug()));
            }
            break;
        }
    }
    let media_seconds = started.elapsed().as_secs_f64();
    mark(&format!("end media_seconds={media_seconds:.3}"));
    let _ = pipeline.set_state(gst::State::Null);
    if let Some(f) = failure {
        bail!("feeder error: {f}");
    }
    Ok(format!(
        "media_seconds={media_seconds:.3} streams={}",
        a.audio_ports.len()
    ))
}

fn main() -> ExitCode {
    // `cargo bench` appends `--bench`; `cargo test` may pass harness flags: ignore both.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let result = match args.first().map(String::as_str) {
        Some("info") => Ok(format!(
            "video_pt={} audio_pt={}",
            publisher::H264_PT,
            publisher::OPUS_PT
        )),
        Some("publish") => parse(&args[1..]).and_then(|a| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?
                .block_on(publish(&a))
        }),
        Some("feed-udp") => parse(&args[1..]).and_then(|a| feed_udp(&a)),
        Some("publish-many") => parse(&args[1..]).and_then(|a| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("tokio runtime")?
                .block_on(publish_many(&a))
        }),
        Some("feed-udp-many") => parse(&args[1..]).and_then(|a| feed_udp_many(&a)),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    };
    match result {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cpu: {e:#}");
            ExitCode::FAILURE
        }
    }
}
