//! End to end with WebRTC stacks nobody on this project wrote: GStreamer's webrtcbin
//! (through PyGObject) and aiortc publish over WHIP (RFC 9725) on loopback, and ffmpeg
//! decodes what whipcast serves. The publishers are `tests/publishers/*.py`; each offers
//! what its stack offers by itself (webrtcbin: max-bundle with `m=audio 0` + `a=bundle-only`,
//! RFC 8843 §7.2.1; aiortc: VP8 first, a transport per m-section), which whipcast's own test
//! publisher (webrtc-rs, the same stack as the server) never does.
//!
//! Each test checks: the ladder appears, the audio section was taken (`ingest.audio`), every
//! rendition decodes without an ffmpeg message, the audio rendition carries the publisher's
//! 440 Hz tone (Goertzel, not generated silence), the publisher's own DELETE ends the stream
//! (`EXT-X-ENDLIST` everywhere) and ffmpeg decodes the ended multivariant playlist whole.
//!
//! Needs `deploy/install-publisher-deps.sh` (PyGObject, GstWebRTC/GstSdp/Nice introspection
//! data, libnice's plugin; aiortc in `target/test-venv`); a missing piece fails the test with
//! the script's message, it never skips. Run in a loopback-only namespace
//! (`deploy/netns-run.sh`), as `make test` does.
#![allow(clippy::unwrap_used)]

mod common;

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestGateway, decode_all, resolve, stream_summary, test_config};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long each script publishes before it DELETEs its session: the live checks below take
/// 4–9 s on 2 cores; they must be done before the publisher stops (asserted).
const PUBLISH_SECONDS: u64 = 20;

/// The test ladder's rungs under a 640x360 source (common::TEST_LADDER).
const RUNGS: usize = 3;

/// The publishers' tone and the frequencies it must dominate.
const TONE_HZ: f64 = 440.0;
const OTHER_HZ: [f64; 2] = [1000.0, 3000.0];

/// The audio window analysed: 2 s at 48 kHz. 440, 1000 and 3000 Hz are whole DFT bins of
/// it (0.5 Hz apart), so a steady tone puts no leakage into the other two.
const RATE: usize = 48_000;
const WINDOW: usize = 2 * RATE;

/// A publisher script running as a child process; its stderr is echoed and kept.
struct Script {
    name: &'static str,
    child: Child,
    log: Arc<Mutex<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Script {
    /// Runs `python tests/publishers/{script} {url} {PUBLISH_SECONDS}`.
    fn spawn(name: &'static str, python: &Path, script: &str, url: &str) -> Script {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(
            python.exists(),
            "{} is missing: run `bash deploy/install-publisher-deps.sh`",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/publishers").join(script))
            .arg(url)
            .arg(PUBLISH_SECONDS.to_string())
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot run {}: {e}", python.display()));
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{name}] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        Script {
            name,
            child,
            log,
            reader,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Fails the test if the script has already exited (it publishes for PUBLISH_SECONDS).
    fn assert_running(&mut self, what: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{}: publisher exited ({status}) before {what}:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Runs `fut` while watching the script: if it exits first, fails with its log.
    async fn while_running<T>(&mut self, what: &str, fut: impl Future<Output = T>) -> T {
        tokio::select! {
            out = fut => out,
            status = self.child.wait() => {
                // Let the reader drain the last lines (the script's error message).
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{}: publisher exited ({}) while waiting for {what}:\n{}",
                    self.name,
                    status.unwrap(),
                    self.log()
                );
            }
        }
    }

    /// Waits for the script to end by itself (after its DELETE); its status and full log.
    async fn finish(mut self) -> (ExitStatus, String) {
        let limit = Duration::from_secs(PUBLISH_SECONDS + 30);
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{}: still running after {limit:?}", self.name))
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.reader).await;
        (status, self.log())
    }
}

/// The codec of the answer's video section (its first payload type), from a script's log.
fn answered_video_codec(log: &str) -> String {
    let answer = log.split("answer:").nth(1).expect("answer in the log");
    let mline = answer
        .lines()
        .find(|l| l.starts_with("m=video"))
        .expect("m=video in the answer");
    let pt = mline.split_whitespace().nth(3).expect("a payload type");
    let rtpmap = format!("a=rtpmap:{pt} ");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(rtpmap.as_str()))
        .and_then(|codec| codec.split('/').next())
        .unwrap_or_else(|| panic!("no rtpmap for {pt} in the answer:\n{answer}"))
        .to_ascii_uppercase()
}

/// The `m=` lines of the offer in a script's log, for the report.
fn offer_mlines(log: &str) -> Vec<String> {
    let offer = log.split("offer:").nth(1).unwrap_or_default();
    let offer = offer.split("answer:").next().unwrap_or_default();
    offer
        .lines()
        .filter(|l| l.starts_with("m=") || l.starts_with("a=bundle-only"))
        .map(str::to_string)
        .collect()
}

/// Init section + every listed segment of a rendition, as one fMP4 file's bytes.
async fn fetch_rendition(gw: &TestGateway, url: &str) -> Vec<u8> {
    let (_, text) = gw.get_text(url).await.unwrap();
    let pl = common::parse_media(&text).unwrap();
    let map = pl.segments[0].map.as_ref().expect("EXT-X-MAP");
    let mut data = gw.get_bytes(&resolve(url, &map.uri)).await.unwrap();
    for s in &pl.segments {
        data.extend(gw.get_bytes(&resolve(url, &s.uri)).await.unwrap());
    }
    data
}

fn scratch_dir(stream: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("whipcast-3p-{}-{stream}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Amplitude (full scale = 1) of the `freq` component of `x`: a Goertzel filter over a
/// Hann-windowed `x`, normalised by the window's sum.
fn tone_amplitude(x: &[f64], freq: f64) -> f64 {
    let n = x.len() as f64;
    let coeff = 2.0 * (2.0 * PI * freq / RATE as f64).cos();
    let (mut s1, mut s2, mut weight) = (0.0_f64, 0.0_f64, 0.0_f64);
    for (i, v) in x.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1.0)).cos();
        weight += w;
        let s = v * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / weight
}

/// Decodes an AAC rendition file to 48 kHz mono PCM (ffmpeg), as samples in [-1, 1].
/// ffmpeg's messages are printed, not fatal: whether the rendition decodes cleanly is the
/// decode check's business; this one is about what it sounds like.
fn decode_pcm(path: &Path) -> Vec<f64> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg could not decode the audio: {stderr}"
    );
    if !stderr.trim().is_empty() {
        println!("ffmpeg said, decoding the audio to PCM: {}", stderr.trim());
    }
    out.stdout
        .chunks_exact(2)
        .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// The last 2 s of the audio rendition must be the publisher's 440 Hz tone: well above
/// silence (what whipcast generates when it has no audio) and dominating 1 and 3 kHz.
async fn check_tone(gw: &TestGateway, stack: &str, audio_url: &str, dir: &Path) {
    // Four 1 s segments give 2 s of steady tone even after the broadcast's first one.
    gw.wait_segments(audio_url, 4, Duration::from_secs(30))
        .await
        .unwrap();
    let path = dir.join("audio-tone.mp4");
    std::fs::write(&path, fetch_rendition(gw, audio_url).await).unwrap();
    let pcm = decode_pcm(&path);
    assert!(
        pcm.len() >= WINDOW + RATE / 10,
        "only {:.2} s of audio decoded",
        pcm.len() as f64 / RATE as f64
    );
    let x = &pcm[pcm.len() - WINDOW..];
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
    let tone = tone_amplitude(x, TONE_HZ);
    let others: Vec<f64> = OTHER_HZ.iter().map(|&f| tone_amplitude(x, f)).collect();
    // A pure sine of amplitude A has RMS A/√2: the tone's share of the signal's RMS.
    let share = tone / 2f64.sqrt() / rms.max(f64::MIN_POSITIVE);
    println!(
        "{stack} tone over {:.1} s of {:.1} s decoded: rms {rms:.4} ({:.1} dBFS), \
         amplitude at 440 Hz {tone:.4}, at 1000 Hz {:.6}, at 3000 Hz {:.6}, \
         440 Hz share of rms {share:.3}",
        WINDOW as f64 / RATE as f64,
        pcm.len() as f64 / RATE as f64,
        20.0 * rms.max(1e-9).log10(),
        others[0],
        others[1],
    );
    assert!(
        rms > 0.02,
        "{stack}: the audio rendition is silent (rms {rms:.5}): whipcast did not use the publisher's audio"
    );
    for (f, a) in OTHER_HZ.iter().zip(&others) {
        assert!(
            tone > 20.0 * a,
            "{stack}: 440 Hz ({tone:.4}) does not dominate {f} Hz ({a:.5})"
        );
    }
    assert!(
        share > 0.7,
        "{stack}: 440 Hz is only {share:.3} of the rms: not the publisher's tone"
    );
}

/// Publishes with `script` and checks everything whipcast serves for it (see the file doc).
async fn publish_and_check(
    stack: &'static str,
    python: &Path,
    script: &str,
    stream: &str,
    video_codec: &str,
) {
    let started = Instant::now();
    let gw = TestGateway::start(test_config("")).await;
    let mut publisher = Script::spawn(stack, python, script, &gw.whip_url(stream));

    let master_url = gw.master_url(stream);
    let master = publisher
        .while_running(
            "the multivariant playlist",
            gw.wait_master(stream, RUNGS, Duration::from_secs(30)),
        )
        .await
        .unwrap();
    let live_at = started.elapsed();
    let log = publisher.log();
    println!("{stack} offer: {:?}", offer_mlines(&log));
    assert_eq!(
        answered_video_codec(&log),
        video_codec,
        "{stack}: the answer picked another video codec"
    );

    let summary = stream_summary(&gw, stream).await;
    println!("{stack} ingest: {}", summary["ingest"]);
    assert_eq!(
        summary["ingest"]["audio"],
        true,
        "{stack}: whipcast did not take the offer's audio section ({:?}), so the audio rendition \
         is generated silence; `m=audio 0` with `a=bundle-only` is part of the BUNDLE group \
         (RFC 8843 §7.2.1), not a rejected section (RFC 3264 §6): {summary}",
        offer_mlines(&log)
    );

    // Every rendition: 3+ segments.
    let audio_url = resolve(
        &master_url,
        master.alternatives[0].uri.as_deref().expect("audio URI"),
    );
    let mut renditions = vec![audio_url.clone()];
    renditions.extend(master.variants.iter().map(|v| resolve(&master_url, &v.uri)));
    for url in &renditions {
        publisher
            .while_running(
                "3 segments in every rendition",
                gw.wait_segments(url, 3, Duration::from_secs(30)),
            )
            .await
            .unwrap();
    }
    let dir = scratch_dir(stream);
    // What the audio sounds like first: it tells the publisher's audio from generated
    // silence even when the decode check below fails.
    check_tone(&gw, stack, &audio_url, &dir).await;
    // Init + listed segments of every rendition, decoded by ffmpeg without a message (a
    // bounded piece: the live playlists themselves never end).
    for url in &renditions {
        let name = url.rsplit('/').nth(1).unwrap();
        let path = dir.join(format!("{name}.mp4"));
        std::fs::write(&path, fetch_rendition(&gw, url).await).unwrap();
        decode_all(path.to_str().unwrap());
    }
    // The playlists follow RFC 8216bis §4 and §6 (common::check_playlists).
    common::check_playlists(&gw, stream).await.unwrap();
    // Everything above must have seen a live stream, not what is left after the DELETE.
    publisher.assert_running("the live checks were done (raise PUBLISH_SECONDS)");
    let checked_at = started.elapsed();

    // The publisher stops by itself: DELETE on its session URL, then exit 0.
    let (status, log) = publisher.finish().await;
    assert!(
        status.success(),
        "{stack}: publisher exited {status}:\n{log}"
    );
    assert!(log.contains("DELETE "), "{log}");
    let stopped_at = started.elapsed();

    // Every media playlist of the master ends: EXT-X-ENDLIST.
    let deadline = Instant::now() + Duration::from_secs(10);
    for url in &renditions {
        loop {
            let (_, text) = gw.get_text(url).await.unwrap();
            if text.trim_end().ends_with("#EXT-X-ENDLIST") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{url} has no EXT-X-ENDLIST after the DELETE:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Ended, the multivariant playlist is finite: ffmpeg reads it as a player would, every
    // stream (-map 0), to its end, without a message.
    decode_all(&master_url);

    println!(
        "{stack}: live after {:.1} s, checks done at {:.1} s, publisher exited 0 at {:.1} s, \
         test done at {:.1} s",
        live_at.as_secs_f64(),
        checked_at.as_secs_f64(),
        stopped_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webrtcbin_max_bundle_publishes_audio_and_video() {
    publish_and_check(
        "webrtcbin",
        Path::new("/usr/bin/python3"),
        "webrtcbin_whip.py",
        "webrtcbin",
        "H264",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aiortc_publishes_vp8_and_opus() {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    publish_and_check("aiortc", &venv, "aiortc_whip.py", "aiortc", "VP8").await;
}
