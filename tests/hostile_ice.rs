//! Hostile ICE and signalling input against a real whipcast over real HTTP and UDP:
//! - an offer of 1 000 candidates gets connectivity checks to at most
//!   `ice.max_remote_candidates` targets, and none outside `ice.candidate_networks`; a
//!   trickled candidate beyond the cap is refused with 400 (WHIP PATCH and WebSocket);
//! - PATCH follows RFC 9725 §4.3.1: 412 for another ETag, 422 for an ICE restart;
//! - numbers out of range in an offer (`a=ssrc`, …) are 400, not 500;
//! - a broken request body is 400 and a late one 408, not "offer too large" (raw TCP).
//!
//! Every address here is on loopback (127.0.0.0/8): the sinks the checks are counted on,
//! and the 950 candidates nobody listens on.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestGateway, test_config};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;

/// What OBS 30.2+ sends: session-level ICE (ufrag `Ns8c`), no candidates.
const OBS_OFFER: &str = include_str!("data/obs-offer.sdp");

/// The default `ice.max_remote_candidates`.
const CAP: usize = 16;

/// The most binding requests one pair gets before it fails: the first and 7 retransmissions
/// (the stack's default, RFC 8445 §14.3 leaves the count to the agent).
const REQUESTS_PER_TARGET: usize = 8;

/// UDP sockets counting the STUN binding requests (RFC 8489 §5: type 0x0001, magic cookie
/// 0x2112A442) they receive.
struct Sinks {
    addrs: Vec<SocketAddr>,
    counts: Arc<Mutex<HashMap<SocketAddr, usize>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Sinks {
    async fn bind(ips: &[&str], per_ip: usize) -> Sinks {
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for ip in ips {
            for _ in 0..per_ip {
                let sock = UdpSocket::bind(format!("{ip}:0")).await.unwrap();
                let addr = sock.local_addr().unwrap();
                addrs.push(addr);
                let counts = counts.clone();
                tasks.push(tokio::spawn(async move {
                    let mut buf = [0u8; 1500];
                    while let Ok((n, _)) = sock.recv_from(&mut buf).await {
                        if n >= 20 && buf[..2] == [0, 1] && buf[4..8] == [0x21, 0x12, 0xa4, 0x42] {
                            *counts.lock().unwrap().entry(addr).or_insert(0) += 1;
                        }
                    }
                }));
            }
        }
        Sinks {
            addrs,
            counts,
            tasks,
        }
    }

    /// Binding requests per sink that received any.
    fn counts(&self) -> HashMap<SocketAddr, usize> {
        self.counts.lock().unwrap().clone()
    }

    fn total(&self) -> usize {
        self.counts().values().sum()
    }

    /// Waits until `targets` sinks were checked or `timeout` passed.
    async fn wait_targets(&self, targets: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.counts().len() < targets && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn host_candidate(i: usize, addr: SocketAddr) -> String {
    format!(
        "a=candidate:{i} 1 udp 2122260223 {} {} typ host",
        addr.ip(),
        addr.port()
    )
}

/// The OBS offer with `candidates` in its first (BUNDLE-tagged) section.
fn offer_with(candidates: &[String]) -> String {
    let mut lines = candidates.join("\r\n");
    lines.push_str("\r\n");
    let offer = OBS_OFFER.replace("\r\n", "\n").replace('\n', "\r\n");
    offer.replacen("a=mid:0\r\n", &format!("a=mid:0\r\n{lines}"), 1)
}

/// 950 candidates at loopback addresses nobody listens on (127.0.1.0/24).
fn elsewhere(first: usize) -> Vec<String> {
    (0..950)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.1.{}:{}", 1 + i % 200, 30_000 + i)
                .parse()
                .unwrap();
            host_candidate(first + i, addr)
        })
        .collect()
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

async fn post_offer(gw: &TestGateway, stream: &str, offer: String) -> Reply {
    let r = gw
        .http
        .post(gw.whip_url(stream))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

async fn patch(gw: &TestGateway, session: &str, if_match: Option<&str>, frag: String) -> Reply {
    let mut req = gw
        .http
        .patch(session)
        .header("content-type", "application/trickle-ice-sdpfrag")
        .body(frag);
    if let Some(m) = if_match {
        req = req.header("if-match", m);
    }
    let r = req.send().await.unwrap();
    Reply {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

fn frag(candidate: &str) -> String {
    format!(
        "a=ice-ufrag:Ns8c\r\na=ice-pwd:2ERC5NAYh9I0hNO1X0qjhC\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n{candidate}\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_candidates_get_checks_to_at_most_the_cap() {
    let gw = TestGateway::start(test_config("")).await;
    let sinks = Sinks::bind(&["127.0.0.2", "127.0.0.3"], 25).await;
    let mut candidates: Vec<String> = sinks
        .addrs
        .iter()
        .enumerate()
        .map(|(i, a)| host_candidate(i, *a))
        .collect();
    candidates.extend(elsewhere(candidates.len()));
    assert_eq!(candidates.len(), 1000);
    let offer = offer_with(&candidates);
    println!(
        "offer: {} bytes, {} candidates",
        offer.len(),
        candidates.len()
    );

    // The offer still works.
    let started = Instant::now();
    let r = post_offer(&gw, "many", offer).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let session = r.headers["location"].to_str().unwrap().to_string();

    // The first CAP candidates are sinks: they are checked, and nothing else is.
    sinks.wait_targets(CAP, Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = sinks.counts();
    let total = sinks.total();
    println!(
        "after {:.1}s: {total} binding requests to {} of {} sinks",
        started.elapsed().as_secs_f64(),
        counts.len(),
        sinks.addrs.len()
    );
    assert!(
        !counts.is_empty(),
        "no check reached a sink: the test sees nothing"
    );
    assert!(
        counts.len() <= CAP,
        "{} targets checked: {counts:?}",
        counts.len()
    );
    assert!(
        counts.keys().all(|a| sinks.addrs[..CAP].contains(a)),
        "a candidate beyond the cap was checked: {counts:?}"
    );
    assert!(
        total <= CAP * REQUESTS_PER_TARGET,
        "{total} binding requests"
    );

    // Trickling past the cap: 400, naming the key; the target gets nothing.
    let extra = sinks.addrs[CAP + 1];
    let r = patch(&gw, &session, None, frag(&host_candidate(5000, extra))).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("ice.max_remote_candidates"), "{}", r.body);
    // A candidate naming a target already checked is not a new one.
    let r = patch(
        &gw,
        &session,
        None,
        frag(&host_candidate(5001, sinks.addrs[0])),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!sinks.counts().contains_key(&extra));

    // DELETE ends the checks.
    let r = gw.http.delete(&session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_delete = sinks.total();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sinks.total(), after_delete, "checks after DELETE");

    // WebSocket: an offer at the cap, then one candidate more is refused with 400.
    let (mut ws, _) = tokio_tungstenite::connect_async(gw.ws_url("wscap"))
        .await
        .unwrap();
    let offer = offer_with(&elsewhere(0)[..CAP]);
    ws.send(Message::Text(
        serde_json::json!({"type": "offer", "sdp": offer})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["type"], "answer", "{v}");
    let c = host_candidate(7000, sinks.addrs[CAP + 2]);
    ws.send(Message::Text(
        serde_json::json!({"type": "candidate", "candidate": {
            "candidate": c.trim_start_matches("a="), "sdpMid": "0", "sdpMLineIndex": 0
        }})
        .to_string()
        .into(),
    ))
    .await
    .unwrap();
    // Server candidates may come first (trickled to WebSocket clients).
    let v = loop {
        let v = next_json(&mut ws).await;
        if v["type"] != "candidate" {
            break v;
        }
    };
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["status"], 400, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("ice.max_remote_candidates"),
        "{v}"
    );
    ws.close(None).await.unwrap();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_outside_the_allowed_networks_get_nothing() {
    let gw = TestGateway::start(test_config(
        "[ice]\ncandidate_networks = [\"127.0.0.2/32\"]\n",
    ))
    .await;
    // The refused sinks come first, so that without the policy they would be checked.
    let refused = Sinks::bind(&["127.0.0.3"], 25).await;
    let allowed = Sinks::bind(&["127.0.0.2"], 25).await;
    let mut candidates: Vec<String> = refused
        .addrs
        .iter()
        .chain(&allowed.addrs)
        .enumerate()
        .map(|(i, a)| host_candidate(i, *a))
        .collect();
    candidates.extend(elsewhere(candidates.len()));
    let r = post_offer(&gw, "fenced", offer_with(&candidates)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let session = r.headers["location"].to_str().unwrap().to_string();
    // Trickled into a refused network: accepted (browsers trickle what they have) and
    // never checked.
    let r = patch(
        &gw,
        &session,
        None,
        frag(&host_candidate(3000, refused.addrs[0])),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    allowed.wait_targets(CAP, Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "127.0.0.2: {} requests to {} sinks; 127.0.0.3: {} requests",
        allowed.total(),
        allowed.counts().len(),
        refused.total()
    );
    assert_eq!(
        refused.total(),
        0,
        "127.0.0.3 was checked: {:?}",
        refused.counts()
    );
    assert!(!allowed.counts().is_empty(), "no check reached 127.0.0.2");
    assert!(allowed.counts().len() <= CAP, "{:?}", allowed.counts());
    let r = gw.http.delete(&session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    serde_json::from_str(reply.to_text().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_follows_rfc9725_preconditions_and_restart_rules() {
    let gw = TestGateway::start(test_config("")).await;
    let r = post_offer(&gw, "patchy", OBS_OFFER.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let session = r.headers["location"].to_str().unwrap().to_string();
    let etag = r.headers["etag"].to_str().unwrap().to_string();
    let cand = "a=candidate:1 1 udp 2122260223 127.0.1.1 40000 typ host";

    // If-Match naming another tag, or the session's as a weak tag: 412 (RFC 9110 §13.1.1).
    for m in ["\"0000000000000000\"", &format!("W/{etag}"), "garbage"] {
        let r = patch(&gw, &session, Some(m), frag(cand)).await;
        assert_eq!(r.status, 412, "If-Match {m}: {}", r.body);
    }
    // The session's own tag, alone or in a list: applied.
    let r = patch(&gw, &session, Some(&etag), frag(cand)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert!(
        !r.headers.contains_key("etag"),
        "RFC 9725 §4.3.2: no ETag on 204"
    );
    let r = patch(&gw, &session, Some(&format!("\"x\", {etag}")), frag(cand)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // The offer's credentials and no If-Match: plain trickle.
    let r = patch(&gw, &session, None, frag(cand)).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Other credentials, with or without If-Match: an ICE restart, which is not supported.
    let restart = "a=ice-ufrag:new1\r\na=ice-pwd:newpasswordnewpassword12\r\n".to_string();
    let r = patch(&gw, &session, None, restart.clone()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = patch(&gw, &session, Some(&etag), restart.clone()).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = patch(&gw, &session, Some("*"), restart).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = patch(&gw, &session, Some("*"), frag(cand)).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = gw.http.delete(&session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_out_of_range_are_400_not_500() {
    let gw = TestGateway::start(test_config("")).await;
    let obs = OBS_OFFER;
    for (name, offer, says) in [
        (
            "ssrc20",
            obs.replace("a=ssrc:2 cname:x", "a=ssrc:99999999999999999999 cname:x"),
            "SSRC",
        ),
        (
            "ssrcneg",
            obs.replace("a=ssrc:1 cname:x", "a=ssrc:-1 cname:x"),
            "SSRC",
        ),
        (
            "rtpmap",
            obs.replace("a=rtpmap:96 H264/90000", "a=rtpmap:300 H264/90000"),
            "payload type",
        ),
        (
            "clock",
            obs.replace("a=rtpmap:96 H264/90000", "a=rtpmap:96 H264/99999999999"),
            "clock rate",
        ),
        (
            "extmap",
            obs.replacen(
                "a=rtcp-mux\r\n",
                "a=rtcp-mux\r\na=extmap:4096 urn:ietf:params:rtp-hdrext:sdes:mid\r\n",
                1,
            ),
            "extension id",
        ),
        (
            "rtcp",
            obs.replacen("a=rtcp-mux\r\n", "a=rtcp-mux\r\na=rtcp:99999999999\r\n", 1),
            "port",
        ),
        (
            "mformat",
            obs.replace("UDP/TLS/RTP/SAVPF 96", "UDP/TLS/RTP/SAVPF 96 99999"),
            "payload type",
        ),
        // a=msid without an a=ssrc: the stack cannot map the section's RTP to a track.
        ("nossrc", obs.replace("a=ssrc:2 cname:x\r\n", ""), "a=msid"),
    ] {
        let r = post_offer(&gw, name, offer).await;
        assert_eq!(r.status, 400, "{name}: {}", r.body);
        assert!(r.body.contains(says), "{name}: {}", r.body);
    }
    // The unchanged offer is still fine.
    let r = post_offer(&gw, "fine", obs.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    gw.shutdown().await;
}

/// Sends `request` on a new connection and returns what the server answers until it
/// closes the connection (or 10 s pass).
async fn raw(gw: &TestGateway, request: &[u8]) -> String {
    let addr = gw.base.trim_start_matches("http://");
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_and_late_bodies_are_not_too_large() {
    let gw = TestGateway::start(test_config("[limits]\nbody_timeout = \"1s\"\n")).await;
    // A chunk size that is not hex (RFC 9112 §7.1): 400, and not "too large".
    let reply = raw(
        &gw,
        b"POST /whip/chunky HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
          Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    )
    .await;
    println!("{reply}");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(!reply.contains("too large"), "{reply}");
    assert!(reply.contains("could not be read"), "{reply}");
    // A body that stops coming: 408 after limits.body_timeout, and the connection closes.
    let started = Instant::now();
    let reply = raw(
        &gw,
        b"POST /whip/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/sdp\r\n\
          Content-Length: 1000\r\n\r\nv=0\r\n",
    )
    .await;
    println!("{reply}");
    assert!(reply.starts_with("HTTP/1.1 408 "), "{reply}");
    assert!(
        reply.to_ascii_lowercase().contains("connection: close"),
        "{reply}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // The same on a PATCH of a live session's trickle.
    let r = post_offer(&gw, "late", OBS_OFFER.to_string()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let path = r.headers["location"]
        .to_str()
        .unwrap()
        .trim_start_matches(&gw.base)
        .to_string();
    let reply = raw(
        &gw,
        format!(
            "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/trickle-ice-sdpfrag\r\n\
             Transfer-Encoding: chunked\r\n\r\n-1\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    assert!(reply.contains("could not be read"), "{reply}");
    // Still a real limit: a declared length over server.max_sdp_bytes is 413.
    let r = post_offer(&gw, "huge", "v=0\r\n".repeat(100_000)).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // The body was not read to its end: the connection is not reused.
    assert_eq!(r.headers["connection"], "close");
    // /metrics counts the refused publishes by their real status.
    let m = common::metrics(&gw).await;
    assert_eq!(
        m["whipcast_publish_refused_total{status=\"408\"}"], 1.0,
        "{m:?}"
    );
    assert_eq!(
        m["whipcast_publish_refused_total{status=\"413\"}"], 1.0,
        "{m:?}"
    );
    assert_eq!(
        m["whipcast_publish_refused_total{status=\"400\"}"], 1.0,
        "{m:?}"
    );
    gw.shutdown().await;
}
