//! End to end over WHIP: a real WebRTC publisher (GStreamer H.264 + Opus) → whipcast →
//! HLS fetched over HTTP and decoded by ffprobe.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, probe_rendition, resolve, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_h264_publish_yields_aligned_abr_hls_and_endlist_after_delete() {
    let gw = TestGateway::start(test_config("")).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("cam1")).with_format(640, 360, 30))
            .await
            .expect("publisher connects");
    let session = publisher.session_url().expect("Location").to_string();
    assert!(
        session.starts_with(&gw.base),
        "Location must be absolute: {session}"
    );

    let master_url = gw.master_url("cam1");
    let master = gw
        .wait_master("cam1", 3, Duration::from_secs(30))
        .await
        .unwrap();
    let (_, master_text) = gw.get_text(&master_url).await.unwrap();
    assert!(
        master_text.contains("#EXT-X-INDEPENDENT-SEGMENTS"),
        "{master_text}"
    );

    // Rungs: every ladder rung fits under the 360p source.
    let mut sizes: Vec<(u64, u64)> = master
        .variants
        .iter()
        .map(|v| {
            let r = v.resolution.expect("RESOLUTION");
            (r.width, r.height)
        })
        .collect();
    sizes.sort();
    assert_eq!(sizes, [(320, 180), (426, 240), (640, 360)]);
    for v in &master.variants {
        let codecs = v.codecs.as_deref().expect("CODECS");
        assert!(codecs.starts_with("avc1."), "{codecs}");
        assert!(codecs.ends_with(",mp4a.40.2"), "{codecs}");
        assert!(v.average_bandwidth.is_some(), "AVERAGE-BANDWIDTH");
        assert!(v.bandwidth >= v.average_bandwidth.unwrap());
        assert_eq!(v.frame_rate, Some(30.0));
        assert_eq!(v.audio.as_deref(), Some("aac"));
    }
    let audio = &master.alternatives[0];
    assert_eq!(audio.language.as_deref(), Some("en"));

    // Every rendition: 4+ segments, durations within the target, decodable, keyframe first.
    let mut boundaries: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
    for v in &master.variants {
        let url = resolve(&master_url, &v.uri);
        let pl = gw
            .wait_segments(&url, 4, Duration::from_secs(30))
            .await
            .unwrap();
        let (_, text) = gw.get_text(&url).await.unwrap();
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert_eq!(pl.target_duration, 1);
        for (i, s) in pl.segments.iter().enumerate() {
            assert!(
                (s.duration.round() as u64) <= pl.target_duration,
                "EXTINF {} over target {}",
                s.duration,
                pl.target_duration
            );
            // The first segment of a broadcast is one 200 ms part (media/mux.rs
            // split_first_fragment); every later one is whole.
            if i == 0 && pl.media_sequence == 0 {
                assert!(s.duration <= 0.21, "first segment: {}", s.duration);
            } else {
                assert!(s.duration > 0.5, "segment too short: {}", s.duration);
            }
        }
        let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
        let res = v.resolution.unwrap();
        let mut starts = BTreeMap::new();
        // CODECS comes from the negotiated caps: it must name the profile the SPS has.
        let codecs = v.codecs.as_deref().unwrap();
        let expected_profile = match &codecs[5..7] {
            "42" => "Constrained Baseline",
            "4d" => "Main",
            "64" => "High",
            other => panic!("unexpected profile_idc {other} in {codecs}"),
        };
        for (seq, p) in &probes {
            assert_eq!(p.codec, "h264");
            assert_eq!(
                (u64::from(p.width), u64::from(p.height)),
                (res.width, res.height)
            );
            assert_eq!(p.profile, expected_profile, "{codecs}");
            assert!(!p.frames.is_empty(), "segment {seq} has no frames");
            assert!(
                p.frames[0].1,
                "segment {seq} of {} does not start with a keyframe",
                v.uri
            );
            starts.insert(*seq, p.frames[0].0);
        }
        boundaries.insert(v.uri.clone(), starts);
    }
    // Same boundaries (±1 frame) in every rung for the sequence numbers they share.
    let reference = boundaries.values().next().unwrap().clone();
    for (uri, starts) in &boundaries {
        let mut shared = 0;
        for (seq, t) in starts {
            if let Some(r) = reference.get(seq) {
                shared += 1;
                assert!(
                    (t - r).abs() <= 1.0 / 30.0 + 1e-3,
                    "{uri} segment {seq} starts at {t}, reference {r}"
                );
            }
        }
        assert!(
            shared >= 3,
            "{uri}: only {shared} segments in common with the reference"
        );
    }

    // Audio: AAC-LC stereo 48 kHz.
    let audio_url = resolve(&master_url, audio.uri.as_deref().expect("audio URI"));
    let apl = gw
        .wait_segments(&audio_url, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let aprobes = probe_rendition(&gw, &audio_url, &apl, false).await.unwrap();
    for p in aprobes.values() {
        assert_eq!(p.codec, "aac");
        assert_eq!(p.channels, 2);
        assert_eq!(p.sample_rate, 48_000);
    }

    // Segments and playlists carry the right headers.
    let seg_url = resolve(
        &resolve(&master_url, &master.variants[0].uri),
        &gw.wait_segments(
            &resolve(&master_url, &master.variants[0].uri),
            1,
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .segments[0]
            .uri,
    );
    let r = gw.http.get(&seg_url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "video/iso.segment");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let r = gw.http.get(&master_url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/vnd.apple.mpegurl");

    // The API lists it.
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["streams"][0]["name"], "cam1");
    assert_eq!(api["streams"][0]["state"], "live");
    let lag = &api["streams"][0]["lag_ms"];
    assert!(lag["samples"].as_u64().unwrap() > 10, "{api}");
    let p50 = lag["p50"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 < 2000.0, "server lag p50 {p50} ms");
    eprintln!(
        "server lag: {lag}, first playable: {}",
        api["streams"][0]["first_playable_s"]
    );
    assert!(api["streams"][0]["first_playable_s"].as_f64().unwrap() < 10.0);

    // DELETE → 200, then every playlist ends.
    let status = publisher.stop().await.unwrap();
    assert_eq!(status, 200);
    for v in &master.variants {
        let (code, text) = gw.get_text(&resolve(&master_url, &v.uri)).await.unwrap();
        assert_eq!(code, 200);
        assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    }
    let (_, text) = gw.get_text(&audio_url).await.unwrap();
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    // The session is gone.
    let r = gw.http.delete(&session).send().await.unwrap();
    assert_eq!(r.status(), 404);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_ladder_for_a_720p_source() {
    let mut cfg = test_config("");
    cfg.media.ladder = None; // the embedded pipelines/ladder.toml, as `make run` uses
    let gw = TestGateway::start(cfg).await;
    // A 25 fps (PAL) camera into the 30 fps ladder: videorate duplicates up to 30.
    let mut opts = PublisherOptions::whip(&gw.whip_url("hd")).with_format(1280, 720, 25);
    opts.bitrate_kbps = 2500;
    let publisher = Publisher::start(opts).await.expect("publisher connects");
    let master_url = gw.master_url("hd");
    let master = gw
        .wait_master("hd", 3, Duration::from_secs(40))
        .await
        .unwrap();
    let mut sizes: Vec<(u64, u64)> = master
        .variants
        .iter()
        .map(|v| (v.resolution.unwrap().width, v.resolution.unwrap().height))
        .collect();
    sizes.sort();
    // 1080p is above the source and is not produced; Apple's lowest rung (416x234) is.
    assert_eq!(sizes, [(416, 234), (640, 360), (854, 480), (1280, 720)]);
    for v in &master.variants {
        let codecs = v.codecs.as_deref().unwrap();
        // superfast keeps CABAC/8x8dct, so the High profile requested by the ladder holds.
        assert!(codecs.starts_with("avc1.64"), "{codecs}");
        let url = resolve(&master_url, &v.uri);
        let pl = gw
            .wait_segments(&url, 2, Duration::from_secs(30))
            .await
            .unwrap();
        let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
        for p in probes.values() {
            assert_eq!(p.profile, "High");
            assert!(p.frames[0].1);
            assert_eq!(u64::from(p.height), v.resolution.unwrap().height);
        }
    }
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

/// The test configuration with the passthrough rung on and the first `rungs` test rungs.
fn with_source_rung(rungs: usize) -> whipcast::Config {
    let mut cfg = test_config("");
    let mut ladder: whipcast::media::Ladder = toml::from_str(common::TEST_LADDER).unwrap();
    ladder.source.enabled = true;
    ladder.rungs.truncate(rungs);
    cfg.media.ladder = Some(ladder);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_only_ladder_remuxes_without_decoding() {
    // No transcoded rung: the pipeline has no decoder (media/ingest.rs video_ingest); the
    // publisher's H.264 is remuxed into one variant, plus the AAC rendition.
    let gw = TestGateway::start(with_source_rung(0)).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("po")).with_format(640, 360, 30))
            .await
            .unwrap();
    let master_url = gw.master_url("po");
    let master = gw
        .wait_master("po", 1, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(master.variants.len(), 1);
    let source = &master.variants[0];
    assert!(source.uri.starts_with("source/"), "{}", source.uri);
    assert_eq!(
        source.resolution.map(|r| (r.width, r.height)),
        Some((640, 360))
    );
    let url = resolve(&master_url, &source.uri);
    let pl = gw
        .wait_segments(&url, 4, Duration::from_secs(30))
        .await
        .unwrap();
    let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
    assert_eq!(probes.len(), pl.segments.len());
    for (seq, p) in &probes {
        assert_eq!((p.width, p.height), (640, 360));
        assert!(p.frames.first().is_some_and(|f| f.1), "segment {seq}");
    }
    let audio = resolve(&master_url, master.alternatives[0].uri.as_deref().unwrap());
    let apl = gw
        .wait_segments(&audio, 2, Duration::from_secs(10))
        .await
        .unwrap();
    let aprobes = probe_rendition(&gw, &audio, &apl, false).await.unwrap();
    assert!(aprobes.values().all(|p| p.codec == "aac"));
    // Every listed part of the passthrough rendition is at most PART-TARGET (HLS2 §4.4.4.9):
    // the publisher's frames carry the jitter buffer's timestamps, and before mux.rs
    // VIDEO_EARLY the frame due at a part's end fell into it now and then (7-frame parts).
    // The playlists list the parts of the last few segments: 8 looks, a second apart.
    for _ in 0..8 {
        assert_eq!(common::check_playlists(&gw, "po").await.unwrap(), 2);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_source_rung_is_steered_onto_segment_boundaries() {
    let gw = TestGateway::start(with_source_rung(1)).await;
    // The publisher's own GOP is 2 s; segments are 1 s: only keyframe requests (PLI) on the
    // segment cadence can make 1 s passthrough segments.
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("pt")).with_format(640, 360, 30))
            .await
            .unwrap();
    let master_url = gw.master_url("pt");
    let master = gw
        .wait_master("pt", 2, Duration::from_secs(30))
        .await
        .unwrap();
    let source = master
        .variants
        .iter()
        .find(|v| v.uri.starts_with("source/"))
        .expect("source variant");
    let codecs = source.codecs.as_deref().unwrap();
    // The publisher's own constrained-baseline stream, untouched.
    assert!(codecs.starts_with("avc1.42"), "{codecs}");
    assert_eq!(
        source.resolution.map(|r| (r.width, r.height)),
        Some((640, 360))
    );
    let url = resolve(&master_url, &source.uri);
    let pl = gw
        .wait_segments(&url, 6, Duration::from_secs(30))
        .await
        .unwrap();
    // The first segment ends at the keyframe requested one part (200 ms) after the first
    // (keyframes.rs with_first_segment), so the stream is playable early.
    assert_eq!(pl.media_sequence, 0);
    assert!(
        pl.segments[0].duration < 0.6,
        "first passthrough segment {} s",
        pl.segments[0].duration
    );
    // After it, every passthrough segment is one target long (plus the publisher's
    // response time), not its own 2 s GOP.
    for s in pl.segments.iter().skip(1) {
        assert!(
            (0.9..1.3).contains(&s.duration),
            "passthrough segment of {} s: keyframes not steered",
            s.duration
        );
    }
    let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
    for p in probes.values() {
        assert_eq!(p.profile, "Constrained Baseline");
        assert!(
            p.frames[0].1,
            "passthrough segment must start on the publisher's keyframe"
        );
    }
    let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let k = &api["streams"][0]["keyframes"];
    assert_eq!(k["mode"], "steering", "{k}");
    assert!(k["answered"].as_u64().unwrap() >= 3, "{k}");
    let gop = k["observed_gop_s"].as_f64().unwrap();
    assert!((0.9..1.3).contains(&gop), "observed GOP {gop}");
    assert!(publisher.keyframe_requests() >= 3);
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_ignoring_pli_is_detected_and_its_gop_followed() {
    let gw = TestGateway::start(with_source_rung(1)).await;
    // Like OBS: keyframes only every 2 s whatever whipcast asks; segments target 1 s.
    let mut opts = PublisherOptions::whip(&gw.whip_url("obs")).with_format(640, 360, 30);
    opts.ignore_keyframe_requests = true;
    let publisher = Publisher::start(opts).await.unwrap();
    let master = gw
        .wait_master("obs", 2, Duration::from_secs(30))
        .await
        .unwrap();
    let source = master
        .variants
        .iter()
        .find(|v| v.uri.starts_with("source/"))
        .unwrap();
    let url = resolve(&gw.master_url("obs"), &source.uri);
    // Steering gives up after three unanswered requests (~1.5 s each), then follows.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let k = loop {
        let (_, api) = gw.get_text(&gw.url("/api/streams")).await.unwrap();
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        let k = api["streams"][0]["keyframes"].clone();
        if k["mode"] == "publisher_gop" {
            break k;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "PLI-ignoring publisher not detected: {k}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // A request now and then meets one of the publisher's own 2 s keyframes by chance,
    // which counts as answered; three unanswered in a row is what decides.
    assert!(k["answered"].as_u64().unwrap() <= 1, "{k}");
    let gop = k["observed_gop_s"].as_f64().unwrap();
    assert!((1.8..2.3).contains(&gop), "observed GOP {gop}");
    assert!(publisher.keyframe_requests() >= 3);
    // Segments follow the publisher's 2 s keyframes and still start with one.
    let pl = gw
        .wait_segments(&url, 4, Duration::from_secs(30))
        .await
        .unwrap();
    for s in pl.segments.iter().skip(1) {
        assert!(
            (1.8..2.3).contains(&s.duration),
            "segment of {} s",
            s.duration
        );
    }
    // RFC 8216bis §4.4.3.1: no EXTINF, rounded, above the target duration, which was
    // chosen from the publisher's GOP before the first playlist (1 s configured).
    for s in &pl.segments {
        assert!(
            f64::from(s.duration).round() as u64 <= pl.target_duration,
            "EXTINF {} above TARGETDURATION {}",
            s.duration,
            pl.target_duration
        );
    }
    for v in &master.variants {
        let other = gw
            .get_text(&resolve(&gw.master_url("obs"), &v.uri))
            .await
            .unwrap()
            .1;
        let other = common::parse_media(&other).unwrap();
        assert_eq!(
            other.target_duration, pl.target_duration,
            "one target for all"
        );
    }
    let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
    assert!(probes.values().all(|p| p.frames[0].1));
    // Its MPEG-TS variant: 2 s video segments on the publisher's keyframes, while audio is
    // cut on the 1 s grid; the audio muxed in must be that of the video's own time span.
    let ts_url = resolve(&gw.master_url("obs"), "source/index-ts.m3u8");
    check_ts_rendition(&gw, &ts_url, 640).await;
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}

/// Per PID: the continuity counters of every TS packet, checked to run on without a gap
/// (mod 16) over `ts`; PUSI packets counted. Also checks packet framing.
fn ts_continuity(ts: &[u8]) -> BTreeMap<u16, (u8, usize)> {
    assert_eq!(
        ts.len() % 188,
        0,
        "TS length {} not a multiple of 188",
        ts.len()
    );
    let mut state: BTreeMap<u16, (u8, usize)> = BTreeMap::new();
    for (i, p) in ts.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "sync byte of packet {i}");
        let pid = (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
        let has_payload = p[3] & 0x10 != 0;
        let cc = p[3] & 0x0f;
        let pusi = usize::from(p[1] & 0x40 != 0);
        match state.get_mut(&pid) {
            Some((last, starts)) => {
                if has_payload {
                    assert_eq!(
                        cc,
                        (*last + 1) & 0x0f,
                        "PID {pid:#x} packet {i}: counter jumped"
                    );
                    *last = cc;
                }
                *starts += pusi;
            }
            None => {
                state.insert(pid, (cc, pusi));
            }
        }
    }
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpegts_variant_remuxes_the_ladder_with_muxed_audio() {
    // Old players (TVs, set-top boxes) read MPEG-TS, not fMP4: every video rung is also
    // served as TS with the audio muxed in, remuxed from the stored fMP4 on request.
    let gw = TestGateway::start(test_config("")).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("tv")).with_format(320, 180, 30))
            .await
            .unwrap();
    gw.wait_master("tv", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let master_url = gw.url("/hls/tv/master-ts.m3u8");
    let (code, text) = gw.get_text(&master_url).await.unwrap();
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("#EXT-X-VERSION:3"), "{text}");
    assert!(
        !text.contains("EXT-X-MEDIA:"),
        "no audio group: audio is muxed\n{text}"
    );
    let master = match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("not a master playlist: {other:?}"),
    };
    assert_eq!(master.variants.len(), 1);
    let v = &master.variants[0];
    assert_eq!(v.uri, "180p/index-ts.m3u8");
    assert!(
        v.codecs.as_deref().unwrap().ends_with(",mp4a.40.2"),
        "{v:?}"
    );
    assert!(v.audio.is_none());

    let media_url = resolve(&master_url, &v.uri);
    check_ts_rendition(&gw, &media_url, 320).await;

    assert_eq!(publisher.stop().await.unwrap(), 200);
    let (_, text) = gw.get_text(&media_url).await.unwrap();
    assert!(text.contains("#EXT-X-ENDLIST"), "{text}");
    // Not a video rung, or no such segment: 404.
    for path in [
        "/hls/tv/audio/index-ts.m3u8",
        "/hls/tv/180p/seg-00000000-1.ts",
        "/hls/nope/master-ts.m3u8",
    ] {
        let r = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    gw.shutdown().await;
}

/// `{seq: duration}` of a media playlist, the sequence number read from each URI.
fn durations_by_seq(pl: &m3u8_rs::MediaPlaylist) -> BTreeMap<u64, f32> {
    pl.segments
        .iter()
        .map(|s| {
            let seq = s.uri.rsplit('-').next().unwrap().split('.').next().unwrap();
            (seq.parse().unwrap(), s.duration)
        })
        .collect()
}

/// The MPEG-TS playlist of a rung (`media_url`, `…/index-ts.m3u8`) and three of its
/// segments: the fMP4 rung's numbering and durations; segments that join into one
/// continuous transport stream (counters, PIDs) with one PES per video frame and the
/// audio of exactly that time span; decodable by ffprobe and ffmpeg, audio and video
/// starting together; and the live playlist playable by ffmpeg.
async fn check_ts_rendition(gw: &TestGateway, media_url: &str, width: u64) {
    let fmp4_url = media_url.replace("index-ts.m3u8", "index.m3u8");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (pl, text) = loop {
        let (_, text) = gw.get_text(media_url).await.unwrap();
        let pl = common::parse_media(&text).unwrap();
        if pl.segments.len() >= 4 {
            break (pl, text);
        }
        assert!(std::time::Instant::now() < deadline, "TS playlist: {text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(text.contains("#EXT-X-VERSION:3"), "{text}");
    assert!(!text.contains("EXT-X-MAP"), "{text}");
    assert!(!text.contains("EXT-X-PART"), "plain HLS: {text}");
    // The same segments as the fMP4 rung: numbers and durations.
    let (_, ftext) = gw.get_text(&fmp4_url).await.unwrap();
    let fpl = common::parse_media(&ftext).unwrap();
    let fmp4 = durations_by_seq(&fpl);
    let init_uri = &fpl.segments[0].map.as_ref().expect("EXT-X-MAP").uri;
    let init = gw.get_bytes(&resolve(&fmp4_url, init_uri)).await.unwrap();
    let ts = durations_by_seq(&pl);
    let common_seqs: Vec<u64> = ts
        .keys()
        .filter(|k| fmp4.contains_key(k))
        .copied()
        .collect();
    assert!(common_seqs.len() >= 3, "TS {ts:?} vs fMP4 {fmp4:?}");
    for seq in common_seqs {
        // The LL-HLS writer prints 5 decimals, m3u8-rs all of an f32.
        assert!(
            (ts[&seq] - fmp4[&seq]).abs() < 1e-4,
            "segment {seq}: TS {ts:?} fMP4 {fmp4:?}"
        );
    }

    // Three consecutive segments (after the broadcast's short first one): one continuous
    // transport stream (counters run on across the boundaries), with the right headers.
    let picked: Vec<&m3u8_rs::MediaSegment> = pl.segments.iter().skip(1).take(3).collect();
    let mut joined = Vec::new();
    let mut fmp4_frames = 0;
    for s in &picked {
        assert!(s.uri.ends_with(".ts"), "{}", s.uri);
        // The same segment as fMP4, decoded: its frame count.
        let m4s = gw
            .get_bytes(&resolve(&fmp4_url, &s.uri.replace(".ts", ".m4s")))
            .await
            .unwrap();
        fmp4_frames += common::probe(&init, &m4s, true).unwrap().frames.len();
        let r = gw
            .http
            .get(resolve(media_url, &s.uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "video/mp2t");
        assert!(
            r.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let body = r.bytes().await.unwrap();
        let pids = ts_continuity(&body);
        // PAT, PMT, video, audio.
        assert_eq!(
            pids.keys().copied().collect::<Vec<_>>(),
            [0x0000, 0x0100, 0x0101, 0x1000]
        );
        joined.extend_from_slice(&body);
    }
    let pids = ts_continuity(&joined);
    // One PES per frame: every frame of the fMP4 segments, AAC frames of 1024 samples at
    // 48 kHz, the audio
    // cut on the video segments' own time span. The slack is for the audio timestamps,
    // which carry the publisher's jitter (steps of 1815–1920 ticks where a frame is 1920;
    // seen with ffprobe -show_packets), not for the cut: the count must not drift by a
    // segment's worth, as it did when audio was paired by sequence number.
    let secs: f64 = picked.iter().map(|s| f64::from(s.duration)).sum();
    let video_aus = pids[&0x0100].1 as f64;
    let audio_frames = pids[&0x0101].1 as f64;
    assert_eq!(
        video_aus as usize, fmp4_frames,
        "{secs:.3} s, video access units: {pids:?}"
    );
    assert!(
        (audio_frames - secs * 46.875).abs() <= 6.0,
        "{secs:.3} s, audio frames: {pids:?}"
    );

    // ffprobe: H.264 + AAC, video and audio starting together, every frame decodable.
    let dir = std::env::temp_dir().join(format!("whipcast-ts-{}-{width}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("joined.ts");
    std::fs::write(&path, &joined).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = v["streams"].as_array().unwrap();
    let codec = |t: &str| {
        streams
            .iter()
            .find(|s| s["codec_type"] == t)
            .unwrap_or_else(|| panic!("no {t} stream: {v}"))
    };
    assert_eq!(codec("video")["codec_name"], "h264");
    assert_eq!(codec("video")["width"], width);
    assert_eq!(codec("audio")["codec_name"], "aac");
    assert_eq!(codec("audio")["sample_rate"], "48000");
    let start = |s: &serde_json::Value| s["start_time"].as_str().unwrap().parse::<f64>().unwrap();
    let skew = (start(codec("video")) - start(codec("audio"))).abs();
    assert!(skew < 0.05, "audio and video start {skew:.3} s apart: {v}");
    common::decode_all(path.to_str().unwrap());
    // And ffmpeg plays the live TS playlist itself (3 s of it: a live playlist never ends).
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-i", media_url, "-t", "3", "-map", "0", "-f", "null", "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffmpeg on {media_url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
