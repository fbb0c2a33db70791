//! The HTTP rules of an HLS response, apart from what it carries: gzip negotiation, entity
//! tags and `304` (RFC 9110 §13), byte ranges and `206` / `416` (RFC 9110 §14), the
//! content types (AUTH 10.4) and cache lifetimes (HLS2 App. B.1).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::hls::Doc;

pub(super) const M3U8: &str = "application/vnd.apple.mpegurl";
/// AUTH 10.4: `.m4s` segments are `video/iso.segment`; init sections `video/mp4`.
pub(super) const SEGMENT: &str = "video/iso.segment";
pub(super) const INIT: &str = "video/mp4";
/// MPEG-TS segments (AUTH 10.4).
pub(super) const TS: &str = "video/mp2t";
pub(super) const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn http_date(t: std::time::SystemTime) -> HeaderValue {
    HeaderValue::from_str(&httpdate::fmt_http_date(t))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// A header value from bytes the store made (entity tags, dates); `None` if not valid.
fn shared_value(b: &Bytes) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(b.clone()).ok()
}

fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING).iter().any(|v| {
        v.to_str().unwrap_or("").split(',').any(|e| {
            let mut parts = e.trim().split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
    })
}

/// Whether `If-None-Match` matches `etag`, so the answer is 304 (RFC 9110 §13.1.2: weak
/// comparison, `*` matches any current representation).
fn none_match(req: &HeaderMap, etag: &[u8]) -> bool {
    use headers::HeaderMapExt as _;
    let Some(condition) = req.typed_get::<headers::IfNoneMatch>() else {
        return false;
    };
    std::str::from_utf8(etag)
        .ok()
        .and_then(|t| t.parse::<headers::ETag>().ok())
        .is_some_and(|tag| !condition.precondition_passes(&tag))
}

/// A playlist response: gzip when accepted (AUTH 10.1, HLS2 App. B.1; never for media),
/// strong `ETag` and `Last-Modified`, `304` on a matching `If-None-Match` (RFC 9110 §13).
pub(super) fn playlist_response(doc: &Doc, cache: HeaderValue, req: &HeaderMap) -> Response {
    let gzip = accepts_gzip(req) && !doc.gzip.is_empty();
    let etag = if gzip { &doc.gzip_etag } else { &doc.etag };
    let mut r = if none_match(req, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else if gzip {
        let mut r = (StatusCode::OK, doc.gzip.clone()).into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        (StatusCode::OK, doc.body.clone()).into_response()
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(M3U8));
    h.insert(header::CACHE_CONTROL, cache);
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if let Some(v) = shared_value(etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(v) = shared_value(&doc.last_modified) {
        h.insert(header::LAST_MODIFIED, v);
    }
    r
}

/// What a `Range` header asks of a body of a given length.
#[derive(Debug, PartialEq)]
enum RangeAnswer {
    /// Serve it whole (200): no header, an unknown unit, or several ranges (which we do
    /// not combine into a multipart body; RFC 9110 §14.2 lets a server ignore them).
    Whole,
    /// This inclusive byte range (206).
    Part(u64, u64),
    /// Nothing of it can be served (416), or the header is invalid, which RFC 9110 §14.2
    /// lets a server reject.
    Unsatisfiable,
}

/// Parses a `Range` header against `len` (RFC 9110 §14.1.2, with `http-range-header`).
fn byte_range(req: &HeaderMap, len: u64) -> RangeAnswer {
    use http_range_header::{RangeInvalid, RangeUnsatisfiableError};
    let Some(v) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAnswer::Whole;
    };
    match http_range_header::parse_range_header(v.trim()).and_then(|p| p.validate(len)) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => RangeAnswer::Part(*one.start(), *one.end()),
            _ => RangeAnswer::Whole,
        },
        // A unit other than bytes MUST be ignored (RFC 9110 §14.2).
        Err(RangeUnsatisfiableError::Invalid(RangeInvalid::DoesNotStartWithToken)) => {
            RangeAnswer::Whole
        }
        Err(_) => RangeAnswer::Unsatisfiable,
    }
}

/// A media response (init, segment, part): immutable, byte ranges (`206`), `Expires` when
/// the segment will leave the window (HLS2 §6.2.2).
pub(super) fn media_response(
    body: Bytes,
    content_type: &'static str,
    req: &HeaderMap,
    ttl: Option<Duration>,
) -> Response {
    let len = body.len() as u64;
    let mut r = match byte_range(req, len) {
        RangeAnswer::Whole => (StatusCode::OK, body).into_response(),
        RangeAnswer::Part(start, end) => {
            let mut r = (
                StatusCode::PARTIAL_CONTENT,
                body.slice(start as usize..=end as usize),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        RangeAnswer::Unsatisfiable => {
            let mut r = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(ttl) = ttl {
        h.insert(
            header::EXPIRES,
            http_date(std::time::SystemTime::now() + ttl),
        );
    }
    r
}

/// `Cache-Control: public, max-age={secs}`.
pub(super) fn max_age(secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={secs}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(header::HeaderName, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(k.clone(), HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn ranges() {
        let r = |v: &'static str| byte_range(&h(&[(header::RANGE, v)]), 100);
        use RangeAnswer::{Part, Unsatisfiable, Whole};
        assert_eq!(byte_range(&HeaderMap::new(), 100), Whole);
        assert_eq!(r("bytes=0-9"), Part(0, 9));
        assert_eq!(r("bytes=90-"), Part(90, 99));
        assert_eq!(r("bytes=-10"), Part(90, 99));
        // A suffix longer than the body selects all of it (RFC 9110 §14.1.2).
        assert_eq!(r("bytes=-500"), Part(0, 99));
        // LL-HLS byte-range preload hints ask up to 2^53 - 1.
        assert_eq!(r("bytes=50-9007199254740991"), Part(50, 99));
        assert_eq!(r("bytes=100-"), Unsatisfiable);
        assert_eq!(r("bytes=-0"), Unsatisfiable);
        assert_eq!(r("bytes=9-3"), Unsatisfiable);
        assert_eq!(r("bytes=x-3"), Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Whole);
        assert_eq!(r("items=0-1"), Whole);
    }

    #[test]
    fn gzip_negotiation_and_etags() {
        assert!(accepts_gzip(&h(&[(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br"
        )])));
        assert!(accepts_gzip(&h(&[(
            header::ACCEPT_ENCODING,
            "br;q=1.0, gzip;q=0.8"
        )])));
        assert!(!accepts_gzip(&h(&[(header::ACCEPT_ENCODING, "gzip;q=0")])));
        assert!(!accepts_gzip(&h(&[(header::ACCEPT_ENCODING, "identity")])));
        assert!(!accepts_gzip(&HeaderMap::new()));
        assert!(none_match(
            &h(&[(header::IF_NONE_MATCH, "\"a\", \"b\"")]),
            b"\"b\""
        ));
        assert!(!none_match(
            &h(&[(header::IF_NONE_MATCH, "\"a\"")]),
            b"\"b\""
        ));
        // Weak comparison (RFC 9110 §13.1.2), `*`, and two header lines.
        assert!(none_match(
            &h(&[(header::IF_NONE_MATCH, "W/\"b\"")]),
            b"\"b\""
        ));
        assert!(none_match(&h(&[(header::IF_NONE_MATCH, "*")]), b"\"b\""));
        assert!(none_match(
            &h(&[
                (header::IF_NONE_MATCH, "\"a\""),
                (header::IF_NONE_MATCH, "\"b\"")
            ]),
            b"\"b\""
        ));
        assert!(!none_match(
            &h(&[(header::IF_NONE_MATCH, "garbage")]),
            b"\"b\""
        ));
    }
}
