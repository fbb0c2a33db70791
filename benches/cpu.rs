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
use publisher::{Publisher, PublisherOptions, VideoCodec};
use webrtc::peer_connection::RTCPeerConnectionState;

const USAGE: &str = "usage: cpu publish --url URL --seconds N [--width W --height H --fps F --bitrate KBPS]
       cpu feed-udp --video-port V --audio-port A --seconds N [--width W --height H --fps F --bitrate KBPS]
       cpu info
(normally run by benches/cpu.sh: `make bench`)";

/// Longest accepted run, so a typo cannot make an unbounded benchmark.
const MAX_SECONDS: f64 = 3600.0;

struct Args {
    url: Option<String>,
    video_port: Option<u16>,
    audio_port: Option<u16>,
    seconds: f64,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
}

fn parse(rest: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        url: None,
        video_port: None,
        audio_port: None,
        seconds: 60.0,
        width: 1280,
        height: 720,
        fps: 30,
        bitrate_kbps: 2500,
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
            "--seconds" => a.seconds = value.parse().map_err(|_| bad())?,
            "--width" => a.width = value.parse().map_err(|_| bad())?,
            "--height" => a.height = value.parse().map_err(|_| bad())?,
            "--fps" => a.fps = value.parse().map_err(|_| bad())?,
            "--bitrate" => a.bitrate_kbps = value.parse().map_err(|_| bad())?,
            _ => bail!("unknown flag {flag}\n{USAGE}"),
        }
    }
    if !(a.seconds > 0.0 && a.seconds <= MAX_SECONDS) {
        bail!("--seconds must be in (0, {MAX_SECONDS}]");
    }
    Ok(a)
}

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
