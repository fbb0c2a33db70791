//! ICE settings that make whipcast deployable behind a firewall: a fixed UDP port range
//! and ICE servers handed to WHIP clients in `Link` headers (RFC 9725 §4.6). Loopback only.
#![allow(clippy::unwrap_used)]

mod common;

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_range_and_link_headers() {
    let cfg = test_config(
        "[ice]\nport_min = 41000\nport_max = 41003\nice_servers = [\"stun:stun.example.invalid:3478\"]\n",
    );
    let gw = TestGateway::start(cfg).await;

    // A real publisher connects through a port of the range.
    let p =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("ranged")).with_format(320, 180, 30))
            .await
            .unwrap();

    // Look at an answer directly: every candidate is loopback and inside the range, and the
    // ICE server is advertised (never contacted by whipcast).
    let offer = include_str!("data/obs-offer.sdp");
    let r = gw
        .http
        .post(gw.whip_url("ranged2"))
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert_eq!(link, "<stun:stun.example.invalid:3478>; rel=\"ice-server\"");
    let answer = r.text().await.unwrap();
    let ports: Vec<u16> = answer
        .lines()
        .filter(|l| l.starts_with("a=candidate"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f[4], "127.0.0.1", "{l}");
            f[5].parse().unwrap()
        })
        .collect();
    assert!(!ports.is_empty());
    assert!(
        ports.iter().all(|p| (41000..=41003).contains(p)),
        "{ports:?}"
    );

    // OPTIONS (non-preflight) advertises Accept-Post and the ICE servers.
    let r = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.whip_url("x"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["accept-post"], "application/sdp");
    // CORS preflight from a browser page.
    let r = gw
        .http
        .request(reqwest::Method::OPTIONS, gw.whip_url("x"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let exposed = p.session_url().map(|_| ()).is_some();
    assert!(exposed);
    assert_eq!(p.stop().await.unwrap(), 200);
    gw.shutdown().await;
}
