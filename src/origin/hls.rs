//! HLS origin handlers: playlists (with LL-HLS blocking reload and delta updates), parts,
//! init sections and segments, served from memory.
//!
//! Cache policy (HLS2 App. B.1; RFC 9111 for the shared-cache rules): blocking playlist responses 6 × target
//! duration, other live playlists ½ target duration, parts / segments / init sections
//! immutable (their names carry the broadcast epoch and are never reused), 404s `no-store`
//! so a CDN does not black out a stream that is about to start. CORS comes from the router.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use tracing::debug;

use super::AppState;
use super::error::OriginError;
use super::respond::{INIT, SEGMENT, TS, max_age, media_response, playlist_response};
use crate::hls::{
    Doc, Readiness, SegmentBody, TS_PLAYLIST, TsSources, parse_init_name, parse_part_name,
    parse_segment_name, parse_ts_segment_name, remux,
};

/// What the HLS handlers keep between requests: the parked-request count and the header
/// values that depend only on configuration (built once, cloned per response without
/// formatting anything).
#[derive(Clone)]
pub struct HlsOrigin {
    /// Blocking requests parked right now (bounded).
    pub parked: Parked,
    /// `Cache-Control` of a non-blocking playlist: ½ target duration.
    live_cache: HeaderValue,
    /// `Cache-Control` of a blocking playlist response: 6 × target duration.
    blocking_cache: HeaderValue,
    /// MPEG-TS remuxes running at once: one per core. Without a CDN in front every TS
    /// request remuxes; the rest wait here instead of filling tokio's blocking pool.
    remuxes: Arc<tokio::sync::Semaphore>,
}

impl HlsOrigin {
    /// The state for a store whose target duration is `target_duration` seconds.
    pub fn new(target_duration: u64) -> HlsOrigin {
        HlsOrigin {
            parked: Parked::default(),
            // HLS2 App. B.1.
            live_cache: max_age((target_duration / 2).max(1)),
            blocking_cache: max_age(target_duration * 6),
            remuxes: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
        }
    }
}

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

/// `max-age` for a playlist: ½ target duration (non-blocking), 6 × target duration for a
/// blocking response (HLS2 App. B.1).
fn playlist_cache(state: &AppState, stream: &str, blocking: bool) -> HeaderValue {
    // An ended playlist stays short-lived too: the name may be published again at once,
    // and a cached ENDLIST would hide the new broadcast.
    if blocking && state.store.is_live(stream) {
        state.hls.blocking_cache.clone()
    } else {
        state.hls.live_cache.clone()
    }
}

/// `GET /hls/{stream}/master.m3u8`
pub async fn master(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    req: Request,
) -> Result<Response, OriginError> {
    master_response(&state, &stream, state.store.master(&stream), req.headers())
}

fn master_response(
    state: &AppState,
    stream: &str,
    doc: Option<Doc>,
    req: &HeaderMap,
) -> Result<Response, OriginError> {
    let doc = doc.ok_or(OriginError::NotFound)?;
    Ok(playlist_response(
        &doc,
        playlist_cache(state, stream, false),
        req,
    ))
}

/// `GET /hls/{stream}/master-ts.m3u8`: the MPEG-TS variants (one per video rung, audio
/// muxed in), for players that cannot read fMP4.
pub async fn ts_master(
    State(state): State<Arc<AppState>>,
    Path(stream): Path<String>,
    req: Request,
) -> Result<Response, OriginError> {
    master_response(
        &state,
        &stream,
        state.store.ts_master(&stream),
        req.headers(),
    )
}

/// The bytes of a stored segment: from memory, or read back from the DVR spill directory
/// on tokio's blocking pool. `None`: it left the window (and was deleted) meanwhile.
async fn segment_bytes(body: SegmentBody) -> Option<Bytes> {
    match body {
        SegmentBody::Memory(b) => Some(b),
        SegmentBody::File(path) => match tokio::fs::read(path.as_path()).await {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => {
                debug!(path = %path.display(), error = %e, "spilled segment unreadable");
                None
            }
        },
    }
}

/// Remuxes an MPEG-TS segment on the blocking pool (it parses and copies the whole segment:
/// not work for the async workers), at most one per core at a time.
async fn ts_segment(
    src: TsSources,
    seq: u64,
    headers: &HeaderMap,
    remuxes: &tokio::sync::Semaphore,
) -> Result<Response, OriginError> {
    let (video_init, video) = src.video;
    let video = segment_bytes(video).await.ok_or(OriginError::NotFound)?;
    let audio = match src.audio {
        Some((init, bodies)) => {
            let mut segments = Vec::with_capacity(bodies.len());
            for body in bodies {
                // One left the window meanwhile: 404 rather than a segment with a gap.
                segments.push(segment_bytes(body).await.ok_or(OriginError::NotFound)?);
            }
            Some((init, segments))
        }
        None => None,
    };
    let _permit = remuxes
        .acquire()
        .await
        .map_err(|_| OriginError::ShuttingDown)?;
    let remuxed = tokio::task::spawn_blocking(move || {
        let audio_refs: Option<(&[u8], Vec<&[u8]>)> = audio
            .as_ref()
            .map(|(i, segs)| (i.as_ref(), segs.iter().map(|s| s.as_ref()).collect()));
        remux(
            seq,
            (&video_init, &video),
            audio_refs.as_ref().map(|(i, segs)| (*i, segs.as_slice())),
        )
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    match remuxed {
        Ok(body) => Ok(media_response(Bytes::from(body), TS, headers, src.ttl)),
        Err(e) => {
            tracing::error!(error = %e, seq, "MPEG-TS remux failed");
            Err(OriginError::Remux)
        }
    }
}

/// Delivery directives of a playlist request (HLS2 §6.2.5).
#[derive(Debug, PartialEq)]
pub struct Directives {
    /// `_HLS_msn`: the media sequence number the response must contain.
    pub msn: Option<u64>,
    /// `_HLS_part`: the part of segment `msn` the response must contain.
    pub part: Option<usize>,
    /// `_HLS_skip=YES` or `v2`: a delta update is asked for.
    pub skip: bool,
}

/// Reads the `_HLS_` directives from a raw query string. Other parameters (a CDN's cache
/// busters, tokens) are ignored; the values are plain digits or `YES`/`v2`, so no
/// percent-decoding is needed, and a playlist request without a query allocates nothing.
pub fn directives(query: Option<&str>) -> Result<Directives, &'static str> {
    let value = |k: &str| -> Option<&str> {
        query?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v)
    };
    let num = |k: &str| -> Result<Option<u64>, &'static str> {
        value(k)
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
    let skip = matches!(value("_HLS_skip"), Some("YES" | "v2"));
    Ok(Directives {
        msn,
        part: part.map(|p| p as usize),
        skip,
    })
}

/// The request headers a response reads (content coding, validators, ranges), kept by a
/// request that parks instead of the whole request: its header map, URI and extensions
/// (axum's route parameters, the original URI) are freed for the seconds it waits. The
/// values are clones (shared bytes, no copy); none of them present, nothing is allocated.
fn response_headers(req: &HeaderMap) -> HeaderMap {
    let mut kept = HeaderMap::new();
    for name in [
        header::ACCEPT_ENCODING,
        header::IF_NONE_MATCH,
        header::RANGE,
    ] {
        for v in req.get_all(&name) {
            kept.append(name.clone(), v.clone());
        }
    }
    kept
}

/// Parks until the store can answer for `msn`/`part`, at most 3 × target duration
/// (HLS2 §6.2.5.2: then 503). Cheap: one `watch` receiver, no thread, no polling.
async fn wait_until(
    state: &AppState,
    stream: &str,
    rendition: &str,
    msn: u64,
    part: Option<usize>,
) -> Result<(), OriginError> {
    let limit = Duration::from_secs(state.store.target_duration() * 3);
    let deadline = tokio::time::Instant::now() + limit;
    let mut guard = None;
    loop {
        match state.store.readiness(stream, rendition, msn, part) {
            Readiness::Ready => return Ok(()),
            Readiness::NotFound => return Err(OriginError::NotFound),
            Readiness::TooFar => {
                return Err(OriginError::BadRequest(
                    "_HLS_msn/_HLS_part too far in the future",
                ));
            }
            Readiness::Wait(mut rx) => {
                if guard.is_none() {
                    guard = state
                        .hls
                        .parked
                        .enter(state.store.config().max_blocking_requests);
                    if guard.is_none() {
                        state.store.metrics().blocking_refused.inc();
                        return Err(OriginError::TooManyBlocking);
                    }
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(_) => continue,
                    Err(_) => {
                        debug!(stream, rendition, msn, ?part, "blocking request timed out");
                        state.store.metrics().blocking_timeouts.inc();
                        return Err(OriginError::BlockingTimedOut);
                    }
                }
            }
        }
    }
}

/// `GET /hls/{stream}/{rendition}/{file}`: `index.m3u8`, `init-{epoch}.mp4`,
/// `seg-{epoch}-{msn}.m4s`, `part-{epoch}-{msn}.{index}.m4s`.
pub async fn rendition_file(
    State(state): State<Arc<AppState>>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
    // The request itself, not the `HeaderMap` and `Query` extractors: those copy the
    // headers and build a map for every request (BENCHMARKS.md "Origin throughput").
    req: Request,
) -> Result<Response, OriginError> {
    let store = &state.store;
    if file == "index.m3u8" {
        let d = directives(req.uri().query()).map_err(OriginError::BadRequest)?;
        let blocking = d.msn.is_some() && store.ll().is_some();
        let headers = match (d.msn, blocking) {
            (Some(msn), true) => {
                // A parked request holds only what its response needs (BENCHMARKS.md
                // "Parked HTTP/1.1 requests": 18.8 → 16.9 kB each with this and the boxing).
                // The wait is boxed: its timer and watch receiver are allocated only by
                // requests that park, not carried in every request's future (axum boxes
                // the handler's future whole).
                let kept = response_headers(req.headers());
                drop(req);
                Box::pin(wait_until(&state, &stream, &rendition, msn, d.part)).await?;
                kept
            }
            _ => req.into_parts().0.headers,
        };
        let doc = store
            .media_playlist(&stream, &rendition, d.skip)
            .ok_or(OriginError::NotFound)?;
        let cache = playlist_cache(&state, &stream, blocking);
        return Ok(playlist_response(&doc, cache, &headers));
    }
    let headers = req.headers();
    if file == TS_PLAYLIST {
        // Plain HLS: `_HLS_` directives do not apply (HLS2 §6.2.5 is for LL-HLS playlists).
        let doc = store
            .ts_playlist(&stream, &rendition)
            .ok_or(OriginError::NotFound)?;
        let cache = playlist_cache(&state, &stream, false);
        return Ok(playlist_response(&doc, cache, headers));
    }
    if let Some((epoch, seq)) = parse_ts_segment_name(&file) {
        let src = store
            .ts_sources(&stream, &rendition, epoch, seq)
            .ok_or(OriginError::NotFound)?;
        // Boxed, as below: every request's future is as large as its largest branch, and a
        // parked playlist request should not carry the state of a remux or a file read
        // (BENCHMARKS.md "Origin throughput and parked requests").
        return Box::pin(ts_segment(src, seq, headers, &state.hls.remuxes)).await;
    }
    if let Some((epoch, msn, index)) = parse_part_name(&file) {
        if let Some(body) = store.part(&stream, &rendition, epoch, msn, index) {
            return Ok(media_response(body, SEGMENT, headers, None));
        }
        // Only the hinted next part may be requested before it exists; it is answered
        // when complete, never trickled (HLS2 §6.2.6). Anything else unknown: 404.
        if !store.is_epoch(&stream, epoch)
            || store.next_part(&stream, &rendition) != Some((msn, index))
        {
            return Err(OriginError::NotFound);
        }
        // As for a blocking playlist reload above.
        let kept = response_headers(headers);
        drop(req);
        Box::pin(wait_until(&state, &stream, &rendition, msn, Some(index))).await?;
        // None: the hint was abandoned (a segment started early): 404 (HLS2 §6.2.6).
        let body = store
            .part(&stream, &rendition, epoch, msn, index)
            .ok_or(OriginError::NotFound)?;
        return Ok(media_response(body, SEGMENT, &kept, None));
    }
    if let Some(epoch) = parse_init_name(&file) {
        let body = store
            .init_segment(&stream, &rendition, epoch)
            .ok_or(OriginError::NotFound)?;
        return Ok(media_response(body, INIT, headers, None));
    }
    if let Some((epoch, seq)) = parse_segment_name(&file) {
        let (body, ttl) = store
            .media_segment(&stream, &rendition, epoch, seq)
            .ok_or(OriginError::NotFound)?;
        let body = Box::pin(segment_bytes(body))
            .await
            .ok_or(OriginError::NotFound)?;
        return Ok(media_response(body, SEGMENT, headers, ttl));
    }
    Err(OriginError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_parsing() {
        assert_eq!(
            directives(None),
            Ok(Directives {
                msn: None,
                part: None,
                skip: false
            })
        );
        assert_eq!(
            directives(Some("cb=1&_HLS_msn=7&_HLS_part=2&_HLS_skip=YES&flag")),
            Ok(Directives {
                msn: Some(7),
                part: Some(2),
                skip: true
            })
        );
        assert!(directives(Some("_HLS_part=2")).is_err());
        assert!(directives(Some("_HLS_msn=x")).is_err());
        assert!(directives(Some("_HLS_msn=-1")).is_err());
        assert!(!directives(Some("_HLS_skip=NO")).expect("ok").skip);
        assert!(directives(Some("_HLS_skip=v2")).expect("ok").skip);
        assert_eq!(directives(Some("")), directives(None));
        assert!(directives(Some("_HLS_msn")).is_err());
    }

    #[test]
    fn parked_requests_keep_only_the_headers_responses_read() {
        let mut req = HeaderMap::new();
        for (k, v) in [
            (header::ACCEPT_ENCODING, "gzip"),
            (header::IF_NONE_MATCH, "\"a\""),
            (header::IF_NONE_MATCH, "\"b\""),
            (header::RANGE, "bytes=0-1"),
            (header::USER_AGENT, "AppleCoreMedia/1.0"),
            (header::COOKIE, "x=1"),
        ] {
            req.append(k, HeaderValue::from_static(v));
        }
        let kept = response_headers(&req);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept.get_all(header::IF_NONE_MATCH).iter().count(), 2);
        assert!(!kept.contains_key(header::USER_AGENT));
        assert!(!kept.contains_key(header::COOKIE));
        assert_eq!(response_headers(&HeaderMap::new()).capacity(), 0);
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
