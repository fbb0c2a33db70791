//! WHIP (RFC 9725) HTTP edge: `POST /whip/{stream}`, `PATCH`/`DELETE /whip/{stream}/{session}`.
//! Thin: checks transport-level rules, calls [`Ingest`], builds the response. The single
//! mapping from [`IngestError`] to HTTP lives here.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tracing::{error, info, warn};

use super::options::publish_options;
use super::{Candidate, Ingest, IngestError, PublishRequest, Signaling, SignalingState};

const SDP: &str = "application/sdp";
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            error!(error = %self, "request failed");
        } else {
            warn!(status = status.as_u16(), error = %self, "request refused");
        }
        let mut resp = (status, format!("{self}\n")).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match status {
            // RFC 6750 §3.
            StatusCode::UNAUTHORIZED => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"whipcast\", error=\"invalid_token\""),
                );
            }
            // RFC 9725 §4.5: under load, 503 with Retry-After.
            StatusCode::SERVICE_UNAVAILABLE => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            _ => {}
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
        .map_err(|_| IngestError::SdpTooLarge(limit))?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| IngestError::Sdp(super::SdpError::Malformed("not UTF-8".into())))
}

/// The absolute base URL for `Location` headers: RFC 9725 §4.2 allows a relative one, but
/// OBS resolves it wrongly (mediamtx #3177), so it is always absolute.
pub fn base_url(state: &SignalingState, headers: &HeaderMap, uri: &Uri) -> String {
    if !state.public_url.is_empty() {
        return state.public_url.trim_end_matches('/').to_string();
    }
    // HTTP/1.1 carries the host in `Host`; HTTP/2 in the `:authority` of the URI.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("127.0.0.1");
    let scheme = if state.tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// `Link` headers for the configured ICE servers (RFC 9725 §4.6).
pub fn link_headers(ice_servers: &[String]) -> Vec<HeaderValue> {
    ice_servers
        .iter()
        .filter_map(|url| HeaderValue::from_str(&format!("<{url}>; rel=\"ice-server\"")).ok())
        .collect()
}

/// The transport-level checks of a WHIP POST (cheapest first, so a wrong token costs no
/// body read), then the offer read within `server.max_sdp_bytes`.
async fn offer_request(
    ingest: &Ingest,
    stream: String,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<PublishRequest, IngestError> {
    ingest.ensure_open()?;
    let token = bearer(headers);
    ingest.authorize(&stream, token.as_deref())?;
    if !content_type_is(headers, SDP) {
        return Err(IngestError::BadContentType);
    }
    let offer = read_body(body, ingest.max_sdp_bytes()).await?;
    Ok(PublishRequest {
        stream,
        token,
        offer,
        signaling: Signaling::Whip,
        candidates: None,
        options: publish_options(uri.query())?,
    })
}

/// `POST /whip/{stream}`
pub async fn post(
    State(state): State<SignalingState>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, IngestError> {
    let ingest: &Ingest = &state.ingest;
    let req = match offer_request(ingest, stream, &uri, &headers, body).await {
        Ok(req) => req,
        Err(e) => {
            ingest.refused(&e);
            return Err(e);
        }
    };
    let published = ingest.publish(req).await?;
    let location = format!(
        "{}/whip/{}/{}",
        base_url(&state, &headers, &uri),
        published.stream,
        published.session_id
    );
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
    headers: HeaderMap,
) -> Result<StatusCode, IngestError> {
    check_session(&state.ingest, &stream, &session, &headers)?;
    state.ingest.unpublish(&session).await?;
    info!(%stream, "WHIP session deleted");
    Ok(StatusCode::OK)
}

/// `PATCH /whip/{stream}/{session}`: trickle ICE (RFC 8840 fragment). ICE restart is
/// refused with 422 (RFC 9725 §4.3.1) without touching the running session.
pub async fn patch(
    State(state): State<SignalingState>,
    Path((stream, session)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, IngestError> {
    check_session(&state.ingest, &stream, &session, &headers)?;
    if !content_type_is(&headers, SDPFRAG) {
        return Err(IngestError::BadPatchContentType);
    }
    let frag = read_body(body, state.ingest.max_sdp_bytes()).await?;
    let restart = headers
        .get(header::IF_MATCH)
        .is_some_and(|v| v.as_bytes() == b"*");
    let parsed = parse_sdpfrag(&frag)?;
    if restart {
        return Err(IngestError::IceRestartUnsupported);
    }
    for c in parsed {
        state.ingest.add_candidate(&session, c).await?;
    }
    // RFC 9725 §4.3.2: 204 without ETag.
    Ok(StatusCode::NO_CONTENT)
}

/// The longest `a=mid` a trickle fragment may carry.
const MAX_MID_BYTES: usize = 255;

/// Extracts the candidates of an `application/trickle-ice-sdpfrag` body.
pub fn parse_sdpfrag(frag: &str) -> Result<Vec<Candidate>, IngestError> {
    // The candidate keeps the section it was sent for: the `a=mid` of its `m=` line and
    // that line's position (RFC 8840 §4.4; with max-bundle, RFC 9725 §4.3.2, it is the
    // first section, but a client may say otherwise).
    let mut mid: Option<String> = None;
    let mut mline: Option<u16> = None;
    let mut out = Vec::new();
    for line in frag
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
    {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' {
            return Err(IngestError::Sdp(super::SdpError::Malformed(
                "trickle fragment line is not `<type>=<value>`".into(),
            )));
        }
        if line.starts_with("m=") {
            mline = Some(mline.map_or(0, |i| i.saturating_add(1)));
            mid = None;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            // Every candidate below carries a copy of the mid: an unbounded one would make
            // a body of n bytes cost O(n²) (64 KiB of mid and 5 000 candidates: 300 MB).
            // A mid is also sent as an RTCP SDES item (RFC 8843 defines the MID item), and
            // an SDES item is at most 255 bytes (RFC 3550 §6.5: a one-octet length).
            if m.len() > MAX_MID_BYTES {
                return Err(IngestError::Sdp(super::SdpError::Malformed(format!(
                    "trickle fragment mid longer than {MAX_MID_BYTES} bytes"
                ))));
            }
            mid = Some(m.to_string());
        } else if let Some(c) = line.strip_prefix("a=")
            && c.starts_with("candidate:")
        {
            out.push(Candidate {
                candidate: c.to_string(),
                sdp_mid: mid.clone(),
                sdp_mline_index: Some(mline.unwrap_or(0)),
            });
        }
    }
    Ok(out)
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
    fn sdpfrag_candidates() {
        let frag = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1387637174 1 udp 2122260223 127.0.0.1 61764 typ host generation 0\r\na=end-of-candidates\r\n";
        let c = parse_sdpfrag(frag).expect("parses");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(c[0].sdp_mline_index, Some(0));
        assert!(c[0].candidate.starts_with("candidate:1387637174"));
        assert!(parse_sdpfrag("garbage").is_err());
        // A candidate for the second section keeps its mid and index.
        let two = format!(
            "{frag}m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v\r\na=candidate:2 1 udp 1 127.0.0.1 9 typ host\r\n"
        );
        let c = parse_sdpfrag(&two).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[1].sdp_mid.as_deref(), c[1].sdp_mline_index),
            (Some("v"), Some(1))
        );
    }

    #[test]
    fn sdpfrag_mid_is_bounded() {
        // Found with tests/fuzz (sdpfrag): every candidate copies its section's mid, so a
        // long mid over many candidates made the heap quadratic in the body.
        let frag = |mid: &str| {
            format!(
                "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:{mid}\r\n{}",
                "a=candidate:\r\n".repeat(150)
            )
        };
        assert_eq!(
            parse_sdpfrag(&frag(&"m".repeat(255)))
                .expect("parses")
                .len(),
            150
        );
        let long = parse_sdpfrag(&frag(&"m".repeat(256))).expect_err("refused");
        assert_eq!(long.status(), 400);
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
