//! Signalling as a hostile client uses it: a WebSocket that never offers, one that stops
//! answering pings, one that sends a 16 MB frame; a stream name built to forge a log
//! line; a `Host` header built to turn `Location` into a link elsewhere.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::process::{spawn, tempdir};
use common::{TestGateway, test_config};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The next close frame's code (skipping other messages), within `limit`.
async fn close_code<S>(ws: &mut S, limit: Duration) -> Option<u16>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(f)))) => return f.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_must_offer_answer_pings_and_keep_frames_small() {
    let gw = TestGateway::start(test_config(
        "[limits]\nws_offer_timeout = \"3s\"\nws_ping_interval = \"1s\"\n",
    ))
    .await;

    // No offer: an error message with 408, then close 1008, at ~3 s.
    let t0 = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("quiet"))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message")
        .unwrap()
        .unwrap();
    // Pings may come first (1 s interval); the client answers them while reading.
    let mut msg = first;
    while matches!(msg, Message::Ping(_)) {
        msg = ws.next().await.unwrap().unwrap();
    }
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["status"], 408, "{v}");
    assert_eq!(
        close_code(&mut ws, Duration::from_secs(5)).await,
        Some(1008)
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "{took:?}"
    );

    // A client that stops reading (so never answers a ping) is closed at the second ping
    // (2 s), before its offer deadline (3 s).
    let (mut mute, _) = tokio_tungstenite::connect_async(gw.ws_url("mute"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2600)).await;
    // Now read: the pings that went unanswered, then the close (1001).
    assert_eq!(
        close_code(&mut mute, Duration::from_secs(5)).await,
        Some(u16::from(CloseCode::Away)),
        "an unanswered ping ends the socket"
    );

    // 16 MB in one message: close 1009, not a dropped TCP connection.
    let (mut big, _) = tokio_tungstenite::connect_async(gw.ws_url("big"))
        .await
        .unwrap();
    let _ = big.send(Message::Text("x".repeat(16 << 20).into())).await;
    assert_eq!(
        close_code(&mut big, Duration::from_secs(10)).await,
        Some(1009)
    );

    // The server is fine.
    let (code, _) = gw.get_text(&gw.url("/healthz")).await.unwrap();
    assert_eq!(code, 200);
    gw.shutdown().await;
}

/// A raw HTTP/1.1 request; the status code and the whole response.
async fn raw(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .unwrap();
    (
        out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0),
        out,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_host_never_reaches_location() {
    let gw = TestGateway::start(test_config("")).await;
    let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
    let offer = include_str!("data/obs-offer.sdp");
    for host in ["evil.example.com:443/phish?x=", "", "user@evil.example.com"] {
        let (code, text) = raw(
            addr,
            &format!(
                "POST /whip/h HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
                offer.len()
            ),
        )
        .await;
        assert_eq!(code, 400, "Host {host:?}: {text}");
        assert!(!text.to_ascii_lowercase().contains("location:"), "{text}");
    }
    // A plain host:port is fine, and is what Location starts with.
    let (code, text) = raw(
        addr,
        &format!(
            "POST /whip/h HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
            offer.len()
        ),
    )
    .await;
    assert_eq!(code, 201, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains(&format!("location: http://{addr}/whip/h/")),
        "{text}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_name_cannot_forge_a_log_line() {
    let dir = tempdir::Dir::new("forged-log");
    let log = dir.0.join("stderr.log");
    let p = spawn("", &[], Some(&log)).await;
    let forged = "a%0A2026-12-06T20:00:00.000000Z%20%20INFO%20whipcast:%20FORGED%1B%5B31m";
    let url = format!("ws://{}/ws/{forged}", p.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Refused (bad stream name), with a message, then closed.
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(msg.to_text().unwrap()).unwrap();
    assert_eq!(v["status"], 400, "{v}");
    drop(ws);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(p);
    let text = std::fs::read_to_string(&log).unwrap();
    let forged_lines: Vec<&str> = text.lines().filter(|l| l.contains("FORGED")).collect();
    assert!(!forged_lines.is_empty(), "the refusal is logged: {text}");
    for l in &forged_lines {
        assert!(
            !l.starts_with("2026-12-06T20:00:00"),
            "a forged line made it into the log: {text}"
        );
        assert!(l.contains(r"a\n2026-12-06T20:00:00"), "escaped: {l}");
        assert!(!l.contains('\u{1b}'), "no raw escape sequence: {l:?}");
    }
    assert!(
        !text.contains('\u{1b}'),
        "no terminal escape anywhere: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redirect_leaves_the_site() {
    let gw = TestGateway::start(test_config("")).await;
    let addr: std::net::SocketAddr = gw.base.trim_start_matches("http://").parse().unwrap();
    // `//watch` would redirect to `//watch/`: a network-path reference to the host "watch".
    for path in ["//watch", "//publish", "///watch", "/watch//"] {
        let (code, text) = raw(
            addr,
            &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(code, 404, "{path}: {text}");
    }
    // The pages themselves still redirect to their directory, on this site.
    let (code, text) = raw(
        addr,
        &format!("GET /watch HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!((300..400).contains(&code), "{text}");
    let location = text
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("location: ")
                .map(str::to_string)
        })
        .unwrap();
    assert!(
        location.starts_with("/watch/") && !location.starts_with("//"),
        "{location}"
    );
    gw.shutdown().await;
}
