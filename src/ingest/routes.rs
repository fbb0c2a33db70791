//! The signalling endpoints as a router over the ingest's own state: WHIP (RFC 9725) and
//! the WebSocket channel. The origin merges it with its own routes and puts the shared
//! layers (CORS, `Accept-Post`, tracing) around both; nothing here knows the origin.

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post};

use super::{Ingest, whip, ws};

/// What the signalling handlers need; cheap to clone (every field is a handle).
#[derive(Clone)]
pub struct SignalingState {
    /// Publishing.
    pub ingest: Ingest,
    /// `server.public_url` (may be empty): the base of `Location`.
    pub public_url: Arc<str>,
    /// Whether the listener speaks TLS (the scheme of `Location` without a public URL).
    pub tls: bool,
}

/// `/whip/{stream}`, `/whip/{stream}/{session}` and `/ws/{stream}`.
pub fn router(state: SignalingState) -> Router {
    Router::new()
        .route(
            "/whip/{stream}",
            post(whip::post).options(whip::options).get(whip::get_empty),
        )
        .route(
            "/whip/{stream}/{session}",
            patch(whip::patch)
                .delete(whip::delete)
                .get(whip::get_empty)
                .options(whip::options),
        )
        .route("/ws/{stream}", get(ws::upgrade))
        .with_state(state)
}
