//! HLS origin handlers: playlists (with LL-HLS blocking reload and delta updates), parts,
//! init sections and segments, served from memory.
//!
//! Cache policy (HLS2 App. B.1, STANDARDS §5): blocking playlist responses 6 × target
//! duration, other live playlists ½ target duration, parts / segments / init sections
//! immutable (their names carry the broadcast epoch and are never reused), 404s `no-store`
//! so a CDN does not black out a stream that is about to start. CORS comes from the router.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tracing::debug;

use super::AppState;
use crate::hls::{Readiness, parse_init_name, parse_part_name, parse_segment_name};

const M3U8: &str = "application/vnd.apple.mpegurl";
/// AUTH 10.4: `.m4s` segments are `video/iso.segment`; init sections `video/mp4`.
const SEGMENT: &str = "video/iso.segment";
const INIT: &str = "video/mp4";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Counts parked blocking requests; bounded by `hls.max_blocking_requests`.
#[derive(Clone, Default)]
pub struct Parked(Arc<AtomicUsize>);

struct ParkedGuard(Arc<AtomicUsize>);

impl Drop for ParkedGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Parked {
    fn enter(&self, max: usize) -> Option<ParkedGuard> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        if n >= max {
            self.0.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ParkedGuard(Arc::clone(&self.0)))
    }

    /// Requests parked right now.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

fn status(code: StatusCode, msg: &'static str, cache: &'static str) -> Response {
    let mut r = (code, msg).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

fn not_found() -> Response {
    status(StatusCode::NOT_FOUND, "not found\n", "no-store")
}

fn bad_request(msg: &'static str) -> Response {
    status(StatusCode::BAD_REQUEST, msg, "no-store")
}

fn unavailable(msg: &'static str) -> Response {
    let mut r = status(StatusCode::SERVICE_UNAVAILABLE, msg, "no-store");
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn ok(body: Bytes, content_type: &'static str, cache: HeaderValue) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, cache);
    r
}

fn max_age(secs: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={secs}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// `max-age` for a playlist: ½ target duration while live (non-blocking), 6 × target
/// duration for a blocking response (HLS2 App. B.1), longer once it carries ENDLIST.
fn playlist_cache(state: &AppState, stream: &str, blocking: bool) -> HeaderValue {
    let td = state.store.target_duration();
    if !state.store.is_live(stream) {
        return max_age(30);
    }
    max_age(if blocking { td * 6 } else { (td / 2).max(1) })
}

/// `GET /hls/{stream}/master.m3u8`
pub async fn master(State(state): State<AppState>, Path(stream): Path<String>) -> Response {
    match state.store.master(&stream) {
        Some(body) => {
            let cache = playlist_cache(&state, &stream, false);
            ok(body, M3U8, cache)
        }
        None => not_found(),
    }
}

/// Delivery directives of a playlist request (HLS2 §6.2.5).
#[derive(Debug, PartialEq)]
struct Directives {
    msn: Option<u64>,
    part: Option<usize>,
    skip: bool,
}

fn directives(q: &HashMap<String, String>) -> Result<Directives, &'static str> {
    let num = |k: &str| -> Result<Option<u64>, &'static str> {
        q.get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| "_HLS_msn and _HLS_part must be integers\n")
            })
            .transpose()
    };
    let msn = num("_HLS_msn")?;
    let part = num("_HLS_part")?;
    if part.is_some() && msn.is_none() {
        // HLS2 §6.2.5.2: MUST be 400.
        return Err("_HLS_part requires _HLS_msn\n");
    }
    let skip = matches!(q.get("_HLS_skip").map(String::as_str), Some("YES" | "v2"));
    Ok(Directives {
        msn,
        part: part.map(|p| p as usize),
        skip,
    })
}

/// Parks until the store can answer for `msn`/`part`, at most 3 × target duration
/// (HLS2 §6.2.5.2: then 503). Cheap: one `watch` receiver, no thread, no polling.
async fn wait_until(
    state: &AppState,
    stream: &str,
    rendition: &str,
    msn: u64,
    part: Option<usize>,
) -> Result<(), Response> {
    let limit = Duration::from_secs(state.store.target_duration() * 3);
    let deadline = tokio::time::Instant::now() + limit;
    let mut guard = None;
    loop {
        match state.store.readiness(stream, rendition, msn, part) {
            Readiness::Ready => return Ok(()),
            Readiness::NotFound => return Err(not_found()),
            Readiness::TooFar => {
                return Err(bad_request("_HLS_msn/_HLS_part too far in the future\n"));
            }
            Readiness::Wait(mut rx) => {
                if guard.is_none() {
                    guard = state
                        .parked
                        .enter(state.store.config().max_blocking_requests);
                    if guard.is_none() {
                        return Err(unavailable("too many blocking requests\n"));
                    }
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(_) => continue,
                    Err(_) => {
                        debug!(stream, rendition, msn, ?part, "blocking request timed out");
                        return Err(unavailable("not available in time\n"));
                    }
                }
            }
        }
    }
}

/// `GET /hls/{stream}/{rendition}/{file}`: `index.m3u8`, `init-{epoch}.mp4`,
/// `seg-{epoch}-{msn}.m4s`, `part-{epoch}-{msn}.{index}.m4s`.
pub async fn rendition_file(
    State(state): State<AppState>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let store = &state.store;
    if file == "index.m3u8" {
        let d = match directives(&query) {
            Ok(d) => d,
            Err(msg) => return bad_request(msg),
        };
        let blocking = d.msn.is_some() && store.ll().is_some();
        if let (Some(msn), true) = (d.msn, blocking)
            && let Err(resp) = wait_until(&state, &stream, &rendition, msn, d.part).await
        {
            return resp;
        }
        return match store.media_playlist(&stream, &rendition, d.skip) {
            Some(body) => {
                let cache = playlist_cache(&state, &stream, blocking);
                ok(body, M3U8, cache)
            }
            None => not_found(),
        };
    }
    if let Some((epoch, msn, index)) = parse_part_name(&file) {
        if let Some(body) = store.part(&stream, &rendition, epoch, msn, index) {
            return ok(body, SEGMENT, HeaderValue::from_static(IMMUTABLE));
        }
        // Only the hinted next part may be requested before it exists; it is answered
        // when complete, never trickled (HLS2 §6.2.6). Anything else unknown: 404.
        if !store.is_epoch(&stream, epoch)
            || store.next_part(&stream, &rendition) != Some((msn, index))
        {
            return not_found();
        }
        if let Err(resp) = wait_until(&state, &stream, &rendition, msn, Some(index)).await {
            return resp;
        }
        return match store.part(&stream, &rendition, epoch, msn, index) {
            Some(body) => ok(body, SEGMENT, HeaderValue::from_static(IMMUTABLE)),
            // The hint was abandoned (a segment started early): 404 (HLS2 §6.2.6).
            None => not_found(),
        };
    }
    if let Some(epoch) = parse_init_name(&file) {
        return match store.init_segment(&stream, &rendition, epoch) {
            Some(body) => ok(body, INIT, HeaderValue::from_static(IMMUTABLE)),
            None => not_found(),
        };
    }
    if let Some((epoch, seq)) = parse_segment_name(&file) {
        return match store.media_segment(&stream, &rendition, epoch, seq) {
            Some(body) => ok(body, SEGMENT, HeaderValue::from_static(IMMUTABLE)),
            None => not_found(),
        };
    }
    not_found()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn directive_parsing() {
        assert_eq!(
            directives(&q(&[])),
            Ok(Directives {
                msn: None,
                part: None,
                skip: false
            })
        );
        assert_eq!(
            directives(&q(&[
                ("_HLS_msn", "7"),
                ("_HLS_part", "2"),
                ("_HLS_skip", "YES")
            ])),
            Ok(Directives {
                msn: Some(7),
                part: Some(2),
                skip: true
            })
        );
        assert!(directives(&q(&[("_HLS_part", "2")])).is_err());
        assert!(directives(&q(&[("_HLS_msn", "x")])).is_err());
        assert!(directives(&q(&[("_HLS_msn", "-1")])).is_err());
        assert!(!directives(&q(&[("_HLS_skip", "NO")])).expect("ok").skip);
        assert!(directives(&q(&[("_HLS_skip", "v2")])).expect("ok").skip);
    }

    #[test]
    fn parked_is_bounded() {
        let p = Parked::default();
        let a = p.enter(2).expect("first");
        let b = p.enter(2).expect("second");
        assert!(p.enter(2).is_none());
        drop(a);
        assert_eq!(p.count(), 1);
        assert!(p.enter(2).is_some());
        drop(b);
    }
}
