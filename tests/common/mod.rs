//! Shared test support: a real whipcast on a free loopback port, a real WebRTC publisher,
//! and helpers that fetch over real HTTP and decode with ffprobe.
#![allow(dead_code, clippy::unwrap_used)]

pub mod ll;
pub mod process;
pub mod publisher;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use m3u8_rs::{MasterPlaylist, MediaPlaylist};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// A whipcast instance on `127.0.0.1:<free port>`, stopped on drop.
pub struct TestGateway {
    pub base: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub http: reqwest::Client,
}

/// The test ladder: three rungs under a 640x360 source, cheap on 2 cores. Planned from the
/// first frame (`plan_height = 0`): most tests publish 320x180 to stay cheap and our own
/// publisher sends its final size from the first frame. The default planning height is
/// tested with the embedded ladder (whip_publish.rs) and real browsers.
pub const TEST_LADDER: &str = r#"
[video]
fps = 30
preset = "ultrafast"
profile = "high"
plan_height = 0
[audio]
bitrate_kbps = 96
language = "en"
[[rungs]]
name = "360p"
height = 360
bitrate_kbps = 700
[[rungs]]
name = "240p"
height = 240
bitrate_kbps = 400
[[rungs]]
name = "180p"
height = 180
bitrate_kbps = 250
"#;

/// A configuration for tests: loopback only, 1 s segments, the cheap ladder.
pub fn test_config(extra: &str) -> whipcast::Config {
    let text = format!(
        "[hls]\nsegment_duration = \"1s\"\nwindow_segments = 6\nretain_segments = 6\ngrace_period = \"60s\"\n{extra}"
    );
    let mut cfg = whipcast::Config::parse(&text, "test").expect("test config parses");
    // Tests publish many sessions from one address (127.0.0.1), several at once: the
    // per-client publish limits are for the tests that set them.
    if !extra.contains("publish_per_minute") {
        cfg.limits.publish_per_minute = 0;
    }
    if !extra.contains("max_pending_sessions") {
        cfg.limits.max_pending_sessions = 64;
        cfg.limits.max_pending_sessions_per_client = 64;
    }
    cfg.media.ladder = Some(toml::from_str(TEST_LADDER).expect("test ladder parses"));
    cfg.validate().expect("test config valid");
    cfg
}

impl TestGateway {
    pub async fn start(cfg: whipcast::Config) -> TestGateway {
        init_tracing();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            whipcast::run(cfg, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("whipcast runs");
        });
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let gw = TestGateway {
            base: format!("http://{addr}"),
            shutdown: Some(tx),
            task: Some(task),
            http,
        };
        // Wait for /healthz.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = gw.http.get(gw.url("/healthz")).send().await
                && r.status().is_success()
            {
                return gw;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("whipcast did not come up");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn whip_url(&self, stream: &str) -> String {
        self.url(&format!("/whip/{stream}"))
    }

    pub fn ws_url(&self, stream: &str) -> String {
        format!("{}/ws/{stream}", self.base.replace("http://", "ws://"))
    }

    pub fn master_url(&self, stream: &str) -> String {
        self.url(&format!("/hls/{stream}/master.m3u8"))
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }

    pub async fn get_text(&self, url: &str) -> anyhow::Result<(u16, String)> {
        let r = self.http.get(url).send().await?;
        let s = r.status().as_u16();
        Ok((s, r.text().await?))
    }

    pub async fn get_bytes(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        let r = self.http.get(url).send().await?;
        if !r.status().is_success() {
            bail!("GET {url} -> {}", r.status());
        }
        Ok(r.bytes().await?.to_vec())
    }

    /// Polls the master playlist until it is served, and checks that the first version
    /// served already lists `variants` video variants and the audio rendition: players and
    /// CDNs keep the first one they get.
    pub async fn wait_master(
        &self,
        stream: &str,
        variants: usize,
        timeout: Duration,
    ) -> anyhow::Result<MasterPlaylist> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((200, text)) = self.get_text(&self.master_url(stream)).await {
                let m = m3u8_rs::parse_master_playlist_res(text.as_bytes())
                    .map_err(|e| anyhow::anyhow!("master does not parse: {e:?}\n{text}"))?;
                if m.variants.len() >= variants && !m.alternatives.is_empty() {
                    return Ok(m);
                }
                bail!(
                    "the first multivariant playlist served for {stream} is incomplete \
                     (want {variants} variants and audio):\n{text}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("master of {stream} not served within {timeout:?}")
    }

    /// Polls a media playlist until it lists at least `n` segments.
    pub async fn wait_segments(
        &self,
        url: &str,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<MediaPlaylist> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok((200, text)) = self.get_text(url).await {
                let p = parse_media(&text)?;
                if p.segments.len() >= n {
                    return Ok(p);
                }
                last = text;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("{url}: fewer than {n} segments after {timeout:?}; last:\n{last}")
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub fn parse_media(text: &str) -> anyhow::Result<MediaPlaylist> {
    m3u8_rs::parse_media_playlist_res(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("media playlist does not parse: {e:?}\n{text}"))
}

/// Resolves `rel` against the URL of the document that referenced it.
pub fn resolve(base: &str, rel: &str) -> String {
    if rel.starts_with("http://") || rel.starts_with("https://") {
        return rel.to_string();
    }
    let dir = &base[..base.rfind('/').map_or(base.len(), |i| i + 1)];
    format!("{dir}{rel}")
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WHIPCAST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("whipcast=info")),
        )
        .with_test_writer()
        .try_init();
}

/// Checks what a browser test needs and returns the Chromium path.
///
/// Chromium gathers every interface it sees and would pair the machine's own non-loopback
/// address with whipcast's 127.0.0.1. In a namespace with loopback alone
/// (deploy/netns-run.sh, as `make test` runs) no packet can go anywhere else.
pub fn browser_preconditions(test: &str) -> String {
    let interfaces: Vec<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    assert_eq!(
        interfaces,
        ["lo"],
        "run this test in a loopback-only network namespace: `bash deploy/netns-run.sh cargo test --test {test}`"
    );
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: run `bash deploy/install-browser-deps.sh`"
    );
    assert!(
        root.join("player/node_modules/playwright-core").is_dir()
            && root.join("player/vendor/hls.min.js").is_file(),
        "player/node_modules is missing: run `bash deploy/install-browser-deps.sh`"
    );
    chromium
}

/// What ffprobe says about init + segment(s).
#[derive(Debug, Default)]
pub struct Probe {
    pub codec: String,
    pub width: u32,
    pub height: u32,
    pub channels: u32,
    pub sample_rate: u32,
    pub profile: String,
    /// (pts seconds, keyframe) of every decoded frame (video) in order.
    pub frames: Vec<(f64, bool)>,
}

/// Decodes `init` + `segment` with ffprobe (a real decoder, independent of GStreamer).
pub fn probe(init: &[u8], segment: &[u8], video: bool) -> anyhow::Result<Probe> {
    let dir = tempdir();
    let path = dir.join("probe.mp4");
    let mut data = init.to_vec();
    data.extend_from_slice(segment);
    std::fs::write(&path, &data)?;
    let mut args = vec!["-v", "error", "-show_streams", "-of", "json"];
    if video {
        args.extend(["-show_frames", "-select_streams", "v:0"]);
    }
    let out = Command::new("ffprobe")
        .args(&args)
        .arg(&path)
        .output()
        .context("running ffprobe")?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        bail!("ffprobe reported decode errors: {stderr}");
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let s = &v["streams"][0];
    let mut p = Probe {
        codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
        width: s["width"].as_u64().unwrap_or(0) as u32,
        height: s["height"].as_u64().unwrap_or(0) as u32,
        channels: s["channels"].as_u64().unwrap_or(0) as u32,
        sample_rate: s["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        profile: s["profile"].as_str().unwrap_or_default().to_string(),
        frames: Vec::new(),
    };
    if let Some(frames) = v["frames"].as_array() {
        for f in frames {
            let pts = f["pts_time"]
                .as_str()
                .and_then(|t| t.parse::<f64>().ok())
                .or_else(|| {
                    f["best_effort_timestamp_time"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                })
                .unwrap_or(f64::NAN);
            p.frames.push((pts, f["key_frame"].as_i64() == Some(1)));
        }
    }
    Ok(p)
}

/// Runs `node tests/browser/{script} ARGS…` (with `CHROMIUM` = `chromium` and `envs`) from
/// the crate root; returns its exit code and its JSON summary (the last stdout line), after
/// printing its log. Panics when it outlives `timeout` or prints no summary. The exit code
/// is the caller's to judge, after its own checks have said what was wrong.
pub async fn run_browser_script(
    chromium: &str,
    script: &str,
    args: &[&str],
    envs: &[(&str, &std::ffi::OsStr)],
    timeout: Duration,
) -> (Option<i32>, serde_json::Value) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let started = Instant::now();
    let child = tokio::process::Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .env("CHROMIUM", chromium)
        .envs(envs.iter().copied())
        .current_dir(root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`node` runs (Node.js >= 20)");
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{script} still running after {timeout:?}"))
        .expect("browser script output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("---- {script} log ----\n{stderr}----");
    let last = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let summary: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| {
        panic!(
            "no JSON summary from {script} ({e}); exit {:?}; stdout:\n{stdout}",
            out.status
        )
    });
    println!("{}", serde_json::to_string_pretty(&summary).unwrap());
    println!(
        "{script}: {:?} in {:.1}s",
        out.status.code(),
        started.elapsed().as_secs_f64()
    );
    (out.status.code(), summary)
}

/// The failures a browser script's summary lists: its own, its set-up error, each case's.
pub fn script_failures(summary: &serde_json::Value) -> String {
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

/// Fetches the multivariant playlist of a live `stream` and every media playlist it names,
/// and checks the rules of RFC 8216bis (HLS 2nd edition) that any player relies on:
/// multivariant (§4.4.6.2, §6.2.4): BANDWIDTH, AVERAGE-BANDWIDTH, CODECS, RESOLUTION and
/// FRAME-RATE on every variant, its AUDIO group declared with a URI and LANGUAGE, `mp4a` in
/// CODECS when it has one, EXT-X-INDEPENDENT-SEGMENTS; media (§4.4.3.1, §4.4.2.2, §4.4.4.5,
/// §6.2.4, §8): one EXT-X-TARGETDURATION for all renditions, no EXTINF rounded above it,
/// EXT-X-MAP on the first segment and version ≥ 6 for it, EXT-X-PROGRAM-DATE-TIME, and with
/// parts (§4.4.3.7, §4.4.4.9) EXT-X-PART-INF with no part longer than PART-TARGET nor, but
/// where the spec allows, shorter than 85 % of it. Returns the number of media playlists
/// checked.
pub async fn check_playlists(gw: &TestGateway, stream: &str) -> anyhow::Result<usize> {
    let master_url = gw.master_url(stream);
    let (code, text) = gw.get_text(&master_url).await?;
    if code != 200 {
        bail!("{master_url}: {code}");
    }
    let m = m3u8_rs::parse_master_playlist_res(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("master does not parse: {e:?}\n{text}"))?;
    if !text.contains("#EXT-X-INDEPENDENT-SEGMENTS") {
        bail!("no EXT-X-INDEPENDENT-SEGMENTS:\n{text}");
    }
    let mut uris: Vec<String> = Vec::new();
    for v in &m.variants {
        let codecs = v.codecs.as_deref().unwrap_or_default();
        if v.bandwidth == 0
            || v.average_bandwidth.is_none()
            || codecs.is_empty()
            || v.resolution.is_none()
            || v.frame_rate.is_none()
        {
            bail!("variant {} lacks a required attribute:\n{text}", v.uri);
        }
        if let Some(group) = &v.audio {
            let declared = m.alternatives.iter().any(|a| {
                &a.group_id == group
                    && a.media_type == m3u8_rs::AlternativeMediaType::Audio
                    && a.uri.is_some()
                    && a.language.is_some()
            });
            if !declared || !codecs.contains("mp4a") {
                bail!(
                    "variant {}: audio group {group} undeclared or not in CODECS:\n{text}",
                    v.uri
                );
            }
        }
        uris.push(v.uri.clone());
    }
    uris.extend(m.alternatives.iter().filter_map(|a| a.uri.clone()));
    let mut target = None;
    for uri in &uris {
        let url = resolve(&master_url, uri);
        let (code, text) = gw.get_text(&url).await?;
        if code != 200 {
            bail!("{url}: {code}");
        }
        let pl = parse_media(&text)?;
        if *target.get_or_insert(pl.target_duration) != pl.target_duration {
            bail!("{url}: EXT-X-TARGETDURATION differs between renditions");
        }
        for seg in &pl.segments {
            if f64::from(seg.duration).round() as u64 > pl.target_duration {
                bail!(
                    "{url}: EXTINF {} above TARGETDURATION {}",
                    seg.duration,
                    pl.target_duration
                );
            }
        }
        if pl.segments.first().and_then(|s| s.map.as_ref()).is_none() || pl.version.unwrap_or(1) < 6
        {
            bail!("{url}: no EXT-X-MAP on the first segment, or version < 6:\n{text}");
        }
        if !text.contains("#EXT-X-PROGRAM-DATE-TIME:") {
            bail!("{url}: no EXT-X-PROGRAM-DATE-TIME");
        }
        if text.contains("#EXT-X-PART:") {
            let ll = ll::LlPlaylist::parse(&text);
            let target = ll.part_target;
            if target <= 0.0 {
                bail!("{url}: parts without EXT-X-PART-INF");
            }
            for (i, part) in ll.parts.iter().enumerate() {
                if part.duration > target + 1e-3 {
                    bail!(
                        "{url}: part {i} of {} ({} s, msn {}) above PART-TARGET {target}:\n{text}",
                        ll.parts.len(),
                        part.duration,
                        part.msn
                    );
                }
                // At least 85 % of PART-TARGET, but for INDEPENDENT and GAP parts, the part
                // before a GAP and a segment's last part (HLS2 §4.4.4.9). The newest listed
                // part may turn out to be its segment's last: not judged.
                let Some(next) = ll.parts.get(i + 1) else {
                    continue;
                };
                let exempt = part.independent || part.gap || next.gap || next.msn != part.msn;
                if !exempt && part.duration < 0.85 * target - 1e-3 {
                    bail!(
                        "{url}: part {i} of {} ({} s, msn {}) below 85 % of PART-TARGET \
                         {target}:\n{text}",
                        ll.parts.len(),
                        part.duration,
                        part.msn
                    );
                }
            }
        }
    }
    Ok(uris.len())
}

/// Downloads a rendition's init segment and its listed segments (the first `limit`, from
/// the first listed) and joins them into one fMP4 file under a fresh temporary directory.
pub async fn join_rendition(
    gw: &TestGateway,
    playlist_url: &str,
    playlist: &MediaPlaylist,
    limit: usize,
) -> anyhow::Result<std::path::PathBuf> {
    let map = playlist.segments[0]
        .map
        .as_ref()
        .context("first segment has no EXT-X-MAP")?;
    let mut data = gw.get_bytes(&resolve(playlist_url, &map.uri)).await?;
    for seg in playlist.segments.iter().take(limit) {
        data.extend(gw.get_bytes(&resolve(playlist_url, &seg.uri)).await?);
    }
    let path = tempdir().join("joined.mp4");
    std::fs::write(&path, &data)?;
    Ok(path)
}

/// The audio packets of a file as ffprobe reads them: (pts in samples of the stream's time
/// base, duration in samples), and the time base's denominator.
pub fn audio_packets(path: &std::path::Path) -> anyhow::Result<(Vec<(i64, i64)>, i64)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0", "-show_packets"])
        .args([
            "-show_entries",
            "packet=pts,duration:stream=time_base",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    if !out.status.success() {
        bail!("ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let tb = v["streams"][0]["time_base"]
        .as_str()
        .and_then(|t| t.split('/').nth(1))
        .and_then(|d| d.parse().ok())
        .context("no time base")?;
    let packets = v["packets"]
        .as_array()
        .context("no packets")?
        .iter()
        .map(|p| {
            (
                p["pts"].as_i64().unwrap_or(i64::MIN),
                p["duration"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    Ok((packets, tb))
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("whipcast-test-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Downloads and probes every listed segment of a rendition; returns, per media sequence
/// number, the first frame's pts and the probe.
pub async fn probe_rendition(
    gw: &TestGateway,
    playlist_url: &str,
    playlist: &MediaPlaylist,
    video: bool,
) -> anyhow::Result<BTreeMap<u64, Probe>> {
    let map = playlist.segments[0]
        .map
        .as_ref()
        .context("first segment has no EXT-X-MAP")?;
    let init = gw.get_bytes(&resolve(playlist_url, &map.uri)).await?;
    let mut out = BTreeMap::new();
    for (i, seg) in playlist.segments.iter().enumerate() {
        let data = gw.get_bytes(&resolve(playlist_url, &seg.uri)).await?;
        let p = probe(&init, &data, video).with_context(|| format!("segment {}", seg.uri))?;
        out.insert(playlist.media_sequence + i as u64, p);
    }
    Ok(out)
}

/// Where each segment of each of `renditions` of `stream` starts: the first frame's PTS (s),
/// by media sequence number, read by ffprobe. Panics unless every segment decodes and starts
/// with a keyframe.
pub async fn segment_starts(
    gw: &TestGateway,
    stream: &str,
    renditions: &[&str],
) -> BTreeMap<String, BTreeMap<u64, f64>> {
    let mut starts = BTreeMap::new();
    for r in renditions {
        let url = gw.url(&format!("/hls/{stream}/{r}/index.m3u8"));
        let (status, text) = gw.get_text(&url).await.unwrap();
        assert_eq!(status, 200, "{url}");
        let playlist = parse_media(&text).unwrap();
        let probes = probe_rendition(gw, &url, &playlist, true)
            .await
            .unwrap_or_else(|e| panic!("{r}: {e:#}\n{text}"));
        let firsts = probes
            .into_iter()
            .map(|(seq, p)| {
                let (pts, key) = p.frames.first().copied().unwrap_or((f64::NAN, false));
                assert!(key, "{r} segment {seq} does not start with a keyframe");
                (seq, pts)
            })
            .collect();
        starts.insert(r.to_string(), firsts);
    }
    starts
}

/// Checks that segment N starts within `limit` seconds in every rendition of `starts`, for
/// each N of `seqs` that every rendition lists (HLS2 §6.2.4: ABR switching needs it).
/// Returns how many were compared and the largest spread.
pub fn assert_segments_aligned(
    starts: &BTreeMap<String, BTreeMap<u64, f64>>,
    seqs: impl IntoIterator<Item = u64>,
    limit: f64,
) -> (usize, f64) {
    let (mut compared, mut worst) = (0, 0.0f64);
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
            spread <= limit,
            "segment {seq} starts {spread:.3} s apart across renditions: {:?}\n\
             every listed segment's start (s) by rendition: {starts:?}",
            starts
                .iter()
                .map(|(r, m)| (r, m.get(&seq)))
                .collect::<Vec<_>>()
        );
        compared += 1;
    }
    (compared, worst)
}

/// `GET /metrics`, parsed: each sample (`name{labels}` exactly as written) → value. Checks
/// the exposition's shape on the way: content type, the closing `# EOF`, and every
/// sample's family declared by `# TYPE` before it (a counter's samples carry the family
/// name plus `_total`, OpenMetrics 1.0 "Counter").
pub async fn metrics(gw: &TestGateway) -> HashMap<String, f64> {
    let r = gw.http.get(gw.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "no EOF: {text}");
    let mut declared = HashMap::new();
    let mut out = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            declared.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (sample, value) = line.rsplit_once(' ').unwrap();
        let name = sample.split('{').next().unwrap();
        let counter = name
            .strip_suffix("_total")
            .is_some_and(|family| declared.get(family).is_some_and(|k| k == "counter"));
        let other = declared.get(name).is_some_and(|k| k != "counter");
        assert!(counter || other, "undeclared family: {line}");
        out.insert(sample.to_string(), value.parse::<f64>().unwrap());
    }
    out
}

/// The `rendition` of every entry of `plan[key]` (a simulcast plan of `/api/streams`:
/// `layers`, `alignment`).
pub fn plan_renditions<'a>(plan: &'a serde_json::Value, key: &str) -> Vec<&'a str> {
    plan[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in the simulcast plan: {plan}"))
        .iter()
        .map(|l| l["rendition"].as_str().expect("a rendition name"))
        .collect()
}

/// `stream` as /api/streams shows it.
pub async fn stream_summary(gw: &TestGateway, stream: &str) -> serde_json::Value {
    let (_, text) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stream)
        .unwrap_or_else(|| panic!("{stream} not in /api/streams: {text}"))
        .clone()
}

/// The broadcast epoch of `stream` and its `outputs` (recording, object storage) as
/// /api/streams shows them.
pub async fn stream_outputs(gw: &TestGateway, stream: &str) -> (String, Vec<serde_json::Value>) {
    let s = stream_summary(gw, stream).await;
    let epoch = s["epoch"].as_str().unwrap().to_string();
    (epoch, s["outputs"].as_array().unwrap().clone())
}

/// The only output of `stream` (asserted), and the broadcast epoch.
pub async fn output_status(gw: &TestGateway, stream: &str) -> (String, serde_json::Value) {
    let (epoch, outputs) = stream_outputs(gw, stream).await;
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    (epoch, outputs[0].clone())
}

/// Polls /api/streams until the stream's first output satisfies `ok`; returns it.
pub async fn wait_output(
    gw: &TestGateway,
    stream: &str,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, outputs) = stream_outputs(gw, stream).await;
        let o = outputs.first().cloned().unwrap_or_default();
        if ok(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "output never {what}: {o}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Decodes every stream of an HLS playlist (a path, or a URL ffmpeg fetches itself) to its
/// end with ffmpeg; fails on any error message.
pub fn decode_all(input: &str) {
    let errors = decode_errors(input);
    assert!(
        errors.is_empty(),
        "ffmpeg could not decode {input}: {errors}"
    );
}

/// What ffmpeg says (its error messages, or its exit status) decoding every stream of
/// `input` to its end; empty when it decoded everything without a complaint.
pub fn decode_errors(input: &str) -> String {
    let out = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", input, "-map", "0", "-f", "null", "-",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if out.status.success() {
        stderr
    } else {
        format!("{} {stderr}", out.status)
    }
}

/// A TCP connection to `addr` from the loopback address `from` (127.0.0.0/8 is all ours).
pub async fn connect_from(from: &str, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    s.connect(addr).await
}

/// `GET path` over HTTP/1.1 from loopback address `from`; the whole response text.
pub async fn get_from(from: &str, addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = connect_from(from, addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    Ok(out)
}
