//! Bad input costs nothing else: while a real stream is live, every kind of wrong request
//! gets its 4xx (or WebSocket error) and the live stream loses no segment.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, metrics, parse_media, resolve, test_config};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What OBS 30.2+ sends (its WHIP output, libdatachannel): session-level ICE/DTLS,
/// group:LS, no candidates.
const OBS_OFFER: &str = include_str!("data/obs-offer.sdp");

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn post(
    gw: &TestGateway,
    stream: &str,
    ctype: &str,
    token: Option<&str>,
    body: String,
) -> Reply {
    let mut req = gw
        .http
        .post(gw.url(&format!("/whip/{stream}")))
        .header("content-type", ctype)
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// Polls the live stream's playlist in the background, recording every sequence number
/// and the epoch of every segment URI it ever lists.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next server message on a signalling socket, as JSON (within 5 s).
async fn next_json(ws: &mut Ws) -> serde_json::Value {
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}

type Watcher = (
    tokio::task::JoinHandle<(BTreeSet<u64>, BTreeSet<String>)>,
    tokio::sync::oneshot::Sender<()>,
);

fn watch(gw: &TestGateway, url: String) -> Watcher {
    let http = gw.http.clone();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut seqs = BTreeSet::new();
        let mut uris = BTreeSet::new();
        loop {
            if let Ok(r) = http.get(&url).send().await
                && let Ok(text) = r.text().await
                && let Ok(pl) = parse_media(&text)
            {
                for (i, s) in pl.segments.iter().enumerate() {
                    seqs.insert(pl.media_sequence + i as u64);
                    uris.insert(s.uri.clone());
                }
            }
            tokio::select! {
                _ = &mut rx => break,
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
        (seqs, uris)
    });
    (task, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_4xx_and_the_live_stream_is_untouched() {
    let cfg =
        test_config("[auth.streams]\nsecured = \"s3cret\"\n[ice]\nconnect_timeout = \"3s\"\n");
    let gw = TestGateway::start(cfg).await;

    // A real live stream that must not notice anything.
    let live =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("live")).with_format(320, 180, 30))
            .await
            .unwrap();
    let master = gw
        .wait_master("live", 1, Duration::from_secs(30))
        .await
        .unwrap();
    let live_url = resolve(&gw.master_url("live"), &master.variants[0].uri);
    gw.wait_segments(&live_url, 2, Duration::from_secs(20))
        .await
        .unwrap();
    let (watcher, stop_watch) = watch(&gw, live_url.clone());
    let started = Instant::now();

    // 415: wrong content type.
    let r = post(&gw, "x1", "text/plain", None, OBS_OFFER.into()).await;
    assert_eq!(r.status, 415, "{}", r.body);
    // 413: huge body.
    let r = post(
        &gw,
        "x1",
        "application/sdp",
        None,
        "v=0\r\n".repeat(100_000),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    // 400: not SDP.
    let r = post(&gw, "x1", "application/sdp", None, "hello world".into()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = post(&gw, "x1", "application/sdp", None, String::new()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // 422: no video; unknown codecs; recvonly.
    let audio_only = OBS_OFFER.split("m=video").next().unwrap().to_string();
    let r = post(&gw, "x1", "application/sdp", None, audio_only).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = post(
        &gw,
        "x1",
        "application/sdp",
        None,
        OBS_OFFER.replace("H264/90000", "AV1/90000"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("AV1"), "{}", r.body);
    let r = post(
        &gw,
        "x1",
        "application/sdp",
        None,
        OBS_OFFER.replace("a=mid:1\r\na=sendonly", "a=mid:1\r\na=recvonly"),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    // 400: bad stream names.
    for name in ["a%20b", "..%2Fetc", &"x".repeat(65)] {
        let r = post(&gw, name, "application/sdp", None, OBS_OFFER.into()).await;
        assert_eq!(r.status, 400, "{name}: {}", r.body);
    }
    // 401: missing or wrong token, with WWW-Authenticate.
    for token in [None, Some("wrong")] {
        let r = post(&gw, "secured", "application/sdp", token, OBS_OFFER.into()).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // ?record: a value that is neither yes nor no is a 400, not a silently lost recording;
    // asking for a recording the server does not allow (record.allow_request) is a 403.
    let r = post(
        &gw,
        "x1?record=please",
        "application/sdp",
        None,
        OBS_OFFER.into(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("record must be"), "{}", r.body);
    let r = post(
        &gw,
        "x1?record=1",
        "application/sdp",
        None,
        OBS_OFFER.into(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("record.allow_request"), "{}", r.body);
    match tokio_tungstenite::connect_async(format!("{}?record=please", gw.ws_url("x1"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("WebSocket upgrade with a bad record flag: {other:?}"),
    }
    // ?height: a declared capture height that is not 90..=4320 lines is a 400 (the ladder
    // is planned for it), before any WebRTC work, over WHIP and before the upgrade.
    let r = post(
        &gw,
        "x1?height=99999",
        "application/sdp",
        None,
        OBS_OFFER.into(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("height must be"), "{}", r.body);
    match tokio_tungstenite::connect_async(format!("{}?height=abc", gw.ws_url("x1"))).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 400),
        other => panic!("WebSocket upgrade with a bad height: {other:?}"),
    }
    // 409: a second publisher on the live name.
    let r = post(&gw, "live", "application/sdp", None, OBS_OFFER.into()).await;
    assert_eq!(r.status, 409, "{}", r.body);
    // 404: unknown sessions.
    let r = gw
        .http
        .delete(gw.url("/whip/live/0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = gw
        .http
        .patch(gw.url("/whip/live/0123456789abcdef"))
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body("a=mid:0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The live session itself: PATCH with the wrong type, and an ICE restart, are refused
    // without touching it.
    let session = live.session_url().unwrap().to_string();
    let r = gw
        .http
        .patch(&session)
        .header("content-type", "application/sdp")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = gw
        .http
        .patch(&session)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .header("if-match", "*")
        .body("a=ice-ufrag:new1\r\na=ice-pwd:newpasswordnewpassword12\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // HLS names that do not exist: 404 + no-store.
    for path in [
        "/hls/nope/master.m3u8",
        "/hls/live/360p/seg-00000000-1.m4s",
        "/hls/live/180p/../../etc",
        "/hls/live/180p/init-zz.mp4",
    ] {
        let r = gw.http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        if r.status() == 404 && path.starts_with("/hls/nope") {
            assert_eq!(r.headers()["cache-control"], "no-store");
        }
    }

    // WebSocket garbage: each gets an error message and the socket stays usable.
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("wsbad"))
        .await
        .unwrap();
    for frame in [
        Message::Text("garbage".into()),
        Message::Text(r#"{"type":"hello"}"#.into()),
        Message::Text(r#"{"type":"offer"}"#.into()),
        Message::Binary(vec![0u8, 1, 2, 3].into()),
        Message::Text(r#"{"type":"offer","sdp":"not sdp"}"#.into()),
        Message::Text(
            serde_json::json!({"type":"offer","sdp": OBS_OFFER.replace("H264/90000","AV1/90000")})
                .to_string()
                .into(),
        ),
    ] {
        ws.send(frame).await.unwrap();
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "error", "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Publishing on a live name over WS: 409 as an error message.
    ws.close(None).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("live"))
        .await
        .unwrap();
    ws.send(Message::Text(
        serde_json::json!({"type":"offer","sdp": OBS_OFFER})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], 409, "{v}");
    ws.close(None).await.unwrap();
    // Bad token over WS: error 401, then the server closes.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}?token=nope", gw.ws_url("secured")))
            .await
            .unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["status"], 401, "{v}");

    // A publisher that negotiates but never connects (OBS offer, nobody behind it): 201 with
    // an absolute Location, ETag, a recvonly answer advertising loopback only.
    let r = post(&gw, "ghost", "application/sdp", None, OBS_OFFER.into()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.headers["content-type"], "application/sdp");
    let location = r.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/whip/ghost/", gw.base)),
        "{location}"
    );
    assert!(r.headers["etag"].to_str().unwrap().starts_with('"'));
    assert!(r.body.contains("a=recvonly"), "{}", r.body);
    let candidates: Vec<&str> = r
        .body
        .lines()
        .filter(|l| l.starts_with("a=candidate"))
        .collect();
    assert!(!candidates.is_empty(), "answer has candidates");
    for c in &candidates {
        assert!(
            c.contains(" 127.0.0.1 "),
            "non-loopback candidate advertised: {c}"
        );
    }
    // A session that never connects holds no name (it would claim it with its first
    // video): a second offer for the same name is answered at once, not refused with 409.
    let r = post(&gw, "ghost", "text/plain", None, String::new()).await;
    assert_eq!(r.status, 415);
    let again = post(&gw, "ghost", "application/sdp", None, OBS_OFFER.into()).await;
    assert_eq!(again.status, 201, "{}", again.body);

    // The live stream never noticed: contiguous sequence numbers, one epoch, still growing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = stop_watch.send(());
    let (seqs, uris) = watcher.await.unwrap();
    let elapsed = started.elapsed().as_secs_f64();
    let first = *seqs.first().unwrap();
    let last = *seqs.last().unwrap();
    assert_eq!(
        seqs.len() as u64,
        last - first + 1,
        "gap in the live playlist: {seqs:?}"
    );
    assert!(
        (last - first) as f64 >= elapsed - 4.0,
        "live stream stalled: {seqs:?} over {elapsed:.1}s"
    );
    let epochs: BTreeSet<&str> = uris.iter().filter_map(|u| u.split('-').nth(1)).collect();
    assert_eq!(epochs.len(), 1, "live stream restarted: {epochs:?}");
    // Every segment it listed is still downloadable (within the retention window).
    let pl = parse_media(&gw.get_text(&live_url).await.unwrap().1).unwrap();
    for s in &pl.segments {
        let r = gw
            .http
            .get(resolve(&live_url, &s.uri))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", s.uri);
    }
    assert_eq!(live.stop().await.unwrap(), 200);

    // /metrics counted every refused publish attempt above by status, WHIP and WebSocket
    // alike (session 404s, PATCH refusals and JSON errors are not publish attempts), and
    // the three broadcasts that started: live, ghost, ghost again.
    let m = metrics(&gw).await;
    let refused =
        |status: u16| m[&format!("whipcast_publish_refused_total{{status=\"{status}\"}}")];
    assert_eq!(
        refused(400),
        10.0,
        "not SDP ×2, bad names ×3, record flag WHIP + WS, height WHIP + WS, WS 'not sdp'"
    );
    assert_eq!(refused(403), 1.0, "record=1 without record.allow_request");
    assert_eq!(refused(401), 3.0, "WHIP no/wrong token, WS wrong token");
    assert_eq!(refused(409), 2.0, "live WHIP + WS");
    assert_eq!(refused(413), 1.0);
    assert_eq!(refused(415), 2.0);
    assert_eq!(refused(422), 4.0, "no video, AV1, recvonly, WS AV1");
    assert_eq!(refused(503), 0.0);
    assert_eq!(m["whipcast_publishes_total{signaling=\"whip\"}"], 3.0);
    assert_eq!(m["whipcast_publishes_total{signaling=\"websocket\"}"], 0.0);
    assert!(m.contains_key("whipcast_stream_live{stream=\"live\"}"));
    assert!(
        m.iter().any(
            |(k, v)| k.starts_with("whipcast_rendition_segments{stream=\"live\",") && *v >= 2.0
        ),
        "{m:?}"
    );
    gw.shutdown().await;
}
