//! MPEG-TS for players that cannot read fMP4, remuxed by the origin on request: which
//! stored segments an MPEG-TS segment is made of (`sources`), the fMP4 reader (`fmp4`, over
//! the box walker of `boxes`), the PES of each sample (`pes`) and the transport stream
//! itself (`ts`).

mod boxes;
mod fmp4;
mod pes;
mod sources;
mod ts;

pub use fmp4::{Codec, Fmp4Error, Sample, Track, read_init, read_samples};
pub use sources::TsSources;
pub use ts::remux;
