//! Connection bounds, as a hostile client meets them: slowloris, silent and idle
//! connections are closed by the timeouts; one client's connection cap refuses it with a
//! 503 while other clients are served, even under a low descriptor limit (`prlimit`); a
//! SIGTERM with a half-open client still exits within the configured grace.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::process::{spawn, tempdir};
use common::{TestGateway, connect_from, get_from, metrics, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes (EOF or reset); how long that took from `since`.
async fn closed_after(mut s: TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The sum of the samples of `family` whose labels contain `label`.
fn sum(m: &std::collections::HashMap<String, f64>, family: &str, label: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(family) && k.contains(label))
        .map(|(_, v)| v)
        .sum()
}

fn addr_of(gw: &TestGateway) -> SocketAddr {
    gw.base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_silent_and_idle_connections_are_closed() {
    let gw = TestGateway::start(test_config(
        "[limits]\nheader_timeout = \"2s\"\nidle_timeout = \"6s\"\n",
    ))
    .await;
    let addr = addr_of(&gw);
    let start = Instant::now();

    // The slowloris proper: write and read on one socket from one task.
    let mut loris = TcpStream::connect(addr).await.unwrap();
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let loris = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                r = loris.read(&mut buf) => match r {
                    Ok(0) | Err(_) => return Some(t0.elapsed()),
                    Ok(_) => {}
                },
                () = tokio::time::sleep(Duration::from_millis(300)) => {
                    if loris.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        return Some(t0.elapsed());
                    }
                }
            }
            if t0.elapsed() > Duration::from_secs(15) {
                return None;
            }
        }
    });

    // Silent: connects and says nothing.
    let silent = TcpStream::connect(addr).await.unwrap();
    let silent = tokio::spawn(closed_after(silent, start, Duration::from_secs(15)));

    // Idle keep-alive: one request answered, then nothing.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "the idle connection's first request is served"
    );
    let answered = Instant::now();
    let idle = tokio::spawn(closed_after(idle, answered, Duration::from_secs(15)));

    // h2c: the HTTP/2 preface and nothing else (no SETTINGS, no request).
    let mut h2c = TcpStream::connect(addr).await.unwrap();
    h2c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let h2c = tokio::spawn(closed_after(h2c, Instant::now(), Duration::from_secs(20)));

    let loris = loris.await.unwrap().expect("slowloris connection closed");
    let silent = silent.await.unwrap().expect("silent connection closed");
    let idle = idle
        .await
        .unwrap()
        .expect("idle keep-alive connection closed");
    let h2c = h2c
        .await
        .unwrap()
        .expect("h2c preface-only connection closed");
    eprintln!("closed after: slowloris {loris:?}, silent {silent:?}, idle {idle:?}, h2c {h2c:?}");
    // Header timeout 2 s: the trickling and the silent one go at ~2 s, however many bytes
    // the first sent; the kept-alive one ~2 s after its response.
    for (what, d) in [("slowloris", loris), ("silent", silent), ("idle", idle)] {
        assert!(
            d >= Duration::from_millis(1500) && d <= Duration::from_secs(5),
            "{what} closed after {d:?}, expected ~2 s (header_timeout)"
        );
    }
    // No header timeout once HTTP/2 is spoken: the idle timeout (6 s) or the PING
    // keep-alive (3 s + 2 s) ends it.
    assert!(h2c <= Duration::from_secs(9), "h2c closed after {h2c:?}");

    // The server is fine, and counted what it closed.
    let (code, _) = gw.get_text(&gw.url("/healthz")).await.unwrap();
    assert_eq!(code, 200);
    let m = metrics(&gw).await;
    assert!(
        sum(
            &m,
            "whipcast_http_connections_closed_total",
            "reason=\"header_timeout\""
        ) >= 3.0,
        "header timeouts counted in /metrics: {m:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_connection_cap_refuses_it_and_serves_the_others() {
    let gw = TestGateway::start(test_config(
        "[limits]\nmax_connections = 64\nmax_connections_per_client = 20\nheader_timeout = \"30s\"\n",
    ))
    .await;
    let addr = addr_of(&gw);
    // The attacker (127.0.0.3) holds its allowance with silent connections.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(connect_from("127.0.0.3", addr).await.unwrap());
    }
    // Its next one gets a clear refusal, then the close.
    let mut refused = connect_from("127.0.0.3", addr).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), refused.read_to_string(&mut text))
        .await
        .expect("refused connection closed")
        .ok();
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("Retry-After:"),
        "over the cap: {text:?}"
    );
    // Everyone else is served: health, the API, a playlist that does not exist (404).
    let health = get_from("127.0.0.4", addr, "/healthz").await.unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let api = get_from("127.0.0.4", addr, "/api/streams").await.unwrap();
    assert!(api.starts_with("HTTP/1.1 200"), "{api}");
    let missing = get_from("127.0.0.4", addr, "/hls/nobody/master.m3u8")
        .await
        .unwrap();
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // Releasing one lets the attacker's next in.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let again = get_from("127.0.0.3", addr, "/healthz").await.unwrap();
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
    let m = metrics(&gw).await;
    assert!(
        sum(
            &m,
            "whipcast_http_connections_refused_total",
            "reason=\"per_client\""
        ) >= 1.0
    );
    assert!(sum(&m, "whipcast_http_connections_open", "") >= 19.0);
    drop(held);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_descriptor_limit_is_not_an_outage() {
    // 300 descriptors: unbounded, 300 silent connections would take every one (the
    // listener's accept then fails for everyone: /healthz, playlists and WHIP time out).
    let log_dir = tempdir::Dir::new("prlimit-log");
    let log = log_dir.0.join("stderr.log");
    let p = spawn(
        "[server]\nmax_streams = 2\n[limits]\nmax_connections_per_client = 50\nheader_timeout = \"60s\"\n",
        &["prlimit", "--nofile=300:300", "--"],
        Some(&log),
    )
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..300 {
        match connect_from("127.0.0.5", p.addr).await {
            Ok(s) => held.push(s),
            Err(_) => refused += 1,
        }
    }
    // The attacker's connections beyond its 50 were answered 503 and closed; the
    // descriptors are the server's to use for others.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for who in ["127.0.0.6", "127.0.0.7"] {
        let health = get_from(who, p.addr, "/healthz").await.unwrap();
        assert!(health.starts_with("HTTP/1.1 200"), "{who}: {health}");
        let missing = get_from(who, p.addr, "/hls/x/master.m3u8").await.unwrap();
        assert!(missing.starts_with("HTTP/1.1 404"), "{who}: {missing}");
    }
    let metrics = get_from("127.0.0.6", p.addr, "/metrics").await.unwrap();
    let refused_line = metrics
        .lines()
        .find(|l| {
            l.starts_with("whipcast_http_connections_refused_total") && l.contains("per_client")
        })
        .unwrap_or_default()
        .to_string();
    let n: f64 = refused_line
        .rsplit(' ')
        .next()
        .unwrap_or("0")
        .parse()
        .unwrap_or(0.0);
    assert!(
        n >= 200.0,
        "refusals counted: {refused_line:?} (connect errors: {refused})"
    );
    drop(held);
    drop(p);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("limits.max_connections lowered to fit the descriptor limit"),
        "the cap was fitted to the 300 descriptors: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_open_client_exits_within_the_grace() {
    let mut p = spawn(
        "[server]\nshutdown_linger = \"1s\"\n[limits]\nshutdown_grace = \"2s\"\nheader_timeout = \"60s\"\n",
        &[],
        None,
    )
    .await;
    // Half a request, then silence: before the grace period, this kept the process alive
    // until the client let go.
    let mut half = TcpStream::connect(p.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let pid = p.child.id().expect("running");
    let t0 = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), p.child.wait())
        .await
        .expect("exited")
        .unwrap();
    let took = t0.elapsed();
    eprintln!("exit after {took:?}: {status}");
    assert!(status.success(), "exit status {status}");
    // linger 1 s + grace 2 s, plus the broadcasts' own end (none here) and a margin.
    assert!(took <= Duration::from_secs(6), "took {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "exited before the grace: {took:?}"
    );
    // The half-open client was closed.
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(1), half.read(&mut buf)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "half-open connection closed: {r:?}"
    );
}

/// A WHIP POST of `offer` for `stream` from loopback address `from`; the status code.
async fn post_offer_from(from: &str, addr: SocketAddr, stream: &str, offer: &str) -> u16 {
    let mut s = connect_from(from, addr).await.unwrap();
    let req = format!(
        "POST /whip/{stream} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answered")
        .unwrap();
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn squatters_hold_neither_the_name_nor_the_slots() {
    use common::publisher::{Publisher, PublisherOptions};
    // The defaults for pending sessions (8, 2 per client) and the publish rate (30 a
    // minute, 10 at once), with a stream limit as small as the squatter's numbers.
    let gw = TestGateway::start(test_config(
        "[server]\nmax_streams = 2\n[limits]\nmax_pending_sessions = 8\nmax_pending_sessions_per_client = 2\npublish_per_minute = 30\npublish_burst = 10\n",
    ))
    .await;
    let addr = addr_of(&gw);
    let offer = include_str!("data/obs-offer.sdp");
    // One address offers 16 times for the name, never starting ICE (nobody is behind the
    // offer): two are answered and wait; the rest are refused with 429.
    let mut statuses = Vec::new();
    for _ in 0..16 {
        statuses.push(post_offer_from("127.0.0.9", addr, "cam", offer).await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        14,
        "{statuses:?}"
    );
    // The real owner publishes the same name at once, from its own address: answered, live,
    // playable — the squatter's pending sessions hold no name.
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("cam")).with_format(320, 180, 30))
            .await
            .expect("the real publisher connects");
    gw.wait_master("cam", 1, Duration::from_secs(20))
        .await
        .expect("the real publisher's stream plays");
    let summary = common::stream_summary(&gw, "cam").await;
    assert_eq!(summary["state"], "live", "{summary}");
    // A second real publisher of the same name now gets the 409 of a live name.
    assert_eq!(post_offer_from("127.0.0.10", addr, "cam", offer).await, 409);
    let m = metrics(&gw).await;
    assert!(sum(&m, "whipcast_publish_refused_total", "status=\"429\"") >= 14.0);
    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
}
