//! [`IngestError`]: why a publish or session request failed, and the one mapping of each
//! cause to an HTTP status, which the WHIP responses and the WebSocket `error` messages
//! share. Plain data: no I/O, and no HTTP types (the edges build responses from
//! [`IngestError::status`]).

use super::{PeerError, SdpError};
use crate::auth::{Refusal, TokenError, Unavailable};
use crate::cluster::ClusterError;

/// Why a publish request (or a session request) failed. One `IntoResponse` in
/// [`whip`](super::whip) maps each to an HTTP status; [`ws`](super::ws) maps them to
/// error messages.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Stream names are `[A-Za-z0-9_-]{1,64}` (400).
    #[error("invalid stream name: use 1-64 letters, digits, '-' or '_'")]
    BadStreamName,
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No `server.public_url`, and the request's `Host` is missing or not `host[:port]`
    /// (400, RFC 9112 §3.2).
    #[error("missing or invalid Host header")]
    BadHost,
    /// The bearer token is not a JWT this server accepts (401, RFC 6750 §3.1
    /// `invalid_token`).
    #[error("invalid bearer token")]
    InvalidToken(#[source] TokenError),
    /// A valid token that does not grant this stream (403, RFC 6750 §3.1
    /// `insufficient_scope`).
    #[error("the token does not grant publishing this stream")]
    NotGranted,
    /// The operator's authorization callback answered 401 (401).
    #[error("refused by the authorization service")]
    CallbackUnauthorized,
    /// The operator's authorization callback answered 403 or another 4xx (403).
    #[error("forbidden by the authorization service")]
    CallbackForbidden,
    /// The authorization callback or the JWKS gave no answer and `auth.callback.fail_open`
    /// is off (503 with `Retry-After`).
    #[error("authorization is unavailable; try again later")]
    AuthUnavailable(#[source] Unavailable),
    /// `Content-Type` is not `application/sdp` (415).
    #[error("content type must be application/sdp")]
    BadContentType,
    /// Offer larger than `server.max_sdp_bytes` (413).
    #[error("SDP offer too large (limit {0} bytes)")]
    SdpTooLarge(usize),
    /// The request body broke off or is not valid HTTP framing, e.g. a bad chunk size
    /// (RFC 9112 §7.1) (400). Carries the cause's text.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// The request body did not arrive within `limits.body_timeout` (408, RFC 9110
    /// §15.5.9).
    #[error("the request body did not arrive in time (limits.body_timeout)")]
    BodyTimedOut,
    /// The body is not valid UTF-8 SDP (400) or cannot be used (422); see [`SdpError`].
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// The WebRTC stack refused the offer (400).
    #[error("offer rejected: {0}")]
    OfferRejected(String),
    /// Another publisher is live on this name (409).
    #[error("stream {0} is already being published")]
    StreamInUse(String),
    /// `server.max_streams` reached (503).
    #[error("server is at its stream limit; try again later")]
    TooManyStreams,
    /// `limits.max_pending_sessions` sessions are connecting (503).
    #[error("too many sessions are connecting; try again shortly")]
    TooManyPending,
    /// This client has `limits.max_pending_sessions_per_client` sessions connecting (429).
    #[error("too many of your sessions are still connecting")]
    ClientPendingLimit,
    /// This client exceeded `limits.publish_per_minute` (429).
    #[error("too many publish attempts; slow down")]
    RateLimited,
    /// This node is in a cluster and its Redis is unavailable, and
    /// `cluster.when_redis_down` is `refuse` (503).
    #[error("the cluster is unavailable; try again later")]
    ClusterUnavailable(String),
    /// The server is shutting down (503).
    #[error("server is shutting down")]
    ShuttingDown,
    /// No such session (404).
    #[error("unknown session")]
    SessionNotFound,
    /// A trickled candidate was refused (400).
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// `Content-Type` of a PATCH is not `application/trickle-ice-sdpfrag` (415).
    #[error("content type must be application/trickle-ice-sdpfrag")]
    BadPatchContentType,
    /// ICE restart is not supported (RFC 9725 §4.3.1: 422 for the unsupported kind).
    #[error("ICE restart is not supported; re-publish instead")]
    IceRestartUnsupported,
    /// A PATCH whose `If-Match` names another entity tag than the session's (412, RFC 9725
    /// §4.3.1, RFC 9110 §13.1.1).
    #[error("If-Match does not match the session's ETag")]
    PreconditionFailed,
    /// A trickled candidate beyond `ice.max_remote_candidates` (400).
    #[error(
        "too many ICE candidates: at most {0} remote candidates per session (ice.max_remote_candidates)"
    )]
    TooManyCandidates(usize),
    /// The broadcast task is gone or not answering (503).
    #[error("session is busy or ending")]
    Busy,
    /// The broadcast did not confirm its end (ENDLIST) within its stop budget (503): it
    /// is still ending, and will.
    #[error("the broadcast is still ending: its playlists may not have EXT-X-ENDLIST yet")]
    StopTimedOut,
    /// A local failure (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// `?record=` with a value that is neither yes nor no (400).
    #[error("record must be 1, true, yes, 0, false or no (got {0:?})")]
    BadRecordFlag(String),
    /// `?height=` that is not a number of lines in 90..=4320 (400).
    #[error("height must be a number of lines from 90 to 4320 (got {0:?})")]
    BadHeight(String),
    /// `?record=1` while `record.allow_request` is off (403): refused rather than
    /// published without the recording the publisher asked for.
    #[error("recording on request is off on this server (record.allow_request)")]
    RecordingNotAllowed,
}

impl IngestError {
    /// The HTTP status for this error: the one mapping, used by WHIP responses and by
    /// WebSocket `error` messages alike.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::BadStreamName
            | IngestError::BadHost
            | IngestError::BadRecordFlag(_)
            | IngestError::BadHeight(_)
            | IngestError::OfferRejected(_)
            | IngestError::BadCandidate(_)
            | IngestError::TooManyCandidates(_)
            | IngestError::BadBody(_)
            | IngestError::Sdp(SdpError::Malformed(_)) => 400,
            IngestError::Unauthorized
            | IngestError::InvalidToken(_)
            | IngestError::CallbackUnauthorized => 401,
            IngestError::RecordingNotAllowed
            | IngestError::NotGranted
            | IngestError::CallbackForbidden => 403,
            IngestError::SessionNotFound => 404,
            IngestError::BodyTimedOut => 408,
            IngestError::StreamInUse(_) => 409,
            IngestError::PreconditionFailed => 412,
            IngestError::SdpTooLarge(_) => 413,
            IngestError::BadContentType | IngestError::BadPatchContentType => 415,
            // RFC 9725 §4.4.2 / §4.4.3: unsupported tracks reject the whole offer with 422;
            // §4.3.1: 422 for the unsupported kind of PATCH.
            IngestError::Sdp(_) | IngestError::IceRestartUnsupported => 422,
            IngestError::ClientPendingLimit | IngestError::RateLimited => 429,
            IngestError::TooManyStreams
            | IngestError::TooManyPending
            | IngestError::ShuttingDown
            | IngestError::Busy
            | IngestError::StopTimedOut
            | IngestError::AuthUnavailable(_)
            | IngestError::ClusterUnavailable(_) => 503,
            IngestError::Internal(_) => 500,
        }
    }
}

impl From<PeerError> for IngestError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::BadOffer(m) => IngestError::OfferRejected(m),
            PeerError::BadCandidate(m) => IngestError::BadCandidate(m),
            PeerError::Setup(m) => IngestError::Internal(m),
            PeerError::TooManyCandidates(limit) => IngestError::TooManyCandidates(limit),
        }
    }
}

impl From<ClusterError> for IngestError {
    fn from(e: ClusterError) -> Self {
        match e {
            // Another node has the name: the same answer as a second publisher here.
            ClusterError::Taken(_) => IngestError::StreamInUse(e.to_string()),
            ClusterError::Unavailable(why) => IngestError::ClusterUnavailable(why),
        }
    }
}

impl From<Refusal> for IngestError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::InvalidToken(e) => IngestError::InvalidToken(e),
            Refusal::NotGranted => IngestError::NotGranted,
            Refusal::CallbackUnauthorized => IngestError::CallbackUnauthorized,
            Refusal::CallbackForbidden => IngestError::CallbackForbidden,
            Refusal::Unavailable(u) => IngestError::AuthUnavailable(u),
        }
    }
}
