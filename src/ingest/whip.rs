//! WHIP (RFC 9725) HTTP edge: `POST /whip/{stream}`, `PATCH`/`DELETE /whip/{stream}/{session}`.
//! Thin: checks transport-level rules, calls [`Ingest`], builds the response. The single
//! mapping from [`IngestError`] to HTTP lives here.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tracing::{error, info, warn};

use super::options::publish_options;
use super::patch::{IfMatch, fragment_credentials, session_etag};
use super::sdpfrag::parse_sdpfrag;
use super::{Admission, Ingest, IngestError, PublishRequest, Signaling, SignalingState};
use crate::client::ClientId;

/// The client's address and port, as the server loop recorded it in the request (absent when the
/// router is driven without one, as in the router tests).
pub struct Client(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // The cause chain names what failed (a JWT's fault, the callback's timeout); no
        // part of it carries a token.
        let why = crate::error_chain(&self);
        let body_unread = matches!(
            self,
            IngestError::SdpTooLarge(_) | IngestError::BadBody(_) | IngestError::BodyTimedOut
        );
        if status.is_server_error() {
            error!(error = %why, "request failed");
        } else {
            warn!(status = status.as_u16(), error = %why, "request refused");
        }
        let mut resp = (status, format!("{self}\n")).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            // RFC 6750 §3.1: a valid token without the scope asked for.
            StatusCode::FORBIDDEN if matches!(self, IngestError::NotGranted) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"whipcast\", error=\"insufficient_scope\"",
                    ),
                );
            }
            // RFC 6750 §3.
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"whipcast\", error=\"invalid_token\""),
                );
            }
            // RFC 9725 §4.5: under load, 503 with Retry-After.
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
        }
        // A body not read to its end (over the limit; late, RFC 9110 §15.5.9) or badly
        // framed (RFC 9112 §6.3) leaves the connection unusable: say it closes (RFC 9112
        // §9.6), so that a client does not send its next request on it. HTTP/2 has no such
        // header; hyper leaves it out there.
        if body_unread {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

/// The bearer token of a request, if any (RFC 6750 §2.1).
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// Reads at most `limit` bytes of UTF-8 body.
async fn read_body(body: Body, limit: usize) -> Result<String, IngestError> {
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|e| body_error(&e, limit))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| IngestError::Sdp(super::SdpError::Malformed("not UTF-8".into())))
}

/// Why a body could not be read, by its cause: over the limit (413), not there within
/// `limits.body_timeout` (the `RequestBodyTimeoutLayer` in front of signalling: 408), or
/// broken off or badly framed, such as a chunk size that is not hex (RFC 9112 §7.1: 400).
fn body_error(e: &axum::Error, limit: usize) -> IngestError {
    let mut cause: &(dyn std::error::Error + 'static) = e;
    loop {
        if cause.is::<http_body_util::LengthLimitError>() {
            return IngestError::SdpTooLarge(limit);
        }
        if cause.is::<tower_http::timeout::TimeoutError>() {
            return IngestError::BodyTimedOut;
        }
        match cause.source() {
            Some(next) => cause = next,
            // The wrappers each repeat "error reading a body"; the root cause says what.
            None => return IngestError::BadBody(cause.to_string()),
        }
    }
}

/// The absolute base URL for `Location` headers: RFC 9725 §4.2 allows a relative one, but
/// OBS resolves it wrongly (mediamtx #3177), so it is always absolute. Without
/// `server.public_url` it is built from the request's host, which must then be a plain
/// `host[:port]` (RFC 9110 §7.2; RFC 9112 §3.2: a missing or invalid `Host` is a 400), so a
/// crafted `Host` cannot turn `Location` into a link elsewhere.
pub fn base_url(
    state: &SignalingState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<String, IngestError> {
    if !state.public_url.is_empty() {
        return Ok(state.public_url.trim_end_matches('/').to_string());
    }
    // HTTP/1.1 carries the host in `Host`; HTTP/2 in the `:authority` of the URI.
    let host = headers
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or_default())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or_default();
    if !is_host_and_port(host) {
        return Err(IngestError::BadHost);
    }
    let scheme = if state.tls { "https" } else { "http" };
    Ok(format!("{scheme}://{host}"))
}

/// `host[:port]` with a DNS name, an IPv4 address or a bracketed IPv6 address, and a
/// decimal port: nothing else may reach a `Location` header.
fn is_host_and_port(s: &str) -> bool {
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                return match after {
                    "" => true,
                    p => p
                        .strip_prefix(':')
                        .is_some_and(|p| p.len() <= 5 && p.parse::<u16>().is_ok()),
                };
            }
            None => return false,
        },
        None => match s.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (s, "0"),
        },
    };
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    name_ok && !port.is_empty() && port.len() <= 5 && port.parse::<u16>().is_ok()
}

/// `Link` headers for the configured ICE servers (RFC 9725 §4.6).
pub fn link_headers(ice_servers: &[String]) -> Vec<HeaderValue> {
    ice_servers
        .iter()
        .filter_map(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")).ok())
        .collect()
}

/// The transport-level checks of a WHIP POST (cheapest first, so a wrong token costs no
/// body read), the external checks (JWT, callback: [`Ingest::admit`]), then the offer
/// read within `server.max_sdp_bytes`.
async fn offer_request(
    ingest: &Ingest,
    stream: String,
    client: Option<SocketAddr>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<PublishRequest, IngestError> {
    ingest.ensure_open()?;
    ingest.attempt(client.map(|a| ClientId::of(a.ip())))?;
    let token = bearer(headers);
    ingest.authorize(&stream, token.as_deref())?;
    if !content_type_is(headers, SDP) {
        return Err(IngestError::BadContentType);
    }
    let who = Admission {
        client,
        signaling: Signaling::Whip,
        token: token.as_deref(),
        query: uri.query(),
    };
    let options = ingest
        .admit(&stream, &who, publish_options(uri.query())?)
        .await?;
    let offer = read_body(body, ingest.max_sdp_bytes()).await?;
    Ok(PublishRequest {
        stream,
        token,
        offer,
        signaling: Signaling::Whip,
        candidates: None,
        options,
        client: client.map(|a| ClientId::of(a.ip())),
    })
}

/// `POST /whip/{stream}`
pub async fn post(
    State(state): State<SignalingState>,
    Path(stream): Path<String>,
    Client(client): Client,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let ingest: &Ingest = &state.ingest;
    // In a cluster, a full or draining node sends the publisher to the node with the most
    // room, before reading the offer: 307 keeps the method and body (RFC 9110 §15.4.8),
    // and RFC 9725 §4.5 prefers it to 301/302. WHIP clients follow it (OBS through libcurl
    // with the token kept, browsers' fetch).
    // Only a valid name is sent on (the others get their 400 here).
    if let Some(key) = crate::StreamKey::parse(&stream)
        && let Some(node) = ingest.elsewhere().await
    {
        let target = match uri.query() {
            Some(q) => format!("{node}/whip/{key}?{q}"),
            None => format!("{node}/whip/{key}"),
        };
        info!(stream = %key, %target, "publish redirected to another node");
        ingest.redirected(Signaling::Whip);
        return Ok(temporary_redirect(&target));
    }
    // Before anything is published: a request whose Location cannot be built is refused.
    let checked = match offer_request(ingest, stream, client, &uri, &headers, body).await {
        Ok(req) => base_url(&state, &headers, &uri).map(|base| (req, base)),
        Err(e) => Err(e),
    };
    let (req, base) = match checked {
        Ok(c) => c,
        Err(e) => {
            ingest.refused(&e);
            return Err(e);
        }
    };
    let published = ingest.publish(req).await?;
    let location = format!("{base}/whip/{}/{}", published.stream, published.session_id);
    info!(stream = %published.stream, %location, "WHIP session created");
    let mut resp = (StatusCode::CREATED, published.answer).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SDP));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&published.etag) {
        h.insert(header::ETAG, v);
    }
    for link in link_headers(ingest.ice_servers()) {
        h.append(header::LINK, link);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `OPTIONS /whip/{stream}` (non-preflight; preflights are answered by the CORS layer).
pub async fn options(State(state): State<SignalingState>) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    h.insert("accept-post", HeaderValue::from_static(SDP));
    for link in link_headers(state.ingest.ice_servers()) {
        h.append(header::LINK, link);
    }
    resp
}

/// `GET` on the endpoint or a session: RFC 9725 §4.1 asks for a 2XX without content.
pub async fn get_empty() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `307 Temporary Redirect` to `target` (RFC 9110 §15.4.8: the method and body are kept).
fn temporary_redirect(target: &str) -> Response {
    let mut resp = StatusCode::TEMPORARY_REDIRECT.into_response();
    if let Ok(v) = HeaderValue::from_str(target) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// In a cluster, a PATCH or DELETE for a session this node does not have, on a stream
/// another node owns, goes to that node (the session URL a client was given is the owner's,
/// but a load balancer in front may still send the request elsewhere).
async fn session_elsewhere(
    ingest: &Ingest,
    stream: &str,
    session: &str,
    uri: &Uri,
) -> Option<Response> {
    if ingest.session_stream(session).is_some() {
        return None;
    }
    let key = crate::StreamKey::parse(stream)?;
    let owner = ingest.owner_elsewhere(&key).await?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    info!(stream = %key, %owner, "session request redirected to the stream's owner");
    Some(temporary_redirect(&format!("{owner}{path}")))
}

fn check_session(
    ingest: &Ingest,
    stream: &str,
    session: &str,
    headers: &HeaderMap,
) -> Result<(), IngestError> {
    match ingest.session_stream(session) {
        Some(s) if s == stream => {}
        _ => return Err(IngestError::SessionNotFound),
    }
    // RFC 9725 §4.7: sessions are authenticated like the endpoint.
    ingest.authorize(stream, bearer(headers).as_deref())?;
    Ok(())
}

/// `DELETE /whip/{stream}/{session}`: ends the broadcast; 200 as OBS expects.
pub async fn delete(
    State(state): State<SignalingState>,
    Path((stream, session)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, IngestError> {
    if let Some(r) = session_elsewhere(&state.ingest, &stream, &session, &uri).await {
        return Ok(r);
    }
    check_session(&state.ingest, &stream, &session, &headers)?;
    state.ingest.unpublish(&session).await?;
    info!(%stream, "WHIP session deleted");
    Ok(StatusCode::OK.into_response())
}

/// `PATCH /whip/{stream}/{session}`: trickle ICE (RFC 8840 fragment). RFC 9725 §4.3.1:
/// an `If-Match` other than the session's ETag (or `*`) gets 412; an ICE restart
/// (`If-Match: *`, or credentials other than the offer's) is refused with 422 without
/// touching the running session; candidates beyond `ice.max_remote_candidates` get 400.
pub async fn patch(
    State(state): State<SignalingState>,
    Path((stream, session)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    if let Some(r) = session_elsewhere(&state.ingest, &stream, &session, &uri).await {
        return Ok(r);
    }
    check_session(&state.ingest, &stream, &session, &headers)?;
    if !content_type_is(&headers, SDPFRAG) {
        return Err(IngestError::BadPatchContentType);
    }
    // RFC 9110 §13.2.2: the precondition before the body is used.
    let if_match = IfMatch::from_headers(&headers);
    if !if_match.allows(&session_etag(&session)) {
        return Err(IngestError::PreconditionFailed);
    }
    let frag = read_body(body, state.ingest.max_sdp_bytes()).await?;
    let parsed = parse_sdpfrag(&frag)?;
    let (ufrag, pwd) = fragment_credentials(&frag);
    let restart = if_match == IfMatch::Any
        || state
            .ingest
            .remote_ice(&session)
            .is_some_and(|ice| ice.is_restart(ufrag, pwd));
    if restart {
        return Err(IngestError::IceRestartUnsupported);
    }
    for c in parsed {
        state.ingest.add_candidate(&session, c).await?;
    }
    // RFC 9725 §4.3.2: 204 without ETag.
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  x "),
        );
        assert_eq!(bearer(&h).as_deref(), Some("x"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }

    #[test]
    fn hosts_that_may_reach_location() {
        for ok in [
            "127.0.0.1:8080",
            "live.example.com",
            "live.example.com:443",
            "[::1]:8080",
            "[2001:db8::1]",
        ] {
            assert!(is_host_and_port(ok), "{ok}");
        }
        for bad in [
            "",
            "evil.example.com:443/phish?x=",
            "user@host",
            "host:port",
            "host:",
            "host:99999",
            "[::1",
            "[nope]:1",
            "a b",
            "host\\x",
        ] {
            assert!(!is_host_and_port(bad), "{bad}");
        }
    }

    #[test]
    fn links() {
        let l = link_headers(&["stun:stun.example.net".into()]);
        assert_eq!(l[0], "<stun:stun.example.net>; rel=\"ice-server\"");
    }

    #[test]
    fn content_type_ignores_params_and_case() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/SDP; charset=utf-8"),
        );
        assert!(content_type_is(&h, SDP));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!content_type_is(&h, SDP));
    }
}
