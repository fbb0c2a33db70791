//! Why an authorization check refused, or could not decide. Plain data with no HTTP
//! types: the ingest maps a [`Refusal`] to its `IngestError` (one status mapping there),
//! the origin to its `OriginError`. Texts never carry a token; what came from a client
//! (a key id) is quoted with `{:?}` and cut short.

use std::time::Duration;

/// Why a bearer token is not a JWT this server accepts (401, RFC 6750 §3.1
/// `invalid_token`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No bearer token at all.
    #[error("no bearer token")]
    Missing,
    /// Not three base64url parts with a JSON header and claims (RFC 7519 §7.2).
    #[error("not a well-formed JWT")]
    Malformed,
    /// Longer than any token this server reads.
    #[error("token longer than {0} bytes")]
    TooLong(usize),
    /// An algorithm this server does not take, or one without a configured key.
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key in the JWKS with this `kid` (RFC 7517 §4.5).
    #[error("no key with kid {0:?} in the JWKS")]
    UnknownKey(String),
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (RFC 7519 §4.1.4), leeway included.
    #[error("expired")]
    Expired,
    /// `nbf` is still ahead (RFC 7519 §4.1.5), leeway included.
    #[error("not valid yet")]
    NotYetValid,
    /// `aud` does not name this server (RFC 7519 §4.1.3).
    #[error("wrong audience")]
    Audience,
    /// `iss` is not the configured issuer (RFC 7519 §4.1.1).
    #[error("wrong issuer")]
    Issuer,
    /// A required claim is missing or has the wrong type.
    #[error("claim {0} missing or malformed")]
    Claim(&'static str),
}

/// Why a check could not decide (503 with `Retry-After`, unless `fail_open` allowed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The callback did not answer in time.
    #[error("the authorization callback did not answer within {0:?}")]
    CallbackTimeout(Duration),
    /// The callback could not be reached.
    #[error("the authorization callback could not be reached: {0}")]
    CallbackUnreachable(String),
    /// The callback answered with a status that is neither allow nor deny.
    #[error("the authorization callback answered HTTP {0}")]
    CallbackStatus(u16),
    /// The callback's 2xx JSON body is not an override this server understands.
    #[error("the authorization callback's answer is unusable: {0}")]
    CallbackBody(String),
    /// The JWKS could not be fetched, and no cached key fits the token.
    #[error("the JWKS could not be fetched: {0}")]
    Jwks(String),
}

/// Why a publish or play request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The bearer token is not a valid JWT here (401).
    #[error("invalid bearer token")]
    InvalidToken(#[source] TokenError),
    /// A valid token that does not grant this stream (403, RFC 6750 §3.1
    /// `insufficient_scope`).
    #[error("the token does not grant this stream")]
    NotGranted,
    /// The authorization callback answered 401.
    #[error("the authorization service refused: 401")]
    CallbackUnauthorized,
    /// The authorization callback answered 403 (or another 4xx).
    #[error("the authorization service refused: 403")]
    CallbackForbidden,
    /// No decision could be had (503).
    #[error("authorization is unavailable")]
    Unavailable(#[source] Unavailable),
}

/// Why the authorization could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The HTTP client could not be built.
    #[error("auth: http client")]
    Client(#[source] reqwest::Error),
    /// Webhooks need a running tokio runtime for their sender task.
    #[error("auth: webhooks need a tokio runtime")]
    NoRuntime,
}
