//! The HTTP surface: one router for ingest (WHIP, WebSocket), the HLS origin, the JSON API
//! and the web pages. Built by [`router`] from an [`AppState`], so tests can serve it on
//! any listener.

mod api;
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
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Method, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::hls::HlsStore;
use crate::ingest::SignalingState;
use crate::output::Outputs;

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
    // In a cluster: the proxy to the other nodes (HLS requests, their streams in the API).
    let peers = state
        .signaling
        .ingest
        .cluster()
        .and_then(|c| proxy::Proxy::new(c.clone(), state.store.clone()));
    let mut api = Router::new()
        .route("/api/streams", get(api::api_streams))
        .route("/api/cluster", get(api::api_cluster))
        .route("/api/drain", axum::routing::post(api::api_drain))
        .route(
            "/metrics",
            get(metrics::handler).with_state(metrics::exposition(&state)),
        )
        .with_state(state.clone());
    if let Some(p) = &peers {
        api = api.layer(axum::Extension(p.clone()));
    }
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
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz));
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
    if let Some(p) = peers {
        hls = hls.layer(axum::middleware::from_fn_with_state(p, proxy::guard));
    }
    let hls = hls.layer(cors());
    let player_dir = state.player_dir.clone();
    // The HLS handlers' state behind one Arc: axum clones the state for every request, and
    // cloning AppState field by field was the hottest whipcast function serving playlists
    // (1.6 % of the process in `perf`, BENCHMARKS.md "Origin throughput").
    let mut app = signalling.merge(hls.with_state(Arc::new(state)));
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
