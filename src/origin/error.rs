//! Why the origin answers without content, and the one mapping of each reason to an HTTP
//! answer: status, a one-line body, and cache headers a CDN obeys.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An origin request that gets no content.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// No such stream, rendition, playlist or object (yet, or any more).
    #[error("not found")]
    NotFound,
    /// A malformed or out-of-range request, e.g. `_HLS_msn` too far ahead (HLS2 §6.2.5.2).
    #[error("{0}")]
    BadRequest(&'static str),
    /// `hls.max_blocking_requests` are parked already.
    #[error("too many blocking requests")]
    TooManyBlocking,
    /// A blocking request waited 3 × target duration (HLS2 §6.2.5.2: 503).
    #[error("not available in time")]
    BlockingTimedOut,
    /// The server is shutting down.
    #[error("shutting down")]
    ShuttingDown,
    /// Playing needs a valid bearer token (`on_play`; RFC 6750 §3.1 `invalid_token`).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Playing this stream is refused (a token without the grant, or the callback's 403).
    #[error("forbidden")]
    Forbidden,
    /// Play authorization could not be checked (callback or JWKS unavailable).
    #[error("authorization unavailable")]
    AuthUnavailable,
    /// Remuxing an MPEG-TS segment failed (logged where it happened).
    #[error("remux failed")]
    Remux,
}

impl IntoResponse for OriginError {
    fn into_response(self) -> Response {
        let code = match self {
            OriginError::NotFound => StatusCode::NOT_FOUND,
            OriginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            OriginError::Unauthorized => StatusCode::UNAUTHORIZED,
            OriginError::Forbidden => StatusCode::FORBIDDEN,
            OriginError::TooManyBlocking
            | OriginError::BlockingTimedOut
            | OriginError::ShuttingDown
            | OriginError::AuthUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            OriginError::Remux => StatusCode::INTERNAL_SERVER_ERROR,
        };
        // "Not yet" must not be cached: a CDN would black out a stream about to start.
        // The one exception: a timed-out blocking request is cacheable for a second, so a
        // shield collapsing identical blocking requests answers them all at once instead
        // of queueing them behind each other (measured with nginx, deploy/nginx/README.md).
        let cache = match self {
            OriginError::BlockingTimedOut => "public, max-age=1",
            _ => "no-store",
        };
        let mut r = (code, format!("{self}\n")).into_response();
        let h = r.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if code == StatusCode::SERVICE_UNAVAILABLE {
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // RFC 6750 §3.
        if code == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"whipcast\", error=\"invalid_token\""),
            );
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_status_and_cache_rule() {
        let r = OriginError::NotFound.into_response();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert!(!r.headers().contains_key(header::RETRY_AFTER));
        let r = OriginError::BlockingTimedOut.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=1");
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let r = OriginError::BadRequest("bad _HLS_msn").into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(OriginError::Remux.into_response().status(), 500);
        let r = OriginError::Unauthorized.into_response();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(OriginError::Forbidden.into_response().status(), 403);
        let r = OriginError::AuthUnavailable.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
