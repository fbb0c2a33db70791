//! `GET /metrics`: the OpenMetrics text exposition of [`crate::metrics`], served with its
//! content type and never cached.
//!
//! The registry is built once per router; the per-stream gauges read the store and the
//! parked-request count at each scrape through [`Live`].

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{AppState, Parked};
use crate::hls::{HlsStore, StreamSummary};
use crate::metrics::{CONTENT_TYPE, Exposition, Live};

/// What the live gauges read: the store's streams and the origin's parked requests.
struct Origin {
    store: HlsStore,
    parked: Parked,
}

impl Live for Origin {
    fn streams(&self) -> Vec<StreamSummary> {
        self.store.summaries(Instant::now())
    }

    fn blocking_requests(&self) -> usize {
        self.parked.count()
    }
}

/// The registry behind `GET /metrics` for `state`.
pub fn exposition(state: &AppState) -> Arc<Exposition> {
    let live = Origin {
        store: state.store.clone(),
        parked: state.hls.parked.clone(),
    };
    Arc::new(Exposition::new(state.store.metrics(), live))
}

/// `GET /metrics`
pub async fn handler(State(exposition): State<Arc<Exposition>>) -> Response {
    let mut r = exposition.encode().into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
