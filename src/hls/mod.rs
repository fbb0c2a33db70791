//! HLS packaging: segment windows, playlists and the in-memory origin store.
//!
//! `window` and `playlist` are pure (no clock, no I/O); `store` is the read-mostly map the
//! broadcast tasks write and the HTTP handlers read.

mod playlist;
mod store;
mod window;

pub use playlist::{AUDIO_GROUP, target_duration};
pub use store::{
    HlsStore, IngestSummary, RenditionSummary, StoreError, StreamSummary, init_name,
    parse_init_name, parse_segment_name, segment_name,
};
pub use window::{Segment, Window};
