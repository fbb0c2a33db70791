//! End-to-end audio/video synchronisation: our publisher flashes one white frame and starts
//! a 1 kHz beep at every whole second of its capture clock ([`PublisherOptions::av_marks`]),
//! over WHIP; whipcast transcodes the ladder; every video rung and the audio rendition are
//! fetched over HTTP for the same segments, decoded by ffmpeg (a reader nobody here wrote),
//! and each flash must be heard within 40 ms of when it is seen, on every rung.
//!
//! Published: H.264 640x360@30 + Opus; the test ladder (360p, 240p, 180p) with 1 s segments.
//! Both renditions are read on the timeline the segments declare (`tfdt`, from whipcast's
//! pipeline running time), raw: that is the timeline HLS players align renditions by, so
//! nothing is normalised to zero on the way.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, join_rendition, resolve, test_config};
use m3u8_rs::MediaPlaylist;

const STREAM: &str = "avsync";
/// Whole 1 s segments measured, the same ones (media sequence numbers) in every rendition.
const SEGMENTS: usize = 8;
/// About one video frame at 30 fps, the usual lip-sync budget for "in sync"; the marks are
/// exact at capture, so this is what whipcast (and its encoders) may add.
const TOLERANCE_MS: f64 = 40.0;
/// Flash/beep pairs needed per rung: 8 s of segments hold 7 or 8 marks; a few may sit too
/// close to the span's ends to be paired.
const MIN_PAIRS: usize = 5;
/// Audio analysis windows: 1 ms at 48 kHz.
const RATE: usize = 48_000;
const WINDOW: usize = RATE / 1000;
/// A window whose peak exceeds this is "sound": the beep is a 0.8 full-scale sine
/// (~26 000), codec pre-echo and silence stay far below.
const LOUD: i16 = 6_000;
/// Silence needed before a loud window counts as a beep onset (a beep lasts 100 ms, the
/// gap to the next is 900 ms).
const QUIET_BEFORE_MS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flash_and_beep_stay_together_on_every_rung() {
    let mut cfg = test_config("");
    // The segments measured, and a few more, must all still be listed.
    cfg.hls.window_segments = 14;
    let gw = TestGateway::start(cfg).await;
    let opts = PublisherOptions::whip(&gw.whip_url(STREAM))
        .with_format(640, 360, 30)
        .with_av_marks();
    let publisher = Publisher::start(opts).await.expect("publisher connects");
    let master_url = gw.master_url(STREAM);
    let master = gw
        .wait_master(STREAM, 3, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(master.variants.len(), 3, "{master:?}");
    let audio = master
        .alternatives
        .iter()
        .find(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .and_then(|a| a.uri.clone())
        .expect("an audio rendition");

    // (name, playlist URL), audio first.
    let mut renditions = vec![("audio".to_string(), resolve(&master_url, &audio))];
    for v in &master.variants {
        let name = v
            .resolution
            .map_or_else(|| v.uri.clone(), |r| format!("{}x{}", r.width, r.height));
        renditions.push((name, resolve(&master_url, &v.uri)));
    }
    // One more than measured: the renditions finish a segment at slightly different
    // moments, and all must list the same SEGMENTS.
    for (_, url) in &renditions {
        gw.wait_segments(url, SEGMENTS + 1, Duration::from_secs(60))
            .await
            .unwrap();
    }
    // Fresh playlists, then the media sequence range every one of them lists.
    let mut playlists = Vec::new();
    for (_, url) in &renditions {
        let (status, text) = gw.get_text(url).await.unwrap();
        assert_eq!(status, 200, "{url}");
        playlists.push(common::parse_media(&text).unwrap());
    }
    let first = playlists.iter().map(|p| p.media_sequence).max().unwrap();
    let end = playlists
        .iter()
        .map(|p| p.media_sequence + p.segments.len() as u64)
        .min()
        .unwrap();
    assert!(
        end >= first + SEGMENTS as u64,
        "renditions share segments {first}..{end} only"
    );

    let mut joined = Vec::new();
    for ((name, url), pl) in renditions.iter().zip(&playlists) {
        let pl = from_sequence(pl, first);
        let path = join_rendition(&gw, url, &pl, SEGMENTS).await.unwrap();
        println!(
            "{name}: segments {first}..{} → {}",
            first + SEGMENTS as u64,
            path.display()
        );
        joined.push((name.clone(), path));
    }
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;

    let (_, audio_path) = &joined[0];
    let beeps = audio_beeps(audio_path);
    println!(
        "audio: {:.3}..{:.3} s, beeps at {:?}",
        beeps.span.0,
        beeps.span.1,
        rounded(&beeps.times)
    );
    let mut failures = Vec::new();
    for (name, path) in &joined[1..] {
        let flashes = video_flashes(path);
        println!(
            "{name}: {} frames, {:.3}..{:.3} s, flashes at {:?}",
            flashes.frames,
            flashes.span.0,
            flashes.span.1,
            rounded(&flashes.times)
        );
        // A flash is paired only where the audio could show its beep: far enough into the
        // audio's span for the silence before an onset to be seen, and before its end.
        let offsets: Vec<f64> = flashes
            .times
            .iter()
            .filter(|&&t| {
                t >= beeps.span.0 + QUIET_BEFORE_MS as f64 / 1000.0 + 0.05
                    && t <= beeps.span.1 - 0.05
            })
            .map(|&t| {
                let beep = beeps
                    .times
                    .iter()
                    .copied()
                    .min_by(|a, b| (a - t).abs().total_cmp(&(b - t).abs()))
                    .unwrap_or(f64::INFINITY);
                // > 0: the beep is heard after the flash is seen.
                (beep - t) * 1000.0
            })
            .collect();
        let shown: Vec<String> = offsets.iter().map(|o| format!("{o:+.1}")).collect();
        println!("{name}: beep − flash (ms) = [{}]", shown.join(", "));
        if offsets.len() < MIN_PAIRS {
            failures.push(format!(
                "{name}: {} flash/beep pairs, want ≥ {MIN_PAIRS}",
                offsets.len()
            ));
        }
        if let Some(worst) = offsets
            .iter()
            .copied()
            .max_by(|a, b| a.abs().total_cmp(&b.abs()))
            .filter(|w| w.abs() > TOLERANCE_MS)
        {
            failures.push(format!(
                "{name}: beep − flash up to {worst:+.1} ms (> ±{TOLERANCE_MS} ms): [{}]",
                shown.join(", ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `pl` from media sequence number `msn` on, keeping the `EXT-X-MAP` (which the parser
/// attaches to the first listed segment only).
fn from_sequence(pl: &MediaPlaylist, msn: u64) -> MediaPlaylist {
    let mut out = pl.clone();
    let map = out.segments[0].map.clone();
    out.segments.drain(..(msn - pl.media_sequence) as usize);
    out.media_sequence = msn;
    if out.segments[0].map.is_none() {
        out.segments[0].map = map;
    }
    out
}

fn rounded(times: &[f64]) -> Vec<f64> {
    times
        .iter()
        .map(|t| (t * 1000.0).round() / 1000.0)
        .collect()
}

struct Marks {
    /// Seconds, on the segments' own timeline.
    times: Vec<f64>,
    /// First and last timestamp decoded, seconds.
    span: (f64, f64),
    /// Decoded video frames (video only).
    frames: usize,
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_slice(&run(cmd)).unwrap()
}

fn seconds(v: &serde_json::Value) -> Option<f64> {
    v.as_str().and_then(|s| s.parse().ok())
}

/// Flash times: the pts of each frame much brighter than the one before.
fn video_flashes(path: &Path) -> Marks {
    // ffprobe reports the demuxer's timestamps as they are (no shift to zero).
    let frames = json(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_frames"])
            .args(["-show_entries", "frame=pts_time,best_effort_timestamp_time"])
            .args(["-of", "json"])
            .arg(path),
    );
    let pts: Vec<f64> = frames["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            seconds(&f["pts_time"])
                .or_else(|| seconds(&f["best_effort_timestamp_time"]))
                .unwrap()
        })
        .collect();
    // The same frames, 8x8 grey; `passthrough` so ffmpeg neither drops nor duplicates a
    // frame to make the rate constant (the frames must pair one to one with the pts).
    let gray = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-copyts", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vf", "scale=8:8,format=gray"])
        .args(["-fps_mode", "passthrough", "-f", "rawvideo", "-"]));
    let luma: Vec<f64> = gray
        .chunks(64)
        .map(|f| f.iter().map(|&y| f64::from(y)).sum::<f64>() / 64.0)
        .collect();
    assert_eq!(
        luma.len(),
        pts.len(),
        "ffmpeg and ffprobe disagree on the frames of {}",
        path.display()
    );
    let times = luma
        .windows(2)
        .zip(&pts[1..])
        .filter(|(w, _)| w[0] < 64.0 && w[1] > 128.0)
        .map(|(_, &t)| t)
        .collect();
    Marks {
        times,
        span: (pts[0], *pts.last().unwrap()),
        frames: pts.len(),
    }
}

/// Beep onsets: the first loud sample of the first loud 1 ms window after ≥ 500 ms of quiet,
/// timed by the decoded frame it is in.
///
/// AAC priming. libavcodec's AAC encoder (what whipcast's `avenc_aac` is) puts 1024 samples
/// of encoder delay before the first input sample. A file can say so with an edit list
/// (`elst` media_time = 1024): ffmpeg then shifts the packets' pts back by it and marks the
/// first packet "skip 1024 samples", so the first decoded frame starts 1024 samples after
/// the first packet (checked on a progressive .mp4 made by ffmpeg: first packet pts -1024,
/// skip 1024, first decoded frame pts 0). Measured on whipcast's audio rendition (cmafmux,
/// GStreamer 1.22, ffmpeg 5.1): the init has no `edts`/`elst`, `stream start_time` = first
/// packet pts = first decoded frame pts = the first `tfdt` (e.g. 766/48000 s), no skip side
/// data, and the first frame decodes to 1024 samples. So nothing is skipped, and the
/// priming is presented at the `tfdt` like any audio: whipcast therefore moves the encoder's
/// output timestamps back by the 1024 samples itself (media/audio.rs `remove_encoder_delay`;
/// before that, every beep was heard 21.3 ms after its flash). Rather than assume either
/// case, each sample is timed by the decoded frames' own pts (after any skip ffmpeg
/// applied), and what ffmpeg signalled is reported.
fn audio_beeps(path: &Path) -> Marks {
    let probe = json(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0", "-show_frames"])
            .args([
                "-show_entries",
                "stream=start_time,time_base,sample_rate:frame=pts,nb_samples",
            ])
            .args(["-of", "json"])
            .arg(path),
    );
    let stream = &probe["streams"][0];
    let tb: f64 = stream["time_base"]
        .as_str()
        .and_then(|t| t.split_once('/'))
        .map(|(n, d)| n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap())
        .unwrap();
    assert_eq!(stream["sample_rate"], RATE.to_string(), "{stream}");
    // (first sample's time, samples) of every decoded frame, in decode order.
    let frames: Vec<(f64, usize)> = probe["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["pts"].as_i64().unwrap() as f64 * tb,
                f["nb_samples"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let packets = json(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "a:0", "-show_packets"])
            .args(["-read_intervals", "%+#1", "-of", "json"])
            .args(["-show_entries", "packet=pts:packet_side_data"])
            .arg(path),
    );
    let packet = &packets["packets"][0];
    let skip = packet["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| d["skip_samples"].as_u64())
        .unwrap_or(0);
    let first_packet = packet["pts"].as_i64().unwrap() as f64 * tb;
    println!(
        "audio: stream start_time {}, first packet pts {first_packet:.6} s (skip {skip} samples), \
         first decoded frame pts {:.6} s with {} samples: {}",
        stream["start_time"].as_str().unwrap_or("?"),
        frames[0].0,
        frames[0].1,
        if skip == 0 {
            "no priming signalled (whipcast removes it from the timestamps)"
        } else {
            "priming signalled and skipped"
        }
    );
    let pcm = run(Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-copyts", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-ac",
            "1",
            "-f",
            "s16le",
            "-c:a",
            "pcm_s16le",
            "-",
        ]));
    let samples: Vec<i16> = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(
        frames.iter().map(|f| f.1).sum::<usize>(),
        samples.len(),
        "ffmpeg and ffprobe disagree on the samples of {}",
        path.display()
    );
    // Sample index → time, through the frame it belongs to (no assumption that the
    // frames are contiguous).
    let mut starts = Vec::with_capacity(frames.len());
    let mut n = 0;
    for f in &frames {
        starts.push(n);
        n += f.1;
    }
    let time_of = |s: usize| {
        let k = starts.partition_point(|&x| x <= s) - 1;
        frames[k].0 + (s - starts[k]) as f64 / RATE as f64
    };
    let mut times = Vec::new();
    let mut quiet = 0usize;
    for (w, window) in samples.chunks(WINDOW).enumerate() {
        match window.iter().position(|s| s.unsigned_abs() > LOUD as u16) {
            Some(i) => {
                if quiet >= QUIET_BEFORE_MS {
                    times.push(time_of(w * WINDOW + i));
                }
                quiet = 0;
            }
            None => quiet += 1,
        }
    }
    let (last_t, last_n) = *frames.last().unwrap();
    Marks {
        times,
        span: (frames[0].0, last_t + last_n as f64 / RATE as f64),
        frames: 0,
    }
}
