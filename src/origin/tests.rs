//! The HTTP rules of the whole router, without a socket: requests go through
//! `Router::oneshot` against a store filled by hand (the media here are stand-in bytes;
//! the integration tests under `tests/` publish and decode real media). Each test states a
//! rule a player, a CDN or a WHIP client relies on.

use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode, header};
use bytes::Bytes;
use tower::ServiceExt as _;

use super::{AppState, HlsOrigin, router};
use crate::config::{Config, HlsConfig};
use crate::hls::{At, Chunk, HlsStore, IngestSummary, init_name, part_name, segment_name};
use crate::ingest::{Ingest, IngestSettings, SignalingState};
use crate::media::{RenditionInfo, RenditionKind};
use crate::output::Outputs;

/// A router over `store` with the embedded default configuration otherwise.
fn app(store: &HlsStore) -> axum::Router {
    let cfg = Config::default();
    let outputs =
        Outputs::new(&cfg.record, &cfg.s3, &cfg.hls, store.metrics().clone()).expect("outputs");
    let ingest = Ingest::new(
        IngestSettings {
            auth: crate::auth::Authorizer::new(&cfg.auth, store.metrics()).expect("authorizer"),
            ice: cfg.ice.clone(),
            ladder: cfg.media.resolve_ladder().expect("ladder"),
            max_sdp_bytes: cfg.server.max_sdp_bytes,
            max_streams: cfg.server.max_streams,
            limits: cfg.limits.clone(),
            cluster: None,
        },
        store.clone(),
        outputs.clone(),
    );
    router(AppState {
        signaling: SignalingState {
            ingest,
            public_url: "".into(),
            tls: false,
        },
        store: store.clone(),
        player_dir: None,
        hls: HlsOrigin::new(store.target_duration()),
        outputs,
        body_timeout: Duration::from_secs(10),
    })
}

fn at() -> At {
    crate::broadcast::now()
}

fn video() -> RenditionInfo {
    RenditionInfo {
        name: "360p".into(),
        kind: RenditionKind::Video {
            width: 640,
            height: 360,
            fps: 30.0,
        },
        codecs: "avc1.64001e".into(),
        bitrate: 600_000,
    }
}

fn audio() -> RenditionInfo {
    RenditionInfo {
        name: "audio".into(),
        kind: RenditionKind::Audio {
            channels: 2,
            rate: 48_000,
            language: "und".into(),
        },
        codecs: "mp4a.40.2".into(),
        bitrate: 128_000,
    }
}

fn chunk(starts: bool, ms: u64, data: &'static [u8]) -> Chunk {
    Chunk {
        starts_segment: starts,
        segment: None,
        next_starts_segment: None,
        duration: Duration::from_millis(ms),
        wallclock: SystemTime::now(),
        gap: false,
        lag: None,
        data: Bytes::from_static(data),
    }
}

/// A live stream `cam` with a video and an audio rendition; returns its epoch.
fn live(store: &HlsStore) -> String {
    let epoch = store.begin(
        "cam",
        IngestSummary {
            signaling: "whip",
            video_codec: "H264".into(),
            audio: true,
        },
        at(),
    );
    store.expect("cam", vec!["audio".into(), "360p".into()]);
    store
        .init("cam", video(), Bytes::from_static(b"vinit"), at())
        .expect("init");
    store
        .init("cam", audio(), Bytes::from_static(b"ainit"), at())
        .expect("init");
    epoch
}

fn plain() -> HlsStore {
    HlsStore::new(HlsConfig {
        part_duration: Duration::ZERO,
        ..HlsConfig::default()
    })
}

/// LL-HLS with 1 s segments of five 200 ms parts.
fn low_latency() -> HlsStore {
    HlsStore::new(HlsConfig {
        segment_duration: Duration::from_secs(1),
        part_duration: Duration::from_millis(200),
        ..HlsConfig::default()
    })
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

async fn send(app: &axum::Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.expect("infallible")
}

async fn body(r: Response<Body>) -> Bytes {
    axum::body::to_bytes(r.into_body(), 1 << 20)
        .await
        .expect("body")
}

#[allow(clippy::needless_pass_by_value)] // `header::X` constants read best by value
fn header_of(r: &Response<Body>, name: header::HeaderName) -> &str {
    r.headers()
        .get(&name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} in {:?}", r.headers()))
}

#[tokio::test]
async fn nothing_there_is_404_and_not_cacheable() {
    let store = plain();
    let app = app(&store);
    for uri in [
        "/hls/nope/master.m3u8",
        "/hls/nope/360p/index.m3u8",
        "/hls/nope/360p/seg-x-1.m4s",
        "/hls/cam/360p/..%2F..%2Fetc%2Fpasswd",
    ] {
        let r = send(&app, get(uri)).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{uri}");
        // A CDN must not cache "not yet": the stream may start any second.
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store", "{uri}");
    }
    // Before a segment exists the stream is announced (API) but has no playlist.
    live(&store);
    let r = send(&app, get("/hls/cam/master.m3u8")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(&app, get("/hls/cam/360p/index.m3u8")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn playlists_carry_validators_gzip_and_short_lifetimes() {
    let store = plain();
    let app = app(&store);
    live(&store);
    for r in ["360p", "audio"] {
        store
            .publish("cam", r, chunk(true, 2000, b"0123456789"), at())
            .expect("segment");
    }
    let r = send(&app, get("/hls/cam/master.m3u8")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header_of(&r, header::CONTENT_TYPE),
        "application/vnd.apple.mpegurl"
    );
    // ½ target duration (2 s segments: target 2).
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=1");
    assert_eq!(header_of(&r, header::VARY), "Accept-Encoding");
    let etag = header_of(&r, header::ETAG).to_string();
    assert!(r.headers().contains_key(header::LAST_MODIFIED));
    let text = String::from_utf8(body(r).await.to_vec()).expect("utf8");
    assert!(text.starts_with("#EXTM3U") && text.contains("360p/index.m3u8"));

    // RFC 9110 §13.1.2: the same tag (weak or strong) gives 304 with the validators.
    for tag in [etag.clone(), format!("W/{etag}"), "*".to_string()] {
        let r = send(
            &app,
            Request::get("/hls/cam/master.m3u8")
                .header(header::IF_NONE_MATCH, &tag)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "{tag}");
        assert_eq!(header_of(&r, header::ETAG), etag);
        assert!(body(r).await.is_empty());
    }
    let r = send(
        &app,
        Request::get("/hls/cam/master.m3u8")
            .header(header::IF_NONE_MATCH, "\"other\"")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // gzip when accepted, under its own tag (a different representation).
    let r = send(
        &app,
        Request::get("/hls/cam/360p/index.m3u8")
            .header(header::ACCEPT_ENCODING, "br, gzip")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_ENCODING), "gzip");
    let gz_etag = header_of(&r, header::ETAG).to_string();
    let gz = body(r).await;
    let mut plain_text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain_text)
        .expect("gunzip");
    let r = send(&app, get("/hls/cam/360p/index.m3u8")).await;
    assert_ne!(header_of(&r, header::ETAG), gz_etag);
    assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(body(r).await, plain_text.as_bytes());

    // Plain HLS: delivery directives are LL-HLS's (HLS2 §6.2.5), so no blocking here.
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=50")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=1");
}

#[tokio::test]
async fn media_is_immutable_and_served_in_ranges() {
    let store = plain();
    let app = app(&store);
    let epoch = live(&store);
    for r in ["360p", "audio"] {
        store
            .publish("cam", r, chunk(true, 2000, b"0123456789"), at())
            .expect("segment");
    }
    let seg = format!("/hls/cam/360p/{}", segment_name(&epoch, 0));
    let r = send(&app, get(&seg)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "video/iso.segment");
    assert_eq!(
        header_of(&r, header::CACHE_CONTROL),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header_of(&r, header::ACCEPT_RANGES), "bytes");
    // HLS2 §6.2.2: it leaves the window at a known time.
    assert!(r.headers().contains_key(header::EXPIRES));
    assert_eq!(body(r).await, &b"0123456789"[..]);

    let range = |v: &'static str| {
        Request::get(&seg)
            .header(header::RANGE, v)
            .body(Body::empty())
            .expect("request")
    };
    let r = send(&app, range("bytes=2-5")).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), "bytes 2-5/10");
    assert_eq!(body(r).await, &b"2345"[..]);
    let r = send(&app, range("bytes=10-")).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_of(&r, header::CONTENT_RANGE), "bytes */10");
    // Another unit is ignored (RFC 9110 §14.2): the whole body.
    let r = send(&app, range("lines=1-2")).await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = send(&app, get(&format!("/hls/cam/audio/{}", init_name(&epoch)))).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "video/mp4");
    assert_eq!(body(r).await, &b"ainit"[..]);

    // Another broadcast's epoch, or a segment never made: 404.
    let r = send(
        &app,
        get(&format!("/hls/cam/360p/{}", segment_name("zz", 0))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(
        &app,
        get(&format!("/hls/cam/360p/{}", segment_name(&epoch, 7))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn blocking_reload_waits_for_the_part_and_is_cached_long() {
    let store = low_latency();
    let app = app(&store);
    let epoch = live(&store);
    // Segment 0 with its five parts, segment 1 open with two.
    for i in 0..7u64 {
        store
            .publish("cam", "360p", chunk(i % 5 == 0, 200, b"v"), at())
            .expect("part");
    }
    // Two audio segments: the first complete one makes the stream playable (the
    // multivariant playlist waits for its audio group).
    for _ in 0..2 {
        store
            .publish("cam", "audio", chunk(true, 1000, b"a"), at())
            .expect("part");
    }

    // HLS2 §6.2.5.2: _HLS_part without _HLS_msn, or non-numbers, are 400.
    for q in ["_HLS_part=1", "_HLS_msn=x", "_HLS_msn=1&_HLS_part=-1"] {
        let r = send(&app, get(&format!("/hls/cam/360p/index.m3u8?{q}"))).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    }
    // More than two segments ahead: 400, not a wait.
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=9")).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // What exists already is answered at once, with the blocking lifetime (6 × target).
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=1&_HLS_part=1")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=6");

    // The next part is waited for, and the answer lists it.
    let next = part_name(&epoch, 1, 2);
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=1&_HLS_part=2")).await }
    });
    // The hinted part itself may be requested early and is answered when complete
    // (HLS2 §6.2.6), never trickled.
    let hinted = tokio::spawn({
        let app = app.clone();
        let uri = format!("/hls/cam/360p/{next}");
        async move { send(&app, get(&uri)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished() && !hinted.is_finished());
    store
        .publish("cam", "360p", chunk(false, 200, b"NEXT"), at())
        .expect("part");
    let r = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8(body(r).await.to_vec()).expect("utf8");
    assert!(text.contains(&format!("URI=\"{next}\"")), "{text}");
    let r = tokio::time::timeout(Duration::from_secs(5), hinted)
        .await
        .expect("woken")
        .expect("task");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(body(r).await, &b"NEXT"[..]);

    // A part that is neither there nor hinted: 404 at once.
    let r = send(
        &app,
        get(&format!("/hls/cam/360p/{}", part_name(&epoch, 1, 4))),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Delta update (HLS2 §6.2.5.1) on request only.
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_skip=YES")).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_gives_up_after_three_target_durations() {
    let store = low_latency();
    let app = app(&store);
    live(&store);
    store
        .publish("cam", "360p", chunk(true, 200, b"v"), at())
        .expect("part");
    let started = tokio::time::Instant::now();
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=1")).await;
    // HLS2 §6.2.5.2: 503 after 3 × target duration (target 1 s).
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
    assert_eq!(header_of(&r, header::RETRY_AFTER), "1");
    assert_eq!(store.metrics().blocking_timeouts.get(), 1);
}

#[tokio::test]
async fn an_ended_stream_answers_blocking_requests_at_once_with_endlist() {
    let store = low_latency();
    let app = app(&store);
    live(&store);
    for i in 0..3u64 {
        store
            .publish("cam", "360p", chunk(i == 0, 200, b"v"), at())
            .expect("part");
    }
    store
        .publish("cam", "audio", chunk(true, 200, b"a"), at())
        .expect("part");
    store.end("cam", at());
    let r = send(&app, get("/hls/cam/360p/index.m3u8?_HLS_msn=1&_HLS_part=3")).await;
    assert_eq!(r.status(), StatusCode::OK);
    // An ended playlist stays short-lived: the name may be published again at once.
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "public, max-age=1");
    let text = String::from_utf8(body(r).await.to_vec()).expect("utf8");
    assert!(text.trim_end().ends_with("#EXT-X-ENDLIST"), "{text}");
    assert!(!text.contains("PRELOAD-HINT"));
}

#[tokio::test]
async fn api_and_health_are_never_cached() {
    let store = plain();
    let app = app(&store);
    live(&store);
    let r = send(&app, get("/healthz")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    let r = send(&app, get("/api/streams")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    let v: serde_json::Value = serde_json::from_slice(&body(r).await).expect("json");
    assert_eq!(v["streams"][0]["name"], "cam");
    assert!(v["streams"][0]["outputs"].is_array());
}

#[tokio::test]
async fn whip_transport_rules_come_before_any_media_work() {
    let store = plain();
    let app = app(&store);
    let post = |uri: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut b = Request::post(uri);
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(Body::from(body)).expect("request")
    };
    // RFC 9725 §4.2: the offer is application/sdp.
    let r = send(
        &app,
        post("/whip/cam", Some("text/plain"), b"v=0\r\n".to_vec()),
    )
    .await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(header_of(&r, header::CACHE_CONTROL), "no-store");
    let r = send(&app, post("/whip/cam", None, b"v=0\r\n".to_vec())).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Over server.max_sdp_bytes: 413, the rest unread.
    let huge = vec![b'a'; Config::default().server.max_sdp_bytes + 1];
    let r = send(&app, post("/whip/cam", Some("application/sdp"), huge)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Not an SDP at all: 400, and no stream appears.
    let r = send(
        &app,
        post("/whip/cam", Some("application/sdp"), b"hello".to_vec()),
    )
    .await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = send(&app, post("/whip/a%20b", Some("application/sdp"), vec![])).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(store.summaries(Instant::now()).is_empty());

    // Sessions nobody created: 404 for PATCH and DELETE.
    let r = send(
        &app,
        Request::delete("/whip/cam/nosuch")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = send(
        &app,
        Request::patch("/whip/cam/nosuch")
            .header(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag")
            .body(Body::from("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n"))
            .expect("request"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // RFC 9725 §4.2: OPTIONS says what POST takes, preflight or not.
    let r = send(
        &app,
        Request::options("/whip/cam")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        header_of(&r, header::HeaderName::from_static("accept-post")),
        "application/sdp"
    );
    let r = send(
        &app,
        Request::options("/whip/cam")
            .header(header::ORIGIN, "http://127.0.0.1:9")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(
        header_of(&r, header::HeaderName::from_static("accept-post")),
        "application/sdp"
    );
    assert!(header_of(&r, header::ACCESS_CONTROL_ALLOW_METHODS).contains("POST"));
}
