//! HLS origin handlers: playlists, init segments and media segments, served from memory.
//!
//! Cache policy (HLS2 App. B.1, STANDARDS §5): live playlists a fraction of the target
//! duration, segments and init sections immutable (their names carry the broadcast epoch and
//! are never reused), 404s `no-store` so a CDN does not black out a stream that is about to
//! start. CORS comes from the router's layer.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use crate::hls::{parse_init_name, parse_segment_name};

const M3U8: &str = "application/vnd.apple.mpegurl";
/// AUTH 10.4: `.m4s` segments are `video/iso.segment`; init sections `video/mp4`.
const SEGMENT: &str = "video/iso.segment";
const INIT: &str = "video/mp4";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

fn not_found() -> Response {
    let mut r = (StatusCode::NOT_FOUND, "not found\n").into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn ok(body: Bytes, content_type: &'static str, cache: HeaderValue) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, cache);
    r
}

/// `max-age` for a playlist: ½ target duration while live (HLS2 App. B.1 non-blocking
/// playlists), longer once it carries ENDLIST and can no longer change.
fn playlist_cache(state: &AppState, stream: &str) -> HeaderValue {
    let live = state.store.is_live(stream);
    let td = crate::hls::target_duration(state.store.config().segment_duration);
    let secs = if live { (td / 2).max(1) } else { 30 };
    HeaderValue::from_str(&format!("public, max-age={secs}"))
        .unwrap_or(HeaderValue::from_static("no-cache"))
}

/// `GET /hls/{stream}/master.m3u8`
pub async fn master(State(state): State<AppState>, Path(stream): Path<String>) -> Response {
    match state.store.master(&stream) {
        Some(body) => {
            let cache = playlist_cache(&state, &stream);
            ok(body, M3U8, cache)
        }
        None => not_found(),
    }
}

/// `GET /hls/{stream}/{rendition}/{file}`: `index.m3u8`, `init-{epoch}.mp4`,
/// `seg-{epoch}-{seq}.m4s`.
pub async fn rendition_file(
    State(state): State<AppState>,
    Path((stream, rendition, file)): Path<(String, String, String)>,
) -> Response {
    let store = &state.store;
    if file == "index.m3u8" {
        return match store.media_playlist(&stream, &rendition) {
            Some(body) => {
                let cache = playlist_cache(&state, &stream);
                ok(body, M3U8, cache)
            }
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
