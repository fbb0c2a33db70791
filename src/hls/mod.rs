//! HLS packaging: segment windows, playlists (plain and Low-Latency) and the in-memory
//! origin store.
//!
//! - `window`, `playlist`, `llhls`: pure (no clock, no I/O) — a rendition's segments and
//!   parts, and the playlist writers (`m3u8-rs` writes the multivariant playlist).
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
mod llhls;
mod names;
mod playlist;
mod remux;
mod render;
mod settings;
mod spill;
mod store;
mod stream;
mod summary;
mod window;

pub use bitrate::Bitrate;
pub use doc::Doc;
pub use llhls::{PartTag, PreloadHint, RenditionReport, ServerControl, Skip, secs};
pub use names::{
    TS_PLAYLIST, init_name, parse_init_name, parse_part_name, parse_segment_name,
    parse_ts_segment_name, part_name, segment_name, ts_segment_name,
};
pub use playlist::{
    AUDIO_GROUP, ListType, ListedSegment, MasterEntry, SegmentList, master, segment_list,
    target_duration,
};
pub use remux::{Codec, Fmp4Error, Sample, Track, TsSources, read_init, read_samples, remux};
pub use settings::LlSettings;
pub use store::HlsStore;
pub use stream::{At, Chunk, Readiness, SegmentBody, StoreError};
pub use summary::{IngestSummary, LagSummary, RenditionSummary, StreamSummary};
pub use window::{Part, Position, Segment, Window};
