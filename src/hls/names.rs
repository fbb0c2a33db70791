//! The file names of a broadcast's init segments, segments and parts, and their parsers.
//!
//! Every media name carries the broadcast's epoch, so a cache never serves an old
//! broadcast's bytes under a new playlist of the same stream name.

/// A video rung's MPEG-TS media playlist, beside its `index.m3u8`.
pub const TS_PLAYLIST: &str = "index-ts.m3u8";

/// The init segment's file name in a broadcast.
pub fn init_name(epoch: &str) -> String {
    format!("init-{epoch}.mp4")
}

/// A segment's file name. The epoch makes names unique across broadcasts of one stream
/// name, so a cache never serves an old broadcast's bytes under a new playlist.
pub fn segment_name(epoch: &str, seq: u64) -> String {
    format!("seg-{epoch}-{seq}.m4s")
}

/// A part's file name: part `index` of segment `seq`.
pub fn part_name(epoch: &str, seq: u64, index: usize) -> String {
    format!("part-{epoch}-{seq}.{index}.m4s")
}

/// An MPEG-TS segment's file name (the same segment, remuxed; see [`super::remux`]).
pub fn ts_segment_name(epoch: &str, seq: u64) -> String {
    format!("seg-{epoch}-{seq}.ts")
}

/// A number as the names above write it: decimal digits without a leading zero (`0`
/// itself aside) and without a sign, which `str::parse` would also take. One spelling per
/// number keeps one URL per file: the files are cached as immutable under their URL, and
/// `seg-e-07.ts`, `seg-e-007.ts`, … would each miss a CDN's cache (and cost a remux).
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    let canonical = match s.as_bytes() {
        [] | [b'0', _, ..] => false,
        digits => digits.iter().all(u8::is_ascii_digit),
    };
    canonical.then(|| s.parse().ok()).flatten()
}

/// Parses `seg-{epoch}-{seq}.ts`.
pub fn parse_ts_segment_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".ts")?;
    let (epoch, seq) = rest.rsplit_once('-')?;
    Some((epoch, number(seq)?))
}

/// Parses `part-{epoch}-{seq}.{index}.m4s`.
pub fn parse_part_name(name: &str) -> Option<(&str, u64, usize)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".m4s")?;
    let (epoch, pos) = rest.rsplit_once('-')?;
    let (seq, index) = pos.split_once('.')?;
    Some((epoch, number(seq)?, number(index)?))
}

/// Parses `seg-{epoch}-{seq}.m4s`.
pub fn parse_segment_name(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("seg-")?.strip_suffix(".m4s")?;
    let (epoch, seq) = rest.rsplit_once('-')?;
    Some((epoch, number(seq)?))
}

/// Parses `init-{epoch}.mp4`.
pub fn parse_init_name(name: &str) -> Option<&str> {
    name.strip_prefix("init-")?.strip_suffix(".mp4")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            parse_segment_name(&segment_name("ab12", 42)),
            Some(("ab12", 42))
        );
        assert_eq!(parse_init_name(&init_name("ab12")), Some("ab12"));
        assert_eq!(parse_segment_name("seg-x.m4s"), None);
        assert_eq!(parse_segment_name("seg-a-b.m4s"), None);
        assert_eq!(parse_init_name("init.mp4"), None);
        assert_eq!(
            parse_ts_segment_name(&ts_segment_name("ab12", 9)),
            Some(("ab12", 9))
        );
    }

    #[test]
    fn names_of_parts_round_trip() {
        assert_eq!(
            parse_part_name(&part_name("ab12", 7, 3)),
            Some(("ab12", 7, 3))
        );
        assert_eq!(parse_part_name("part-ab12-7.m4s"), None);
        assert_eq!(parse_part_name("part-ab12-7.x.m4s"), None);
    }

    #[test]
    fn numbers_have_one_spelling() {
        // Found by tests/fuzz (hls_request): `seg-…-0921.ts` parsed as segment 921, a second
        // URL for `seg-…-921.ts`.
        assert_eq!(parse_ts_segment_name("seg-ab12-0921.ts"), None);
        assert_eq!(
            parse_ts_segment_name("seg-ab12-921.ts"),
            Some(("ab12", 921))
        );
        assert_eq!(parse_segment_name("seg-ab12-+5.m4s"), None);
        assert_eq!(parse_segment_name("seg-ab12-00.m4s"), None);
        assert_eq!(parse_segment_name("seg-ab12-0.m4s"), Some(("ab12", 0)));
        assert_eq!(parse_part_name("part-ab12-7.03.m4s"), None);
        assert_eq!(parse_part_name("part-ab12-07.3.m4s"), None);
        assert_eq!(parse_part_name("part-ab12-7.0.m4s"), Some(("ab12", 7, 0)));
        assert_eq!(
            parse_segment_name("seg-ab12-18446744073709551616.m4s"),
            None
        );
    }
}
