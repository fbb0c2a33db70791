//! MPEG-TS for players that cannot read fMP4: which stored segments an MPEG-TS segment is
//! made of (`sources`), the fMP4 reader (`fmp4`) and the remux itself (`ts`), run by the
//! origin on request.

mod fmp4;
mod sources;
mod ts;

pub use fmp4::{Codec, Fmp4Error, Sample, Track, read_init, read_samples};
pub use sources::TsSources;
pub use ts::remux;
