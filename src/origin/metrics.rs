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
use crate::keyframes::Mode;
use crate::metrics::{CONTENT_TYPE, Exposition, Live, RenditionFigures, StreamFigures};

/// What the live gauges read: the store's streams and the origin's parked requests.
struct Origin {
    store: HlsStore,
    parked: Parked,
}

impl Live for Origin {
    fn streams(&self) -> Vec<StreamFigures> {
        self.store
            .summaries(Instant::now())
            .iter()
            .map(figures)
            .collect()
    }

    fn blocking_requests(&self) -> usize {
        self.parked.count()
    }
}

/// The gauges' view of a stream: the same numbers as `/api/streams`.
fn figures(s: &StreamSummary) -> StreamFigures {
    let k = s.keyframes.as_ref();
    StreamFigures {
        name: s.name.clone(),
        live: s.state == "live",
        uptime_s: s.uptime_s,
        memory_bytes: s.memory_bytes as u64,
        first_playable_s: s.first_playable_s,
        gop_s: k.and_then(|k| k.observed_gop_s),
        steering: k.map(|k| k.mode == Mode::Steering),
        keyframe_requests: k.map(|k| u64::from(k.requests)),
        lag_s: (s.lag_ms.samples > 0).then(|| (s.lag_ms.p50 / 1000.0, s.lag_ms.p99 / 1000.0)),
        renditions: s
            .renditions
            .iter()
            .map(|r| RenditionFigures {
                name: r.name.clone(),
                segments: r.segments,
                average_bps: r.average_bps,
            })
            .collect(),
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
