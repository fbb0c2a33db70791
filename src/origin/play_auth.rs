//! Play authorization: a middleware on the HLS routes, added only when `[auth.jwt]` or
//! `[auth.callback]` has `on_play`. Playlist requests (`*.m3u8`) are checked through
//! [`Authorizer::admit_play`] (the callback's decisions cached there); init sections, parts
//! and segments are not: their names carry the broadcast epoch, they are what a CDN
//! caches, and without a playlist a player cannot find them. The token is the bearer
//! header (RFC 6750 §2.1) or `?token=` (§2.3: players rarely set headers).

use std::net::SocketAddr;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::OriginError;
use crate::auth::{self, Authorizer, Refusal};

/// The middleware: refuses a playlist request the checks refuse.
pub async fn guard(State(auth): State<Authorizer>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let Some(stream) = path
        .strip_prefix("/hls/")
        .and_then(|rest| rest.split('/').next())
        .filter(|_| path.ends_with(".m3u8"))
    else {
        return next.run(req).await;
    };
    // Not a stream name: nothing to authorize, and nothing will be found.
    if !crate::StreamKey::is_valid(stream) {
        return OriginError::NotFound.into_response();
    }
    let query = req.uri().query();
    let token = crate::ingest::whip::bearer(req.headers()).or_else(|| {
        url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let decision = auth
        .admit_play(&auth::Request {
            stream,
            client,
            signaling: None,
            token: token.as_deref(),
            query,
        })
        .await;
    match decision {
        Ok(()) => next.run(req).await,
        Err(Refusal::InvalidToken(_) | Refusal::CallbackUnauthorized) => {
            OriginError::Unauthorized.into_response()
        }
        Err(Refusal::NotGranted | Refusal::CallbackForbidden) => {
            OriginError::Forbidden.into_response()
        }
        Err(Refusal::Unavailable(_)) => OriginError::AuthUnavailable.into_response(),
    }
}
