//! The JSON API and the health checks: `/api/streams` (this node's streams, and in a
//! cluster every node's), `/api/cluster`, `POST /api/drain`, `/readyz`, `/healthz`.

use std::sync::Arc;
use std::time::Instant;

use axum::Extension;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Json};

use super::proxy::Proxy;
use super::{AppState, OriginError};
use crate::hls::StreamSummary;
use crate::output::OutputSnapshot;

/// `GET /api/streams`: every stream this node has, with its outputs. In a cluster, also
/// every other node's (asked with `?local=1`, a second at most each), each stream with
/// the `node` it is on; a name on two nodes (a stream that moved) is shown once, live
/// first.
pub(super) async fn api_streams(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    peers: Option<Extension<Proxy>>,
) -> impl IntoResponse {
    /// A stream as `/api/streams` shows it: the store's view and its outputs.
    #[derive(serde::Serialize)]
    struct ApiStream {
        #[serde(flatten)]
        hls: StreamSummary,
        outputs: Vec<OutputSnapshot>,
        #[serde(skip_serializing_if = "Option::is_none")]
        node: Option<String>,
    }
    let me = state
        .signaling
        .ingest
        .cluster()
        .map(|c| c.node_id().to_string());
    let mut streams: Vec<serde_json::Value> = state
        .store
        .summaries(Instant::now())
        .into_iter()
        .map(|hls| ApiStream {
            outputs: state.outputs.snapshots(&hls.name),
            hls,
            node: me.clone(),
        })
        .filter_map(|s| serde_json::to_value(s).ok())
        .collect();
    let local_only = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "local=1" || kv == "local=true"));
    if let Some(Extension(peers)) = peers
        && !local_only
    {
        streams.extend(peers.streams_elsewhere().await);
        streams = once_per_name(streams);
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({ "streams": streams })),
    )
}

/// One entry per stream name: the live one if any, else the first.
fn once_per_name(streams: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = Vec::with_capacity(streams.len());
    for s in streams {
        let live = s["state"] == "live";
        match out.iter_mut().find(|o| o["name"] == s["name"]) {
            Some(o) if live && o["state"] != "live" => *o = s,
            Some(_) => {}
            None => out.push(s),
        }
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

/// `GET /api/cluster`: this node's id and the nodes registered in the cluster (404 when
/// the node is not in one, 503 when Redis does not answer).
pub(super) async fn api_cluster(State(state): State<AppState>) -> axum::response::Response {
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
pub(super) async fn api_drain(
    State(state): State<AppState>,
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
pub(super) async fn readyz(State(state): State<Arc<AppState>>) -> axum::response::Response {
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

pub(super) async fn healthz() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], "ok\n")
}
