//! Latency benchmark driver for `benches/latency.sh` (`make bench-latency`, BENCHMARKS.md
//! "Latency"); `harness = false`.
//!
//! `latency run --whipcast BIN --case default|passthrough [--seconds N] [--width W --height H
//! --fps F --bitrate KBPS]` measures one configuration and prints one JSON line:
//!
//! 1. starts `BIN --config <tmp toml>` (the release binary, as deployed) on a free loopback
//!    port: `default` = the embedded default config and ladder; `passthrough` = the same
//!    config with a ladder that has only the `[source]` rung (the publisher's H.264, no
//!    transcode);
//! 2. publishes with the test publisher of `tests/common/publisher.rs` (WHIP, H.264, Opus,
//!    capture-time barcode) from this process, while polling every 10 ms for the master
//!    playlist, then the first video media playlist until it lists an `INDEPENDENT=YES` part,
//!    then that part: publish → first playable, measured from the WHIP POST;
//! 3. runs `tests/browser/llhls_play.mjs` (headless Chromium, hls.js low-latency mode, pinned
//!    to the top level) for N seconds: glass-to-glass delay from the barcode, hls.js latency;
//!    twice: the watch page as shipped (hls.js `maxLiveSyncPlaybackRate` 1: it never catches
//!    up after its start-up), then with `maxLiveSyncPlaybackRate` = R (default 1.5);
//! 4. reads `/api/streams` (server lag percentiles, `first_playable_s`) once the stream has
//!    run ≥ 30 s, and the CPU time whipcast and the machine used meanwhile.
//!
//! Loopback only: `run` refuses to start outside a loopback-only network namespace
//! (`benches/latency.sh` runs it through `deploy/netns-run.sh`).
//! With no command (e.g. under `cargo test --all-targets`) it prints usage and succeeds.
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/publisher.rs"]
mod publisher;

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use publisher::{Publisher, PublisherOptions, VideoCodec, timecode_reference_luma, unix_ms};
use serde_json::{Value, json};

const USAGE: &str = "usage: latency run --whipcast BIN --case default|passthrough [--seconds N] [--width W --height H --fps F --bitrate KBPS] [--catchup-rate R] [--hls-toml 'key = value; …'] [--variants as-shipped,catchup,resync,stock]
(normally run by benches/latency.sh: `make bench-latency`)";

const STREAM: &str = "lat";
/// Server lag percentiles are read no earlier than this after the publish.
const MIN_LAG_WINDOW: Duration = Duration::from_secs(30);
/// The browser joins this long after the publish (3 default segments).
const JOIN_AFTER: Duration = Duration::from_secs(6);

struct Args {
    whipcast: PathBuf,
    case: String,
    seconds: u64,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
    catchup_rate: f64,
    hls_toml: String,
    variants: Vec<String>,
}

fn parse(rest: &[String]) -> anyhow::Result<Args> {
    let mut a = Args {
        whipcast: PathBuf::from("target/release/whipcast"),
        case: "default".into(),
        seconds: 40,
        width: 1280,
        height: 720,
        fps: 30,
        bitrate_kbps: 2500,
        catchup_rate: 1.5,
        hls_toml: String::new(),
        variants: ["stock", "as-shipped"].map(String::from).to_vec(),
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--whipcast" => a.whipcast = PathBuf::from(v),
            "--case" => a.case = v.clone(),
            "--seconds" => a.seconds = v.parse()?,
            "--width" => a.width = v.parse()?,
            "--height" => a.height = v.parse()?,
            "--fps" => a.fps = v.parse()?,
            "--bitrate" => a.bitrate_kbps = v.parse()?,
            "--catchup-rate" => a.catchup_rate = v.parse()?,
            "--hls-toml" => a.hls_toml = v.clone(),
            "--variants" => {
                a.variants = v
                    .split(',')
                    .filter(|x| !x.is_empty())
                    .map(String::from)
                    .collect();
                if let Some(bad) = a
                    .variants
                    .iter()
                    .find(|x| !["as-shipped", "catchup", "resync", "stock"].contains(&x.as_str()))
                {
                    bail!("unknown variant {bad}");
                }
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    if !["default", "passthrough"].contains(&a.case.as_str()) {
        bail!("--case must be default or passthrough");
    }
    if !(30..=600).contains(&a.seconds) {
        bail!("--seconds must be 30..=600");
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => {}
        _ => {
            // `cargo test --all-targets` / `cargo bench` run this with no or harness flags.
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
    }
    let result = parse(&args[1..]).and_then(|a| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
            .block_on(run(&a))
    });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("latency: {e:#}");
            println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            ExitCode::FAILURE
        }
    }
}

fn config_text(case: &str, port: u16) -> String {
    let mut text = format!(
        "# whipcast latency benchmark ({case}): defaults except listen{}\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        if case == "passthrough" {
            " and a source-only ladder"
        } else {
            ""
        }
    );
    if case == "passthrough" {
        text.push_str(
            "[media.ladder]\nrungs = []\n[media.ladder.video]\nfps = 30\npreset = \"superfast\"\nprofile = \"high\"\n\
             [media.ladder.audio]\nbitrate_kbps = 128\nlanguage = \"und\"\n[media.ladder.source]\nenabled = true\n",
        );
    }
    text
}

/// utime + stime of a process, in clock ticks (100 Hz on Linux).
fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) ticks of the whole machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

struct FirstPlayable {
    master: Instant,
    media: Instant,
    part: Instant,
    part_uri: String,
}

/// Polls (every 10 ms) the master, then the first variant's media playlist until it lists an
/// independent part, then fetches that part.
async fn poll_first_playable(
    http: reqwest::Client,
    base: String,
    deadline: Instant,
) -> anyhow::Result<FirstPlayable> {
    let master_url = format!("{base}/hls/{STREAM}/master.m3u8");
    let tick = Duration::from_millis(10);
    let get = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(&url).send().await.ok()?;
            if !r.status().is_success() {
                return None;
            }
            r.bytes().await.ok()
        }
    };
    let (master_at, variant) = loop {
        if Instant::now() > deadline {
            bail!("no master playlist");
        }
        if let Some(body) = get(master_url.clone()).await {
            let text = String::from_utf8_lossy(&body).to_string();
            if let Some(uri) = text
                .lines()
                .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF"))
                .nth(1)
            {
                break (Instant::now(), uri.trim().to_string());
            }
        }
        tokio::time::sleep(tick).await;
    };
    let media_url = format!("{base}/hls/{STREAM}/{variant}");
    let (media_at, part_uri) = loop {
        if Instant::now() > deadline {
            bail!("no independent part in {media_url}");
        }
        if let Some(body) = get(media_url.clone()).await {
            let text = String::from_utf8_lossy(&body).to_string();
            let part = text
                .lines()
                .find(|l| l.starts_with("#EXT-X-PART:") && l.contains("INDEPENDENT=YES"))
                .and_then(|l| l.split("URI=\"").nth(1))
                .and_then(|r| r.split('"').next());
            if let Some(p) = part {
                break (Instant::now(), p.to_string());
            }
        }
        tokio::time::sleep(tick).await;
    };
    let dir = &media_url[..media_url.rfind('/').unwrap() + 1];
    let part_url = format!("{dir}{part_uri}");
    let part_at = loop {
        if Instant::now() > deadline {
            bail!("part {part_url} not fetchable");
        }
        if get(part_url.clone()).await.is_some_and(|b| !b.is_empty()) {
            break Instant::now();
        }
        tokio::time::sleep(tick).await;
    };
    Ok(FirstPlayable {
        master: master_at,
        media: media_at,
        part: part_at,
        part_uri,
    })
}

fn ms_between(from: Instant, to: Instant) -> i64 {
    if to >= from {
        (to - from).as_millis() as i64
    } else {
        -((from - to).as_millis() as i64)
    }
}

/// Runs `tests/browser/llhls_play.mjs` pinned to the top level; returns its JSON summary.
async fn run_browser(
    root: &Path,
    base: &str,
    work: &Path,
    seconds: u64,
    env: &[(&str, &str)],
    tag: &str,
) -> anyhow::Result<Value> {
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(root.join("tests/browser/llhls_play.mjs"))
        .arg(base)
        .arg(STREAM)
        .env("WATCH_SECONDS", seconds.to_string())
        .env("PIN_LEVEL", "top")
        .env("TIMECODE_REF", work.join("ref.json"))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.envs(env.iter().copied());
    let out = cmd.output().await.context("running node")?;
    std::fs::write(work.join(format!("browser-{tag}.log")), &out.stderr)?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| {
            anyhow!(
                "no JSON from the browser script (exit {:?}); log in {}",
                out.status.code(),
                work.display()
            )
        })
}

async fn run(a: &Args) -> anyhow::Result<Value> {
    // Chromium and the publisher must not see any interface but loopback.
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")?
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    if interfaces != ["lo"] {
        bail!(
            "run me in a loopback-only network namespace (bash deploy/netns-run.sh …); interfaces: {interfaces:?}"
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let whipcast = if a.whipcast.is_absolute() {
        a.whipcast.clone()
    } else {
        root.join(&a.whipcast)
    };
    let work = std::env::temp_dir().join(format!(
        "whipcast-latency-{}-{:08x}",
        a.case,
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&work)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut config = config_text(&a.case, port);
    if !a.hls_toml.is_empty() {
        config.push_str(&format!("[hls]\n{}\n", a.hls_toml.replace(';', "\n")));
    }
    let config_path = work.join("whipcast.toml");
    std::fs::write(&config_path, &config)?;
    let log = std::fs::File::create(work.join("whipcast.log"))?;
    let load_before = loadavg();
    let mut server = tokio::process::Command::new(&whipcast)
        .arg("--config")
        .arg(&config_path)
        .env("WHIPCAST_LOG", "whipcast=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", whipcast.display()))?;
    let pid = server.id().context("whipcast pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()?;
    let up = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > up {
            bail!("whipcast did not come up; log in {}", work.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // 1. Publish; publish → first playable.
    let poller = tokio::spawn(poll_first_playable(
        http.clone(),
        base.clone(),
        Instant::now() + Duration::from_secs(30),
    ));
    let mut opts = PublisherOptions::whip(&format!("{base}/whip/{STREAM}"))
        .with_video(VideoCodec::H264)
        .with_format(a.width, a.height, a.fps)
        .with_audio(true)
        .with_timecode(true);
    opts.bitrate_kbps = a.bitrate_kbps;
    let publisher = Publisher::start(opts)
        .await
        .context("publisher did not connect")?;
    let connected = Instant::now();
    let offer = publisher.offer_sent_at();
    let published = Instant::now();
    let fp = poller.await??;

    // 2. Glass-to-glass in Chromium (observing while the lag window fills).
    let (w, h) = (a.width as usize, a.height as usize);
    let ref_ms = unix_ms();
    std::fs::write(work.join("ref.y"), timecode_reference_luma(w, h, ref_ms))?;
    std::fs::write(
        work.join("ref.json"),
        json!({"file": work.join("ref.y"), "width": w, "height": h, "ms": ref_ms}).to_string(),
    )?;
    let (cpu0, m0) = (proc_ticks(pid), machine_ticks());
    let t_cpu = Instant::now();
    // A viewer joining a running stream: start after a few segments.
    tokio::time::sleep(JOIN_AFTER.saturating_sub(published.elapsed())).await;
    // The page as shipped (hls.js never speeds up: maxLiveSyncPlaybackRate 1); then fresh
    // pages that let hls.js catch up to its target latency, and that seek to hls.js' live
    // sync position once playing (hls.js' start-up taking no time).
    let rate = a.catchup_rate.to_string();
    let mut runs = serde_json::Map::new();
    for v in &a.variants {
        let env: &[(&str, &str)] = match v.as_str() {
            "catchup" => &[("CATCHUP_RATE", rate.as_str())],
            "resync" => &[("RESYNC", "1")],
            // hls.js as its README shows it, at the level its ABR picks.
            "stock" => &[("STOCK", "1"), ("PIN_LEVEL", "")],
            _ => &[],
        };
        // A variant named again is another join: "stock", "stock#2", …
        let mut key = v.clone();
        for n in 2.. {
            if !runs.contains_key(&key) {
                break;
            }
            key = format!("{v}#{n}");
        }
        let r = run_browser(root, &base, &work, a.seconds, env, &key).await?;
        runs.insert(key, r);
    }
    if a.variants.is_empty() {
        // No browser: keep the stream up for the lag window.
        tokio::time::sleep(MIN_LAG_WINDOW.saturating_sub(published.elapsed())).await;
    }
    let (cpu1, m1) = (proc_ticks(pid), machine_ticks());
    let cpu_secs = t_cpu.elapsed().as_secs_f64();

    // 3. Server lag over ≥ 30 s.
    let wait = MIN_LAG_WINDOW.saturating_sub(published.elapsed());
    tokio::time::sleep(wait).await;
    let api: Value = http
        .get(format!("{base}/api/streams"))
        .send()
        .await?
        .json()
        .await?;
    let stream = api["streams"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == STREAM))
        .cloned()
        .ok_or_else(|| anyhow!("{STREAM} not in /api/streams"))?;
    let media_error = publisher.media_error();
    let lost = publisher.packets_lost_locally();
    let _ = tokio::time::timeout(Duration::from_secs(15), publisher.stop()).await;
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    if tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .is_err()
    {
        let _ = server.kill().await;
    }
    let tick = 100.0; // USER_HZ
    let whipcast_cores = match (cpu0, cpu1) {
        (Some(x), Some(y)) => Some(((y - x) as f64 / tick / cpu_secs * 100.0).round() / 100.0),
        _ => None,
    };
    let machine_busy = match (m0, m1) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some(((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let ok = runs.values().all(|b| b["ok"] == true) && media_error.is_none();
    if ok {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(json!({
        "ok": ok,
        "case": a.case,
        "config": config,
        "publisher": {
            "codec": "h264 (x264 ultrafast zerolatency, constrained baseline)",
            "size": format!("{}x{}@{}", a.width, a.height, a.fps),
            "bitrate_kbps": a.bitrate_kbps,
            "media_error": media_error,
            "lost_locally": lost,
        },
        "first_playable": {
            "post_to_connected_ms": ms_between(offer, connected),
            "post_to_master_ms": ms_between(offer, fp.master),
            "post_to_independent_part_listed_ms": ms_between(offer, fp.media),
            "post_to_part_fetched_ms": ms_between(offer, fp.part),
            "part": fp.part_uri,
            "server_first_playable_s": stream["first_playable_s"],
        },
        "server_lag_ms": stream["lag_ms"],
        "stream_uptime_s": stream["uptime_s"],
        "renditions": stream["renditions"].as_array().map(|r| r.len()),
        "browser": runs,
        "cpu": {
            "whipcast_cores": whipcast_cores,
            "machine_busy_fraction": machine_busy,
            "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
        },
        "work_dir": if ok { Value::Null } else { json!(work) },
    }))
}
