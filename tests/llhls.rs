//! Low-Latency HLS during a real live publish: every playlist served obeys the draft's
//! rules (HLS2 §4.4.3.7–8, §4.4.4.9, §4.4.5.2–4, §6.2.5, §6.2.6), blocking reloads return
//! when the part exists, hints become parts, delta updates match full playlists, and the
//! 400 / 503 cases answer as specified.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use common::ll::LlPlaylist;
use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, resolve, test_config};

const RENDITIONS: [&str; 4] = ["360p", "240p", "180p", "audio"];

fn url(gw: &TestGateway, r: &str) -> String {
    gw.url(&format!("/hls/ll/{r}/index.m3u8"))
}

async fn get_pl(gw: &TestGateway, u: &str) -> (u16, LlPlaylist, Duration) {
    let t = Instant::now();
    let r = gw.http.get(u).send().await.unwrap();
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    let el = t.elapsed();
    if code != 200 {
        return (code, LlPlaylist::default(), el);
    }
    (code, LlPlaylist::parse(&text), el)
}

/// The draft's static rules for one playlist.
fn check_rules(name: &str, p: &LlPlaylist) {
    assert_eq!(p.version, 6, "{name}: full playlists need only version 6");
    assert_eq!(p.target_duration, 1);
    assert!(p.independent_segments);
    assert!(p.map_uri.is_some(), "{name}: EXT-X-MAP");
    let sc = &p.server_control;
    assert_eq!(sc["CAN-BLOCK-RELOAD"], "YES");
    let td = p.target_duration as f64;
    let phb: f64 = sc["PART-HOLD-BACK"].parse().unwrap();
    assert!(
        phb >= 3.0 * p.part_target - 1e-9,
        "PART-HOLD-BACK {phb} < 3 × {}",
        p.part_target
    );
    assert!(sc["HOLD-BACK"].parse::<f64>().unwrap() >= 3.0 * td);
    assert!(sc["CAN-SKIP-UNTIL"].parse::<f64>().unwrap() >= 6.0 * td);
    assert!(p.part_target > 0.0, "{name}: EXT-X-PART-INF");
    for s in &p.segments {
        assert!(s.pdt.is_some(), "{name}: segment {} without PDT", s.msn);
        assert!(
            s.duration.round() as u64 <= p.target_duration,
            "{name}: EXTINF {}",
            s.duration
        );
    }
    // Part durations: ≤ PART-TARGET; ≥ 85 % of it unless independent or the last part of
    // its parent segment (HLS2 §4.4.4.9). The last listed part of the open segment may be
    // its last: it is not judged.
    let complete: Vec<u64> = p.segments.iter().map(|s| s.msn).collect();
    for (i, part) in p.parts.iter().enumerate() {
        assert!(
            part.duration <= p.part_target + 1e-9,
            "{name}: part {} is {} > {}",
            part.uri,
            part.duration,
            p.part_target
        );
        let next_same = p.parts.get(i + 1).is_some_and(|n| n.msn == part.msn);
        let last_of_parent = !next_same && complete.contains(&part.msn);
        let unknown = !next_same && !complete.contains(&part.msn);
        if !part.independent && !last_of_parent && !unknown {
            assert!(
                part.duration >= 0.85 * p.part_target,
                "{name}: part {} is {} < 85 % of {}",
                part.uri,
                part.duration,
                p.part_target
            );
        }
    }
    // Video parts that start a segment are independent; audio parts all are.
    if name == "audio" {
        assert!(p.parts.iter().all(|x| x.independent));
    }
    if !p.ended {
        assert_eq!(p.hints.len(), 1, "{name}: exactly one preload hint");
        assert_eq!(
            p.reports.len(),
            RENDITIONS.len() - 1,
            "{name}: a report per other rendition"
        );
        for r in &p.reports {
            assert!(
                r.uri.starts_with("../") && r.uri.ends_with("/index.m3u8"),
                "{}",
                r.uri
            );
            assert!(!r.uri.contains(name));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_playlists_blocking_reload_hints_and_deltas() {
    let cfg = {
        let mut c = test_config("");
        c.hls.window_segments = 12;
        c.ice.media_timeout = Duration::from_secs(20);
        c
    };
    let gw = TestGateway::start(cfg).await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("ll")).with_format(640, 360, 30))
            .await
            .unwrap();
    gw.wait_master("ll", 3, Duration::from_secs(30))
        .await
        .unwrap();
    for r in RENDITIONS {
        gw.wait_segments(&url(&gw, r), 2, Duration::from_secs(20))
            .await
            .unwrap();
    }

    // 0. The first segment of every rendition is one part long, so a viewer can start one
    //    part after the first keyframe (src/media/mux.rs split_first_fragment); the next
    //    ones are whole segments, and the video rungs' boundaries stay equal.
    let mut second_starts = Vec::new();
    for r in RENDITIONS {
        let (_, p, _) = get_pl(&gw, &url(&gw, r)).await;
        assert_eq!(p.media_sequence, 0, "{r}: a fresh stream starts at 0");
        let (first, second) = (&p.segments[0], &p.segments[1]);
        assert!(
            first.duration <= p.part_target + 1e-9,
            "{r}: first segment {} s, want one part (≤ {})",
            first.duration,
            p.part_target
        );
        assert!(
            second.duration > 0.9,
            "{r}: second segment {} s, want a whole 1 s segment",
            second.duration
        );
        if r != "audio" {
            second_starts.push(first.duration);
        }
    }
    assert!(
        second_starts
            .windows(2)
            .all(|w| (w[0] - w[1]).abs() < 0.034),
        "video rungs' first segments differ: {second_starts:?}"
    );

    // 1. Watch every rendition for a while; check every playlist and that each hint
    //    became the next part.
    let mut last: HashMap<&str, LlPlaylist> = HashMap::new();
    let mut hints_checked = 0;
    let end = Instant::now() + Duration::from_secs(6);
    let mut server_controls = Vec::new();
    while Instant::now() < end {
        for r in RENDITIONS {
            let (code, p, _) = get_pl(&gw, &url(&gw, r)).await;
            assert_eq!(code, 200);
            check_rules(r, &p);
            server_controls.push(p.server_control.clone());
            if let Some(prev) = last.get(r) {
                let prev_last = prev.parts.last().map(|x| x.uri.clone());
                let pos = prev_last.and_then(|u| p.parts.iter().position(|x| x.uri == u));
                if let Some(pos) = pos
                    && let Some(next) = p.parts.get(pos + 1)
                {
                    assert_eq!(
                        next.uri, prev.hints[0],
                        "{r}: the hinted part must be the next part"
                    );
                    hints_checked += 1;
                }
            }
            last.insert(r, p);
        }
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert!(
        hints_checked >= 10,
        "only {hints_checked} hint transitions seen"
    );
    // SERVER-CONTROL identical in every rendition (HLS2 §6.2.4).
    assert!(server_controls.windows(2).all(|w| w[0] == w[1]));

    // 2. Rendition reports match the other playlists (within what one part can change).
    let (_, p360, _) = get_pl(&gw, &url(&gw, "360p")).await;
    for rep in &p360.reports {
        let other = resolve(&url(&gw, "360p"), &rep.uri);
        let (_, o, _) = get_pl(&gw, &other).await;
        let (msn, part) = o.last_part().unwrap();
        let behind =
            (msn as i64 - rep.last_msn as i64) * 5 + part as i64 - rep.last_part.unwrap() as i64;
        assert!(
            (0..=2).contains(&behind),
            "{}: report {:?} vs actual ({msn},{part})",
            rep.uri,
            rep
        );
    }

    // 3. Blocking reload: ask for the part after next; it is answered when that part
    //    exists. Two parts ahead, not one: the next part may appear between this
    //    fetch and the blocking request (CI saw an 8 ms wait for one part ahead), but
    //    the one after it is at least a part duration (~200 ms) away.
    let (_, p, _) = get_pl(&gw, &url(&gw, "360p")).await;
    let (msn, idx) = p.last_part().unwrap();
    let (nmsn, nidx) = if idx + 2 >= 5 {
        (msn + 1, idx + 2 - 5)
    } else {
        (msn, idx + 2)
    };
    let (code, blocked, waited) = get_pl(
        &gw,
        &format!("{}?_HLS_msn={nmsn}&_HLS_part={nidx}", url(&gw, "360p")),
    )
    .await;
    assert_eq!(code, 200);
    let suffix = format!("-{nmsn}.{nidx}.m4s");
    assert!(
        blocked
            .parts
            .iter()
            .any(|x| x.msn == nmsn && x.uri.starts_with("part-") && x.uri.ends_with(&suffix)),
        "blocked response lacks part {nmsn}.{nidx}"
    );
    assert!(
        waited > Duration::from_millis(20) && waited < Duration::from_millis(1200),
        "waited {waited:?} for the part after next"
    );
    // Already there: immediate.
    let (code, _, waited) = get_pl(
        &gw,
        &format!("{}?_HLS_msn={msn}&_HLS_part={idx}", url(&gw, "360p")),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        waited < Duration::from_millis(100),
        "existing part took {waited:?}"
    );
    // A part index past the end of a segment means part 0 of the next one.
    let (code, b2, _) = get_pl(
        &gw,
        &format!("{}?_HLS_msn={}&_HLS_part=9", url(&gw, "360p"), nmsn),
    )
    .await;
    assert_eq!(code, 200);
    assert!(
        b2.parts.iter().any(|x| x.msn == nmsn + 1),
        "part 9 of {nmsn} = part 0 of {}",
        nmsn + 1
    );
    // Whole segment wait (_HLS_msn alone).
    let target = b2.last_msn() + 1;
    let (code, b3, _) = get_pl(&gw, &format!("{}?_HLS_msn={target}", url(&gw, "360p"))).await;
    assert_eq!(code, 200);
    assert!(
        b3.segments.iter().any(|s| s.msn == target),
        "segment {target} complete"
    );

    // 4. The hinted part is requestable before it exists and arrives whole.
    let (_, p, _) = get_pl(&gw, &url(&gw, "240p")).await;
    let hint = resolve(&url(&gw, "240p"), &p.hints[0]);
    let r = gw.http.get(&hint).send().await.unwrap();
    assert_eq!(r.status(), 200, "{hint}");
    assert_eq!(r.headers()["content-type"], "video/iso.segment");
    let hinted = r.bytes().await.unwrap();
    assert!(!hinted.is_empty());
    let again = gw.get_bytes(&hint).await.unwrap();
    assert_eq!(hinted.as_ref(), again.as_slice(), "a part never changes");

    // 5. A complete segment is exactly its parts, concatenated.
    let (_, p, _) = get_pl(&gw, &url(&gw, "360p")).await;
    let seg = p
        .segments
        .iter()
        .rev()
        .find(|s| p.parts.iter().filter(|x| x.msn == s.msn).count() == 5)
        .unwrap();
    let mut joined = Vec::new();
    for part in p.parts.iter().filter(|x| x.msn == seg.msn) {
        joined.extend(
            gw.get_bytes(&resolve(&url(&gw, "360p"), &part.uri))
                .await
                .unwrap(),
        );
    }
    let whole = gw
        .get_bytes(&resolve(&url(&gw, "360p"), &seg.uri))
        .await
        .unwrap();
    assert_eq!(joined, whole);

    // 6. 400s: _HLS_part without _HLS_msn; too far ahead (msn, parts).
    let base = url(&gw, "360p");
    let (_, p, _) = get_pl(&gw, &base).await;
    let lm = p.last_msn();
    for q in [
        "?_HLS_part=1".to_string(),
        format!("?_HLS_msn={}", lm + 3),
        format!("?_HLS_msn={}&_HLS_part=12", lm + 2),
        "?_HLS_msn=abc".to_string(),
    ] {
        let t = Instant::now();
        let r = gw.http.get(format!("{base}{q}")).send().await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "{q} must not block"
        );
    }

    // 7. Delta update: EXT-X-SKIP replaces the old segments; the rest is the full playlist.
    let (_, full, _) = get_pl(&gw, &base).await;
    let (code, delta, _) = get_pl(&gw, &format!("{base}?_HLS_skip=YES")).await;
    assert_eq!(code, 200);
    assert!(
        full.segments.len() >= 8,
        "window must exceed CAN-SKIP-UNTIL: {}",
        full.segments.len()
    );
    assert!(delta.skipped > 0, "delta skipped nothing");
    assert_eq!(delta.version, 9, "EXT-X-SKIP needs version 9");
    assert_eq!(delta.media_sequence, full.media_sequence);
    let by_msn: BTreeMap<u64, &str> = full
        .segments
        .iter()
        .map(|s| (s.msn, s.uri.as_str()))
        .collect();
    for s in &delta.segments {
        if let Some(u) = by_msn.get(&s.msn) {
            assert_eq!(*u, s.uri, "delta msn {} differs", s.msn);
        }
    }
    let first_kept = delta.segments.first().unwrap().msn;
    assert_eq!(first_kept, full.media_sequence + delta.skipped);
    // Skipped segments end at least CAN-SKIP-UNTIL before the end.
    let total: f64 = full.segments.iter().map(|s| s.duration).sum::<f64>();
    let skipped: f64 = full
        .segments
        .iter()
        .take(delta.skipped as usize)
        .map(|s| s.duration)
        .sum();
    assert!(
        total - skipped >= 6.0 - 1.5,
        "skipped too much: {skipped} of {total}"
    );

    // 8. The publisher stops sending media: the playlists keep their cadence on the clock
    //    (repeated frames, then EXT-X-GAP: tests/timeline.rs), so a blocking request for
    //    the next segment is answered within a segment or two, not after 3 × target
    //    duration. (Until the stall fix this step asserted the 503 that a request then got
    //    after 3 × target duration; that answer, for a request nothing satisfies, is
    //    covered by src/origin/tests.rs with paused time.)
    publisher.pause_media(true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (_, p, _) = get_pl(&gw, &base).await;
    let t = Instant::now();
    let r = gw
        .http
        .get(format!("{base}?_HLS_msn={}", p.last_msn() + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let el = t.elapsed();
    assert!(el < Duration::from_millis(2900), "answered after {el:?}");
    publisher.pause_media(false);

    // 9. After ENDLIST the directives are ignored.
    assert_eq!(publisher.stop().await.unwrap(), 200);
    let t = Instant::now();
    let (code, p, _) = get_pl(&gw, &format!("{base}?_HLS_msn=99999&_HLS_part=3")).await;
    assert_eq!(code, 200);
    assert!(p.ended && p.hints.is_empty());
    assert!(t.elapsed() < Duration::from_millis(200));
    gw.shutdown().await;
}
