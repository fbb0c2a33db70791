//! Any node serves any stream (`[cluster]`): a middleware on the HLS routes, added only in a
//! cluster, that sends a request for a stream this node does not have live to the node
//! that owns it, and streams the answer back as it comes — blocking playlist reloads
//! included (the owner holds the request until the part exists), with the owner's status
//! and cache headers untouched, so a CDN or the nginx shield may point at every node.
//!
//! A request already proxied once (`x-whipcast-proxied`) is never proxied again: two nodes
//! that disagree about the owner for a moment answer 404 rather than bounce a request
//! between them.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use tracing::warn;

use crate::cluster::Cluster;
use crate::hls::HlsStore;

/// Marks a request one node sent another.
const PROXIED: HeaderName = HeaderName::from_static("x-whipcast-proxied");

/// Longest a proxied request may take: a blocking reload waits up to 3 × the target
/// duration at the owner (HLS2 §6.2.5.2), and a segment is a few MB on a fast link.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `/api/streams` waits for another node's streams.
const PEER_API_TIMEOUT: Duration = Duration::from_secs(1);

/// Connecting to the owner: nodes of one cluster are near each other.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Request headers the owner needs to answer as it would have answered the client:
/// conditional and partial requests, compression, and play authorization.
const FORWARDED: [HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::RANGE,
    header::ACCEPT_ENCODING,
    header::AUTHORIZATION,
    header::ACCEPT,
];

/// Response headers that belong to one connection (RFC 9110 §7.6.1), not to the object.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// The middleware's state.
#[derive(Clone)]
pub struct Proxy {
    cluster: Cluster,
    store: HlsStore,
    http: reqwest::Client,
}

impl Proxy {
    /// A proxy for the streams of `cluster` that `store` does not have live.
    pub fn new(cluster: Cluster, store: HlsStore) -> Option<Proxy> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(UPSTREAM_TIMEOUT)
            // The owner's Location (none on HLS routes) is the client's business.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| warn!(error = %e, "cluster proxy: no HTTP client"))
            .ok()?;
        Some(Proxy {
            cluster,
            store,
            http,
        })
    }
}

impl Proxy {
    /// The streams of every other node (their `/api/streams?local=1`), each with its
    /// `node`; a node that does not answer within [`PEER_API_TIMEOUT`] is left out.
    pub async fn streams_elsewhere(&self) -> Vec<serde_json::Value> {
        let Ok(nodes) = self.cluster.nodes().await else {
            return Vec::new();
        };
        let me = self.cluster.node_id();
        let asks = nodes
            .into_iter()
            .filter(|n| n.id != me)
            .map(|n| async move {
                let url = format!("{}/api/streams?local=1", n.url);
                let answer = self
                    .http
                    .get(&url)
                    .header(&PROXIED, me)
                    .timeout(PEER_API_TIMEOUT)
                    .send()
                    .await;
                let body: serde_json::Value = match answer {
                    // Not `Response::json`: reqwest's `json` feature is on for the tests only.
                    Ok(r) if r.status().is_success() => r
                        .bytes()
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice(&b).ok())
                        .unwrap_or_default(),
                    Ok(r) => {
                        warn!(%url, status = r.status().as_u16(), "cluster: a node's streams");
                        return Vec::new();
                    }
                    Err(e) => {
                        warn!(%url, error = %e, "cluster: a node's streams");
                        return Vec::new();
                    }
                };
                let mut streams = match body.get("streams") {
                    Some(serde_json::Value::Array(a)) => a.clone(),
                    _ => Vec::new(),
                };
                for s in &mut streams {
                    if let Some(o) = s.as_object_mut() {
                        o.insert("node".into(), serde_json::Value::String(n.id.clone()));
                    }
                }
                streams
            });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The middleware: a request for a stream live here, or for no stream another node owns,
/// goes on to the handlers; the others go to the owner.
pub async fn guard(State(proxy): State<Proxy>, req: Request, next: Next) -> Response {
    let stream = req
        .uri()
        .path()
        .strip_prefix("/hls/")
        .and_then(|rest| rest.split('/').next())
        .filter(|s| crate::StreamKey::is_valid(s));
    let Some(stream) = stream else {
        return next.run(req).await;
    };
    if req.headers().contains_key(&PROXIED) || proxy.store.is_live(stream) {
        return next.run(req).await;
    }
    match proxy.cluster.owner_url(stream, Instant::now()).await {
        Some(owner) => {
            proxy.store.metrics().cluster.proxied.inc();
            forward(&proxy, &owner, req).await
        }
        None => next.run(req).await,
    }
}

async fn forward(proxy: &Proxy, owner: &str, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let url = format!("{owner}{path}");
    let mut upstream = proxy
        .http
        .request(req.method().clone(), &url)
        .header(&PROXIED, proxy.cluster.node_id());
    for name in &FORWARDED {
        for v in req.headers().get_all(name) {
            upstream = upstream.header(name, v);
        }
    }
    let resp = match upstream.send().await {
        Ok(r) => r,
        Err(e) => {
            warn!(%url, error = %e, "cluster proxy: the owner did not answer");
            proxy.store.metrics().cluster.proxy_errors.inc();
            // The owner is gone or unreachable: the client retries, as after any 502.
            return (
                StatusCode::BAD_GATEWAY,
                [(header::CACHE_CONTROL, "no-store")],
                "the node that owns this stream did not answer\n",
            )
                .into_response();
        }
    };
    let mut out = Response::builder().status(resp.status());
    if let Some(h) = out.headers_mut() {
        for (name, v) in resp.headers() {
            if !HOP_BY_HOP.contains(name) {
                h.append(name, v.clone());
            }
        }
    }
    // Streamed through as the owner sends it: a segment is never held whole here.
    let body = Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other));
    out.body(body).unwrap_or_else(|e| {
        warn!(error = %e, "cluster proxy: unusable answer");
        StatusCode::BAD_GATEWAY.into_response()
    })
}
