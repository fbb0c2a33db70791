//! HLS packaging: segment windows, playlists (plain and Low-Latency) and the in-memory
//! origin store.
//!
//! - `window`, `live`, `media_playlist`, `tags`, `multivariant`: pure (no clock, no I/O) —
//!   a rendition's segments and parts; what its live playlist lists (`live`); the one
//!   media-playlist writer (`media_playlist`, over the tag text of `tags`), which also writes
//!   the outputs' lists; the multivariant playlists (`multivariant`, the only file that
//!   names `m3u8_rs`).
//! - `names`: the media file names and their parsers; `settings`: LL-HLS settings.
//! - `stream`: one broadcast's state as plain data, with `render` (its playlists),
//!   `budget` (memory budget, DVR spill) and `summary` (the API view) working on it.
//! - `store`: the thin read-mostly map from stream name to each stream's own lock.
//! - `spill`: the DVR overflow writer thread; `doc`: a rendered playlist with its gzip and
//!   entity tag.
//! - `remux`: MPEG-TS segments remuxed on request from the stored fMP4.

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

pub use bitrate::Bitrate;
pub use doc::Doc;
pub use media_playlist::{ListType, ListedSegment, SegmentList, segment_list, target_duration};
pub use multivariant::{MasterEntry, master};
pub use names::{
    TS_PLAYLIST, init_name, parse_init_name, parse_part_name, parse_segment_name,
    parse_ts_segment_name, part_name, segment_name, ts_segment_name,
};
pub use remux::{Fmp4Error, TsSources, remux};
pub use serve::{Readiness, SegmentBody};
pub use settings::LlSettings;
pub use store::HlsStore;
pub use stream::{At, Chunk, StoreError};
pub use summary::{IngestSummary, LagSummary, RenditionSummary, StreamSummary};
pub use window::{Part, Position, Segment, Window};
