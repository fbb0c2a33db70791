//! The HTTP surface: one router for ingest (WHIP, WebSocket), the HLS origin, the JSON API
//! and the web pages. Built by [`router`] from an [`AppState`], so tests can serve it on
//! any listener.

mod error;
mod hls;
mod metrics;
mod play_auth;
mod proxy;
mod respond;
pub mod serve;
#[cfg(test)]
mod tests;
pub mod tls;

pub use error::OriginError;
pub use hls::{Directives, HlsOrigin, Parked, directives};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::hls::{HlsStore, StreamSummary};
use crate::ingest::SignalingState;
use crate::output::{OutputSnapshot, Outputs};

/// Shared state of every handler; cheap to clone (axum clones it for every request, so
/// every field is a handle: no field's clone allocates).
#[derive(Clone)]
pub struct AppState {
    /// The signalling endpoints' state (WHIP, WebSocket).
    pub signaling: SignalingState,
    /// Segments and playlists.
    pub store: HlsStore,
    /// Directory of the web pages, if any.
    pub player_dir: Option<Arc<Path>>,
    /// The HLS handlers' own state (parked requests, header values).
    pub hls: HlsOrigin,
    /// Recording and object-storage outputs (their status in `/api/streams`).
    pub outputs: Outputs,
    /// `limits.body_timeout`: a request body must arrive within it.
    pub body_timeout: Duration,
}

/// CORS for browsers: browser WHIP clients must read `Location`, `ETag` and `Link`
/// (RFC 9725 §4.2, §4.3.1, §4.6), so they are exposed; hls.js reads `Age` (its live-edge
/// estimate behind a CDN) and sends `Range`, so that header is allowed.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_NONE_MATCH,
            header::RANGE,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::AGE,
            header::CONTENT_RANGE,
            HeaderName::from_static("accept-post"),
        ])
        .max_age(Duration::from_secs(3600))
}

/// Builds the whole router.
pub fn router(state: AppState) -> Router {
    // Signalling: rare requests, traced, with Accept-Post on every OPTIONS (the middleware
    // sits outside CORS so preflights get it too).
    let api = Router::new()
        .route("/api/streams", get(api_streams))
        .route("/api/cluster", get(api_cluster))
        .route("/api/drain", axum::routing::post(api_drain))
        .route(
            "/metrics",
            get(metrics::handler).with_state(metrics::exposition(&state)),
        )
        .with_state(state.clone());
    let signalling = crate::ingest::router(state.signaling.clone())
        .merge(api)
        // A body that trickles in (an SDP offer sent a byte a second) ends with 408.
        .layer(RequestBodyTimeoutLayer::new(state.body_timeout))
        .layer(cors())
        .layer(axum::middleware::from_fn(accept_post))
        .layer(TraceLayer::new_for_http());
    // HLS: the hot path (a CDN's misses, every player's playlist reloads). CORS only: a
    // per-request span and a middleware future cost ~10 % of the playlist throughput
    // (BENCHMARKS.md "Origin throughput and parked requests").
    let mut hls = Router::new()
        .route("/hls/{stream}/master.m3u8", get(hls::master))
        .route("/hls/{stream}/master-ts.m3u8", get(hls::ts_master))
        .route("/hls/{stream}/{rendition}/{file}", get(hls::rendition_file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    // Play authorization only when configured: the middleware costs the hot path.
    let auth = state.signaling.ingest.authorizer();
    if auth.checks_play() {
        hls = hls.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            play_auth::guard,
        ));
    }
    // In a cluster, a stream another node owns is served through it (outside the play
    // checks: the owner makes them).
    if let Some(cluster) = state.signaling.ingest.cluster()
        && let Some(p) = proxy::Proxy::new(cluster.clone(), state.store.clone())
    {
        hls = hls.layer(axum::middleware::from_fn_with_state(p, proxy::guard));
    }
    let hls = hls.layer(cors());
    let player_dir = state.player_dir.clone();
    let mut app = signalling.merge(hls.with_state(state));
    if let Some(dir) = &player_dir {
        app = app.fallback_service(
            tower::ServiceBuilder::new()
                .layer(cors())
                .layer(axum::middleware::from_fn(no_empty_segments))
                .service(ServeDir::new(dir).append_index_html_on_directories(true)),
        );
    }
    app
}

/// A page path with an empty segment (`//watch`) is a 404: the file server would redirect
/// a directory to its path plus `/`, and `Location: //watch/` is a network-path reference
/// (RFC 3986 §4.2) to another host — an open redirect.
async fn no_empty_segments(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if req.uri().path().contains("//") {
        return (
            axum::http::StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            "not found\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// RFC 9725 §4.2: OPTIONS on a WHIP endpoint SHOULD answer `Accept-Post: application/sdp`,
/// CORS preflights included (the CORS layer answers those before any route runs).
async fn accept_post(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let whip_options = req.method() == Method::OPTIONS && req.uri().path().starts_with("/whip/");
    let mut resp = next.run(req).await;
    if whip_options {
        resp.headers_mut().insert(
            HeaderName::from_static("accept-post"),
            axum::http::HeaderValue::from_static("application/sdp"),
        );
    }
    resp
}

async fn api_streams(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> impl IntoResponse {
    /// A stream as `/api/streams` shows it: the store's view and its outputs.
    #[derive(serde::Serialize)]
    struct ApiStream {
        #[serde(flatten)]
        hls: StreamSummary,
        outputs: Vec<OutputSnapshot>,
    }
    let streams: Vec<ApiStream> = state
        .store
        .summaries(Instant::now())
        .into_iter()
        .map(|hls| ApiStream {
            outputs: state.outputs.snapshots(&hls.name),
            hls,
        })
        .collect();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "streams": streams })),
    )
}

/// `GET /api/cluster`: this node's id and the nodes registered in the cluster (404 when
/// the node is not in one, 503 when Redis does not answer).
async fn api_cluster(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    let Some(cluster) = state.signaling.ingest.cluster() else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            no_store,
            Json(serde_json::json!({ "error": "this node is not in a cluster ([cluster])" })),
        )
            .into_response();
    };
    match cluster.nodes().await {
        Ok(nodes) => (
            no_store,
            Json(serde_json::json!({ "node": cluster.node_id(), "nodes": nodes })),
        )
            .into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            no_store,
            Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// `POST /api/drain` (cluster, `cluster.admin_token` as a bearer token): the node stops
/// taking publishes, keeps its live streams until they end (or `cluster.drain_timeout`),
/// then exits. 202 once asked.
async fn api_drain(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::http::StatusCode;
    let ingest = &state.signaling.ingest;
    let Some(required) = ingest.cluster().and_then(|c| c.admin_token()) else {
        return OriginError::NotFound.into_response();
    };
    let given = crate::ingest::whip::bearer(&headers);
    if !given.is_some_and(|t| crate::ingest::tokens_match(&t, required)) {
        return OriginError::Unauthorized.into_response();
    }
    ingest.drain();
    (
        StatusCode::ACCEPTED,
        [(header::CACHE_CONTROL, "no-store")],
        "draining\n",
    )
        .into_response()
}

/// `GET /readyz`: 200 while the node takes publishes, 503 while it drains (a load
/// balancer's or Kubernetes' readiness check; `/healthz` stays 200: the node is alive).
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    if state.signaling.ingest.is_draining() {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            [(header::CACHE_CONTROL, "no-store")],
            "draining\n",
        )
            .into_response()
    } else {
        ([(header::CACHE_CONTROL, "no-store")], "ready\n").into_response()
    }
}

async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n")
}
