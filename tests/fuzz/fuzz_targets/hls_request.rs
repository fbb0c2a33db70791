//! An HLS request as the origin reads it (`GET /hls/{stream}/{rendition}/{file}?{query}`):
//! the media file names (`hls::parse_segment_name`, `parse_part_name`, `parse_init_name`,
//! `parse_ts_segment_name`) and the delivery directives of a playlist request
//! (`origin::directives`: `_HLS_msn`, `_HLS_part`, `_HLS_skip`, RFC 8216bis §6.2.5).
//! The input is `{file}?{query}`; everything after the first `?` is the raw query.
//!
//! Asserts, beyond "returns":
//! - no parser allocates (they run on every request, before any lookup);
//! - a name is one kind at most (the origin tries them in turn);
//! - a parsed name formats back to exactly the same string: a segment has one URL, so a
//!   cache (whose key is the URL; the objects are immutable) never holds two copies, and
//!   `seg-e-01.ts`, `seg-e-001.ts`… cannot each miss the cache and cost a remux;
//! - the directives are those of the first `_HLS_msn` / `_HLS_part` / `_HLS_skip` pair;
//!   `_HLS_part` without `_HLS_msn` and a non-integer value are refused (RFC 8216bis
//!   §6.2.5.2: 400); writing the accepted directives back as a query gives them back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whipcast::hls::{
    init_name, parse_init_name, parse_part_name, parse_segment_name, parse_ts_segment_name,
    part_name, segment_name, ts_segment_name,
};
use whipcast::origin::{Directives, directives};
use whipcast_fuzz::metered;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (file, query) = match text.split_once('?') {
        Some((f, q)) => (f, Some(q)),
        None => (text, None),
    };

    let (names, heap) = metered(|| {
        (
            parse_ts_segment_name(file),
            parse_part_name(file),
            parse_init_name(file),
            parse_segment_name(file),
        )
    });
    assert_eq!(heap.allocations, 0, "a name parser allocated");
    let (ts, part, init, seg) = names;
    let kinds = [ts.is_some(), part.is_some(), init.is_some(), seg.is_some()];
    assert!(
        kinds.iter().filter(|k| **k).count() <= 1,
        "{file:?} is {kinds:?}"
    );
    if let Some((epoch, seq)) = ts {
        assert_eq!(ts_segment_name(epoch, seq), file);
    }
    if let Some((epoch, seq, index)) = part {
        assert_eq!(part_name(epoch, seq, index), file);
    }
    if let Some(epoch) = init {
        assert_eq!(init_name(epoch), file);
    }
    if let Some((epoch, seq)) = seg {
        assert_eq!(segment_name(epoch, seq), file);
    }

    let (d, heap) = metered(|| directives(query));
    assert_eq!(heap.allocations, 0, "directives allocated");
    // The model: the first pair with each key; a key without `=` has an empty value.
    let first = |key: &str| -> Option<&str> {
        query?.split('&').find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == key => Some(v),
            None if kv == key => Some(""),
            _ => None,
        })
    };
    let (msn, part) = (first("_HLS_msn"), first("_HLS_part"));
    let skip = matches!(first("_HLS_skip"), Some("YES" | "v2"));
    let numeric = |v: Option<&str>| v.is_none_or(|v| v.parse::<u64>().is_ok());
    match d {
        Ok(Directives {
            msn: m,
            part: p,
            skip: s,
        }) => {
            assert!(numeric(msn) && numeric(part) && (part.is_none() || msn.is_some()));
            assert_eq!(m, msn.map(|v| v.parse::<u64>().expect("checked")));
            assert_eq!(
                p.map(|p| p as u64),
                part.map(|v| v.parse::<u64>().expect("checked"))
            );
            assert_eq!(s, skip);
            let mut q = Vec::new();
            if let Some(m) = m {
                q.push(format!("_HLS_msn={m}"));
            }
            if let Some(p) = p {
                q.push(format!("_HLS_part={p}"));
            }
            if s {
                q.push("_HLS_skip=YES".to_string());
            }
            let q = q.join("&");
            assert_eq!(
                directives(Some(&q)),
                Ok(Directives {
                    msn: m,
                    part: p,
                    skip: s
                })
            );
        }
        Err(e) => {
            assert!(!(numeric(msn) && numeric(part) && (part.is_none() || msn.is_some())));
            assert!(
                e == "_HLS_msn and _HLS_part must be integers\n"
                    || e == "_HLS_part requires _HLS_msn\n",
                "{e:?}"
            );
        }
    }
});
