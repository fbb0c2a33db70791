//! DVR overflow to disk on a real live stream: past `hls.stream_memory_mib` the oldest
//! segments move to files under `hls.spill_directory`, stay listed, and are served from the
//! file, decodable; the memory held stays near the budget and nothing is trimmed.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::publisher::{Publisher, PublisherOptions};
use common::{TestGateway, probe_rendition, resolve, stream_summary, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dvr_overflow_spills_the_oldest_segments_to_disk_and_serves_them() {
    let dir = std::env::temp_dir().join(format!("whipcast-spill-{:016x}", rand::random::<u64>()));
    let gw = TestGateway::start(test_config(&format!(
        "dvr_window = \"60s\"\nstream_memory_mib = 1\ndvr_overflow = \"disk\"\nspill_directory = {:?}\n",
        dir.display().to_string()
    )))
    .await;
    let publisher =
        Publisher::start(PublisherOptions::whip(&gw.whip_url("dvr")).with_format(640, 360, 30))
            .await
            .unwrap();
    gw.wait_master("dvr", 3, Duration::from_secs(30))
        .await
        .unwrap();

    // The test ladder makes ~1.4 Mbit/s: the 1 MiB budget is passed after ~6 s.
    let deadline = Instant::now() + Duration::from_secs(40);
    let summary = loop {
        let s = stream_summary(&gw, "dvr").await;
        if s["spilled_segments"].as_u64().unwrap() >= 8 {
            break s;
        }
        assert!(Instant::now() < deadline, "nothing spilled: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(summary["trimmed_segments"], 0, "disk mode trims nothing");
    // The budget plus what is being written (a segment or two per rendition).
    let held = summary["memory_bytes"].as_u64().unwrap();
    assert!(held < 2 << 20, "{held} bytes held against a 1 MiB budget");

    let epoch = summary["epoch"].as_str().unwrap().to_string();
    let files: Vec<_> = walk(&dir.join("dvr").join(&epoch));
    assert!(files.len() >= 8, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "m4s"))
    );

    // Every listed segment of every rendition, from the first one on, is served and
    // decodes: the oldest from their files.
    let master_url = gw.master_url("dvr");
    let master = gw
        .wait_master("dvr", 3, Duration::from_secs(5))
        .await
        .unwrap();
    for v in &master.variants {
        let url = resolve(&master_url, &v.uri);
        let pl = gw
            .wait_segments(&url, 8, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(pl.media_sequence, 0, "the DVR window still starts at 0");
        let probes = probe_rendition(&gw, &url, &pl, true).await.unwrap();
        assert_eq!(probes.len(), pl.segments.len());
        for (seq, p) in &probes {
            assert!(p.frames.first().is_some_and(|f| f.1), "segment {seq}");
        }
    }
    // A spilled segment's bytes equal the file's.
    let spilled = files
        .iter()
        .find(|f| {
            f.parent()
                .and_then(|p| p.file_name())
                .is_some_and(|n| n == "360p")
        })
        .unwrap();
    let seq: u64 = spilled
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = gw
        .get_bytes(&gw.url(&format!("/hls/dvr/360p/seg-{epoch}-{seq}.m4s")))
        .await
        .unwrap();
    assert_eq!(body, std::fs::read(spilled).unwrap());

    assert_eq!(publisher.stop().await.unwrap(), 200);
    gw.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
