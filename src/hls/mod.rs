//! HLS packaging: segment windows, playlists (plain and Low-Latency), the in-memory origin
//! store and the MPEG-TS remux.
//!
//! Pure, no clock and no I/O (time comes in as [`At`]):
//! - `window`: one rendition's segments and parts, numbering and retention.
//! - `live`: what a live media playlist lists, from a window; `media_playlist`: the one
//!   media-playlist writer (live windows, plain and LL-HLS, MPEG-TS, and the outputs'
//!   segment lists), over the tag text of `tags`; `multivariant`: the multivariant
//!   playlists — the only file that names `m3u8_rs` (tests also parse with it).
//! - `names`: media file names and their parsers; `settings`: LL-HLS settings;
//!   `bitrate`: BANDWIDTH figures; `doc`: a rendered playlist with its gzip and entity tag.
//! - `stream`: one broadcast's state and how it changes, with `rendition` (its renditions
//!   and carried segments), `serve` (what readers get), `render` (its playlists), `budget`
//!   (memory budget, DVR spill) and `summary` (the API view) working on it.
//! - `remux`: MPEG-TS segments remuxed on request from the stored fMP4.
//!
//! With I/O: `store`, the thin read-mostly map from stream name to each stream's own lock;
//! `spill`, the DVR overflow writer thread.
//!
//! `hls` uses neither `output` nor `origin`; they use it through the items below.

mod bitrate;
mod budget;
mod doc;
mod live;
mod media_playlist;
mod multivariant;
mod names;
mod remux;
mod render;
mod rendition;
mod serve;
mod settings;
mod spill;
mod store;
mod stream;
mod summary;
mod tags;
mod window;

// What the rest of the crate uses: the origin (store, documents, names, readiness, the
// MPEG-TS remux, summaries), the broadcast task and the ingest registry (store, `At`,
// `Chunk`), the outputs (bitrate, segment lists, the multivariant playlist, names); and the
// types in those items' signatures (`StoreError`, `LlSettings`, `Fmp4Error`).
pub use bitrate::Bitrate;
pub use doc::Doc;
pub use media_playlist::{ListType, ListedSegment, SegmentList, segment_list, target_duration};
pub use multivariant::{MasterEntry, master};
pub use names::{
    TS_PLAYLIST, init_name, parse_init_name, parse_part_name, parse_segment_name,
    parse_ts_segment_name, part_name, segment_name, ts_segment_name,
};
pub use remux::{Codec, Fmp4Error, Sample, Track, TsSources, read_init, read_samples, remux};
pub use serve::{Readiness, SegmentBody};
pub use settings::LlSettings;
pub use store::HlsStore;
pub use stream::{At, Chunk, Continuity, StoreError};
pub use summary::{IngestSummary, LagSummary, RenditionSummary, StreamSummary};
