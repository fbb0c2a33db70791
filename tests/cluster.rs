//! Several nodes, one service (`[cluster]`), on a real `redis-server` started by the test
//! on a loopback port: a stream name is live on one node cluster-wide (409 elsewhere), a
//! full node sends publishers to the node with room (WHIP 307 followed by our publisher,
//! an OBS-shaped one and the bundled page in Chromium; the page's WebSocket follows the
//! `redirect` message), a node drains on SIGTERM or `POST /api/drain`, the local policy
//! publishes while Redis is down, a node killed with SIGKILL frees its names within the claim TTL
//! and the stream goes live on another node, and Redis stopped under a live stream neither
//! stops it nor loses its claim once Redis is back. Run in a loopback-only namespace
//! (`deploy/netns-run.sh`), as `make test` does.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{TEST_LADDER, TestGateway, get_from, test_config};

/// The claim TTL of the tests' clusters: a dead node's names are free within it.
const TTL: Duration = Duration::from_secs(3);

/// A `redis-server` (Debian's) on a loopback port, without persistence; killed on drop.
struct RedisServer {
    child: Option<tokio::process::Child>,
    port: u16,
}

impl RedisServer {
    async fn start_on(port: u16) -> RedisServer {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server (deploy/install-test-deps.sh installs it)");
        let server = RedisServer {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if server.get("ping-probe").await.is_ok() {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not come up on port {port}");
    }

    async fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(port).await
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn get(&self, key: &str) -> redis::RedisResult<Option<String>> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("GET").arg(key).query_async(&mut conn).await
    }

    /// SIGKILL, as a crash would.
    async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().await.unwrap();
        }
    }
}

fn cluster_section(redis: &RedisServer, node: &str) -> String {
    format!(
        "[cluster]\nredis_url = \"{}\"\nnode_id = \"{node}\"\nclaim_ttl = \"{}s\"\nredis_timeout = \"500ms\"\n",
        redis.url(),
        TTL.as_secs()
    )
}

async fn node(redis: &RedisServer, id: &str) -> TestGateway {
    TestGateway::start(test_config(&cluster_section(redis, id))).await
}

fn publisher(url: &str) -> PublisherOptions {
    PublisherOptions::whip(url).with_format(320, 180, 30)
}

/// Publishes at `url` and checks that the session ended up on `node` (a redirect).
async fn lands_on(url: &str, node: &TestGateway, what: &str) -> Publisher {
    let p = Publisher::start(publisher(url))
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(
        p.session_url()
            .is_some_and(|u| u.starts_with(&node.url("/whip/"))),
        "{what}: the session is not {}'s: {:?}",
        node.url(""),
        p.session_url()
    );
    p
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; the time it took.
async fn until<F: AsyncFnMut() -> bool>(timeout: Duration, mut cond: F) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_name_is_live_on_one_node_cluster_wide() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "node-a").await;
    let b = node(&redis, "node-b").await;

    let first = Publisher::start(publisher(&a.whip_url("cam")))
        .await
        .expect("publish on node a");
    a.wait_master("cam", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let claim = redis.get("whipcast:claim:cam").await.unwrap();
    assert!(
        claim.as_deref().is_some_and(|c| c.starts_with("node-a ")),
        "the claim names node a: {claim:?}"
    );

    // Node b refuses the name with the same 409 as a second publisher on one node.
    let err = Publisher::start(publisher(&b.whip_url("cam")))
        .await
        .err()
        .expect("node b refuses a name live on node a");
    assert!(err.to_string().contains("409"), "{err:#}");
    // Another name is b's to take.
    let other = Publisher::start(publisher(&b.whip_url("other")))
        .await
        .expect("another name on node b");
    b.wait_master("other", 1, Duration::from_secs(20))
        .await
        .unwrap();

    // Every node sees both registrations.
    let (code, body) = b.get_text(&b.url("/api/cluster")).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["node"], "node-b");
    let ids: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["node-a", "node-b"], "{body}");

    // Unpublished on a: the claim goes with it, and b may publish the name, continuing
    // its numbering: a higher media sequence number, one more discontinuity.
    let rendition = a
        .wait_master("cam", 1, Duration::from_secs(5))
        .await
        .unwrap()
        .variants[0]
        .uri
        .clone();
    let (_, text) = a
        .get_text(&common::resolve(&a.master_url("cam"), &rendition))
        .await
        .unwrap();
    let on_a = common::ll::LlPlaylist::parse(&text);
    // A PATCH or DELETE of a's session that reaches node b is sent to node a.
    let session = first.session_url().unwrap().to_string();
    let via_b = session.replace(&a.url(""), &b.url(""));
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    for req in [
        raw.delete(&via_b),
        raw.patch(&via_b)
            .header("content-type", "application/trickle-ice-sdpfrag")
            .body("a=end-of-candidates\r\n"),
    ] {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 307);
        assert_eq!(r.headers()["location"].to_str().unwrap(), session);
    }
    // A session of a stream nobody owns is not found.
    let r = raw
        .delete(b.url("/whip/nobody/0123456789abcdef0123456789abcdef"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(first.stop().await.unwrap(), 200);
    assert!(
        until(Duration::from_secs(5), async || redis
            .get("whipcast:claim:cam")
            .await
            .unwrap()
            .is_none())
        .await
        .is_some(),
        "the claim is released with its broadcast"
    );
    let second = Publisher::start(publisher(&b.whip_url("cam")))
        .await
        .expect("node b publishes the name once a released it");
    // Claimed by b at its first video (until then b may still proxy the name to a, whose
    // ended copy it looked up a moment ago).
    let claimed = until(Duration::from_secs(10), async || {
        redis
            .get("whipcast:claim:cam")
            .await
            .unwrap()
            .is_some_and(|c| c.starts_with("node-b "))
    })
    .await;
    assert!(claimed.is_some(), "node b claims the name");
    b.wait_master("cam", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let (_, text) = b
        .get_text(&common::resolve(&b.master_url("cam"), &rendition))
        .await
        .unwrap();
    let on_b = common::ll::LlPlaylist::parse(&text);
    assert!(
        on_b.media_sequence > on_a.last_msn(),
        "node b continues above node a's last sequence number {}:\n{text}",
        on_a.last_msn()
    );
    assert_eq!(
        on_b.discontinuity_sequence,
        on_a.discontinuity_sequence + 1,
        "one discontinuity more:\n{text}"
    );
    second.stop().await.unwrap();
    other.stop().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_sends_publishers_to_the_node_with_room() {
    let chromium = common::browser_preconditions("cluster");
    let redis = RedisServer::start().await;
    let full = TestGateway::start(test_config(&format!(
        "[server]\nmax_streams = 1\n{}",
        cluster_section(&redis, "node-a")
    )))
    .await;
    let room = node(&redis, "node-b").await;
    // Both registered (each node's first heartbeat runs at its start).
    let registered = until(Duration::from_secs(5), async || {
        let (_, body) = full.get_text(&full.url("/api/cluster")).await.unwrap();
        body.contains("node-a") && body.contains("node-b")
    })
    .await;
    assert!(registered.is_some(), "both nodes registered");

    let one = Publisher::start(publisher(&full.whip_url("one")))
        .await
        .expect("the full node's one stream");
    full.wait_master("one", 1, Duration::from_secs(20))
        .await
        .unwrap();

    // Node a is full: a WHIP POST there is answered 307 to node b, which our publisher and
    // an OBS-shaped one (OBS follows redirects through libcurl) follow.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
        .post(full.whip_url("two?height=180"))
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 307);
    assert_eq!(
        raw.headers()["location"].to_str().unwrap(),
        room.url("/whip/two?height=180")
    );
    for (stream, opts) in [
        ("two", publisher(&full.whip_url("two"))),
        ("three", publisher(&full.whip_url("three")).like_obs()),
    ] {
        let p = Publisher::start(opts)
            .await
            .unwrap_or_else(|e| panic!("{stream}: {e:#}"));
        assert!(
            p.session_url()
                .is_some_and(|u| u.starts_with(&room.url("/whip/"))),
            "{stream}: the session is node b's: {:?}",
            p.session_url()
        );
        room.wait_master(stream, 1, Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(p.stop().await.unwrap(), 200, "{stream}: DELETE on node b");
    }

    let m = common::metrics(&full).await;
    assert_eq!(
        m["whipcast_cluster_redirects_total{signaling=\"whip\"}"],
        3.0
    );
    // The bundled page over WHIP (fetch follows the 307) and WebSocket (the page follows
    // the `redirect` message).
    let (code, summary) = common::run_browser_script(
        &chromium,
        "cluster_redirect.mjs",
        &[&full.url(""), &room.url("")],
        &[],
        Duration::from_secs(150),
    )
    .await;
    assert_eq!(
        code,
        Some(0),
        "the page did not follow the redirects: {}",
        common::script_failures(&summary)
    );
    let m = common::metrics(&full).await;
    assert_eq!(
        m["whipcast_cluster_redirects_total{signaling=\"whip\"}"],
        4.0
    );
    assert_eq!(
        m["whipcast_cluster_redirects_total{signaling=\"websocket\"}"],
        1.0
    );
    one.stop().await.unwrap();
    full.shutdown().await;
    room.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_sends_publishers_on_and_keeps_its_streams_until_they_end() {
    let redis = RedisServer::start().await;
    let token = "drain-secret-0123456789";
    let a = TestGateway::start(test_config(&format!(
        "{}drain_timeout = \"60s\"\nadmin_token = \"{token}\"\n",
        cluster_section(&redis, "node-a")
    )))
    .await;
    let b = node(&redis, "node-b").await;
    let live = Publisher::start(publisher(&a.whip_url("cam")))
        .await
        .expect("publish on node a");
    let before = first_playlist(&a, "cam").await;

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let drain = |auth: Option<&str>| {
        let mut r = http.post(a.url("/api/drain"));
        if let Some(t) = auth {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(drain(None).await.unwrap().status().as_u16(), 401);
    assert_eq!(
        drain(Some("wrong-token-0123456789"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    assert_eq!(b.get_text(&b.url("/api/drain")).await.unwrap().0, 405);
    assert_eq!(drain(Some(token)).await.unwrap().status().as_u16(), 202);
    assert_eq!(a.get_text(&a.url("/readyz")).await.unwrap().0, 503);
    assert_eq!(a.get_text(&a.url("/healthz")).await.unwrap().0, 200);
    assert_eq!(b.get_text(&b.url("/readyz")).await.unwrap().0, 200);

    // New publishes go to node b.
    let moved = lands_on(&a.whip_url("new"), &b, "a publish to the draining node").await;
    // The live stream goes on at node a for a while.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = first_playlist(&a, "cam").await;
    assert!(
        later.last_msn() >= before.last_msn() + 2,
        "still publishing"
    );
    assert!(!later.ended);
    // Its end ends the drain, and node a exits.
    live.stop().await.unwrap();
    let gone = until(Duration::from_secs(20), async || {
        a.get_text(&a.url("/healthz")).await.is_err()
    })
    .await;
    assert!(gone.is_some(), "node a exited after its last stream ended");
    moved.stop().await.unwrap();
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_node_process() {
    let redis = RedisServer::start().await;
    let log = std::env::temp_dir().join(format!("whipcast-drain-{}.log", std::process::id()));
    let config = process_config(&redis, "node-a", "drain_timeout = \"60s\"\n");
    let mut a = common::process::spawn(&config, &[], Some(&log)).await;
    let b = node(&redis, "node-b").await;
    let live = Publisher::start(publisher(&format!("http://{}/whip/cam", a.addr)))
        .await
        .expect("publish on node a");
    assert!(
        until(Duration::from_secs(20), async || serves(
            a.addr,
            "/hls/cam/master.m3u8"
        )
        .await)
        .await
        .is_some()
    );
    let pid = a.child.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(term.success());
    // Draining: not ready, new publishes go to node b, the live stream goes on.
    assert!(
        until(Duration::from_secs(5), async || {
            get_from("127.0.0.1", a.addr, "/readyz")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 503"))
        })
        .await
        .is_some(),
        "/readyz turns 503"
    );
    let moved = lands_on(
        &format!("http://{}/whip/new", a.addr),
        &b,
        "a publish to the draining process",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(a.child.try_wait().unwrap().is_none(), "still running");
    assert!(
        serves(a.addr, "/hls/cam/master.m3u8").await,
        "still serving its stream"
    );
    // The end of its last stream ends the drain, and the process exits cleanly.
    live.stop().await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), a.child.wait())
        .await
        .expect("node a exits after its last stream ended")
        .unwrap();
    assert!(status.success(), "{status:?}");
    moved.stop().await.unwrap();
    b.shutdown().await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_local_policy_a_publish_goes_live_while_redis_is_down() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let a = TestGateway::start(test_config(&format!(
        "{}when_redis_down = \"local\"\n",
        cluster_section(&redis, "node-a")
    )))
    .await;
    redis.kill().await;
    let live = Publisher::start(publisher(&a.whip_url("cam")))
        .await
        .expect("publish while Redis is down");
    a.wait_master("cam", 1, Duration::from_secs(20))
        .await
        .unwrap();
    // Redis back: the next heartbeat claims the name.
    let redis = RedisServer::start_on(port).await;
    let claimed = until(TTL * 2, async || {
        redis
            .get("whipcast:claim:cam")
            .await
            .unwrap()
            .is_some_and(|c| c.starts_with("node-a "))
    })
    .await;
    assert!(claimed.is_some(), "claimed once Redis answers");
    live.stop().await.unwrap();
    a.shutdown().await;
}

/// GET through a node: status, the headers a cache keys on, the body.
async fn fetch(url: &str) -> (u16, [Option<String>; 4], Vec<u8>) {
    let r = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .unwrap();
    let h = |n: &str| r.headers().get(n).map(|v| v.to_str().unwrap().to_string());
    let heads = [
        h("cache-control"),
        h("content-type"),
        h("etag"),
        h("last-modified"),
    ];
    (
        r.status().as_u16(),
        heads,
        r.bytes().await.unwrap().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_serves_every_stream() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "node-a").await;
    let b = node(&redis, "node-b").await;
    let c = node(&redis, "node-c").await;
    let live = Publisher::start(publisher(&a.whip_url("cam")))
        .await
        .expect("publish on node a");
    let master = a
        .wait_master("cam", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let rendition = &master.variants[0].uri;
    let playlist = |gw: &TestGateway| common::resolve(&gw.master_url("cam"), rendition);
    a.wait_segments(&playlist(&a), 2, Duration::from_secs(20))
        .await
        .unwrap();

    // The multivariant playlist, and a segment and its init section: the same bytes and
    // cache headers through every node.
    let (_, text) = a.get_text(&playlist(&a)).await.unwrap();
    let p = common::ll::LlPlaylist::parse(&text);
    let seg = common::resolve(&playlist(&a), &p.segments[0].uri);
    let init = common::resolve(&playlist(&a), p.map_uri.as_deref().unwrap());
    for path in [a.master_url("cam"), seg.clone(), init.clone()] {
        let from_a = fetch(&path).await;
        assert_eq!(from_a.0, 200, "{path}");
        for other in [&b, &c] {
            let through = fetch(&path.replace(&a.url(""), &other.url(""))).await;
            assert_eq!(through.0, 200, "{path} through another node");
            assert_eq!(
                through.1, from_a.1,
                "{path}: headers differ through another node"
            );
            assert!(
                through.2 == from_a.2,
                "{path}: bytes differ through another node"
            );
        }
    }
    // The media playlist: the same segments (fetched a moment apart: the window moves).
    let (code, through_b) = b.get_text(&playlist(&b)).await.unwrap();
    assert_eq!(code, 200);
    let pb = common::ll::LlPlaylist::parse(&through_b);
    assert!(
        pb.segments
            .iter()
            .any(|s| s.uri == p.segments[0].uri || s.msn > p.segments[0].msn),
        "node b's copy of the playlist is node a's:\n{through_b}"
    );
    assert_eq!(pb.target_duration, p.target_duration);

    // A blocking reload through node c waits at node a for the next part, and gets it.
    let (msn, part) = pb.last_part().unwrap();
    let url = format!("{}?_HLS_msn={msn}&_HLS_part={}", playlist(&c), part + 1);
    let asked = Instant::now();
    let (code, text) = c.get_text(&url).await.unwrap();
    assert_eq!(code, 200, "{url}: {text}");
    let got = common::ll::LlPlaylist::parse(&text).last_part().unwrap();
    assert!(
        got > (msn, part),
        "the blocking reload returned the next part: {got:?}"
    );
    eprintln!(
        "blocking reload through node c answered after {} ms",
        asked.elapsed().as_millis()
    );

    // A stream nobody publishes is not found anywhere.
    let (code, _) = b.get_text(&b.master_url("nobody")).await.unwrap();
    assert_eq!(code, 404);
    // Every node lists it in /api/streams, with its node; `?local=1` only what it has.
    let (_, api) = c.get_text(&c.url("/api/streams")).await.unwrap();
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let listed: Vec<(&str, &str, &str)> = api["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap(),
                s["node"].as_str().unwrap(),
                s["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("cam", "node-a", "live")], "{api}");
    let (_, local) = c.get_text(&c.url("/api/streams?local=1")).await.unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&local).unwrap()["streams"],
        serde_json::json!([])
    );
    // What each node says of it in /metrics.
    let (ma, mb) = (common::metrics(&a).await, common::metrics(&b).await);
    assert_eq!(
        ma["whipcast_cluster_proxied_total"], 0.0,
        "the owner proxies nothing"
    );
    assert!(mb["whipcast_cluster_proxied_total"] >= 4.0, "{mb:?}");
    assert_eq!(mb["whipcast_cluster_proxy_errors_total"], 0.0);
    let nodes = until(Duration::from_secs(5), async || {
        let m = common::metrics(&a).await;
        m["whipcast_cluster_nodes"] == 3.0 && m["whipcast_cluster_claims"] == 1.0
    })
    .await;
    assert!(nodes.is_some(), "node a sees 3 nodes and holds 1 claim");
    live.stop().await.unwrap();
    for gw in [a, b, c] {
        gw.shutdown().await;
    }
}

/// The configuration text of a node run as a process of its own; `extra` goes into its
/// `[cluster]` section.
fn process_config(redis: &RedisServer, id: &str, extra: &str) -> String {
    let ladder = TEST_LADDER
        .replace("[video]", "[media.ladder.video]")
        .replace("[audio]", "[media.ladder.audio]")
        .replace("[[rungs]]", "[[media.ladder.rungs]]");
    format!(
        "[hls]\nsegment_duration = \"1s\"\n{}{extra}{ladder}",
        cluster_section(redis, id)
    )
}

async fn serves(addr: SocketAddr, path: &str) -> bool {
    get_from("127.0.0.1", addr, path)
        .await
        .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The media playlist of the first rendition of `stream`, through `base`.
async fn first_playlist(gw: &TestGateway, stream: &str) -> common::ll::LlPlaylist {
    let master = gw
        .wait_master(stream, 1, Duration::from_secs(20))
        .await
        .unwrap();
    let url = common::resolve(&gw.master_url(stream), &master.variants[0].uri);
    let (code, text) = gw.get_text(&url).await.unwrap();
    assert_eq!(code, 200, "{url}: {text}");
    common::ll::LlPlaylist::parse(&text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_frees_its_names_and_viewers_keep_watching() {
    let chromium = common::browser_preconditions("cluster");
    let redis = RedisServer::start().await;
    let log = std::env::temp_dir().join(format!("whipcast-cluster-{}.log", std::process::id()));
    let mut a =
        common::process::spawn(&process_config(&redis, "node-a", ""), &[], Some(&log)).await;
    let b = node(&redis, "node-b").await;

    let on_a = Publisher::start(publisher(&format!("http://{}/whip/cam", a.addr)))
        .await
        .expect("publish on node a");
    assert!(
        until(Duration::from_secs(20), async || serves(
            a.addr,
            "/hls/cam/master.m3u8"
        )
        .await)
        .await
        .is_some(),
        "live on node a"
    );
    let err = Publisher::start(publisher(&b.whip_url("cam")))
        .await
        .err()
        .expect("node b refuses the name while node a lives");
    assert!(err.to_string().contains("409"), "{err:#}");

    // A viewer watches through node b (which proxies to node a) with the bundled page.
    let base = b.url("");
    let watcher = tokio::spawn(async move {
        common::run_browser_script(
            &chromium,
            "failover_watch.mjs",
            &[&base, "cam", "40"],
            &[],
            Duration::from_secs(90),
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(15)).await;
    let before = first_playlist(&b, "cam").await;

    // Node a dies without a word.
    let killed_ms = unix_ms();
    let killed = Instant::now();
    a.child.kill().await.unwrap();
    let freed = until(TTL * 3, async || {
        redis.get("whipcast:claim:cam").await.unwrap().is_none()
    })
    .await
    .expect("the dead node's claim expires");
    // The claim was last renewed at most a third of the TTL before the kill.
    assert!(freed <= TTL + Duration::from_millis(500), "{freed:?}");

    // The publisher comes back through node b, which continues the numbering.
    drop(on_a);
    let republished = killed.elapsed();
    let on_b = Publisher::start(publisher(&b.whip_url("cam")))
        .await
        .expect("node b takes the name");
    let after = first_playlist(&b, "cam").await;
    let first_playlist_at = killed.elapsed();
    assert!(
        after.media_sequence > before.last_msn(),
        "node b continues above {}: {}",
        before.last_msn(),
        after.media_sequence
    );
    assert_eq!(
        after.discontinuity_sequence,
        before.discontinuity_sequence + 1
    );

    // The page played before the kill, stopped, and plays again without a reload.
    let (code, summary) = watcher.await.unwrap();
    assert_eq!(code, Some(0), "{}", common::script_failures(&summary));
    let samples: Vec<(u64, f64, String)> = summary["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s[0].as_u64().unwrap(),
                s[1].as_f64().unwrap(),
                s[2].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let played_before = samples
        .iter()
        .filter(|s| s.0 < killed_ms)
        .map(|s| s.1)
        .fold(0.0, f64::max);
    assert!(played_before > 1.0, "playing before the kill: {samples:?}");
    // Playing again: from this sample on, the position advances for 2 s in a row.
    let resumed = samples.windows(9).find_map(|w| {
        (w[0].0 > killed_ms + first_playlist_at.as_millis() as u64 - 1000
            && w.windows(2).all(|p| p[1].1 > p[0].1))
        .then_some(w[0].0)
    });
    let resumed = resumed.unwrap_or_else(|| {
        panic!(
            "the page did not play again after the failover: {:?} {samples:?}",
            summary["state"]
        )
    });
    eprintln!(
        "failover timeline: SIGKILL at 0; claim expired at {:.2} s; re-published at {:.2} s; \
         first playlist on node b at {:.2} s; hls.js playing again at {:.2} s (page state {})",
        freed.as_secs_f64(),
        republished.as_secs_f64(),
        first_playlist_at.as_secs_f64(),
        (resumed - killed_ms) as f64 / 1000.0,
        summary["state"]
    );
    on_b.stop().await.unwrap();
    b.shutdown().await;
    let _ = std::fs::remove_file(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_keeps_live_streams_and_their_claims_come_back() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let a = node(&redis, "node-a").await;
    let live = Publisher::start(publisher(&a.whip_url("cam")))
        .await
        .expect("publish");
    let master = a
        .wait_master("cam", 1, Duration::from_secs(20))
        .await
        .unwrap();
    let token = redis.get("whipcast:claim:cam").await.unwrap().unwrap();
    let playlist = common::resolve(&a.master_url("cam"), &master.variants[0].uri);

    redis.kill().await;
    // The stream goes on: segments keep coming for two claim TTLs without Redis.
    let before = a.wait_segments(&playlist, 1, Duration::from_secs(5)).await;
    let first_seq = before.unwrap().media_sequence;
    tokio::time::sleep(TTL * 2).await;
    let (code, text) = a.get_text(&playlist).await.unwrap();
    assert_eq!(code, 200);
    let p = common::parse_media(&text).unwrap();
    assert!(
        p.media_sequence + p.segments.len() as u64 >= first_seq + 5,
        "segments kept coming without Redis:\n{text}"
    );
    // A new publish is refused with 503 (cluster.when_redis_down = "refuse").
    let err = Publisher::start(publisher(&a.whip_url("new")))
        .await
        .err()
        .expect("no new name while Redis is down");
    assert!(err.to_string().contains("503"), "{err:#}");

    // Redis comes back empty (no persistence): the live stream's claim is put back, with
    // the token it had, by the next heartbeat.
    let redis = RedisServer::start_on(port).await;
    let back = until(TTL * 2, async || {
        redis.get("whipcast:claim:cam").await.unwrap().as_deref() == Some(token.as_str())
    })
    .await;
    assert!(back.is_some(), "the claim is back after Redis restarted");
    let fence: u64 = redis
        .get("whipcast:fence")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    let held: u64 = token.split_once(' ').unwrap().1.parse().unwrap();
    assert!(fence >= held, "the fence counter is above every live token");
    assert!(common::metrics(&a).await["whipcast_cluster_redis_errors_total"] >= 1.0);
    // And publishing works again.
    let new = Publisher::start(publisher(&a.whip_url("new")))
        .await
        .expect("publish once Redis is back");
    a.wait_master("new", 1, Duration::from_secs(20))
        .await
        .unwrap();
    new.stop().await.unwrap();
    live.stop().await.unwrap();
    a.shutdown().await;
}
