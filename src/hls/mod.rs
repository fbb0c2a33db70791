//! HLS packaging: segment windows, playlists (plain and Low-Latency) and the in-memory
//! origin store.
//!
//! `window`, `playlist` and `llhls` are pure (no clock, no I/O); `store` is the read-mostly
//! map the broadcast tasks write and the HTTP handlers read. `fmp4` and `ts` remux stored
//! fMP4 segments into MPEG-TS on request, for players that cannot read fMP4.

mod doc;
mod fmp4;
mod llhls;
mod playlist;
mod spill;
mod store;
pub mod ts;
mod window;

pub use doc::Doc;
pub use llhls::{PartTag, PreloadHint, RenditionReport, ServerControl, Skip, secs};
pub use playlist::{
    AUDIO_GROUP, ListType, ListedSegment, MasterEntry, SegmentList, master, segment_list,
    target_duration,
};
pub use store::{
    Chunk, HlsStore, IngestSummary, LagSummary, LlSettings, Readiness, RenditionSummary,
    SegmentBody, StoreError, StreamSummary, TS_PLAYLIST, TsSources, init_name, parse_init_name,
    parse_part_name, parse_segment_name, parse_ts_segment_name, part_name, segment_name,
    ts_segment_name,
};
pub use window::{Part, Position, Segment, Window};
