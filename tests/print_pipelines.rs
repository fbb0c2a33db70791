//! `whipcast print-pipelines`, which `pipelines/*.sh` (and so the CPU benchmark's bare
//! gst-launch-1.0 baseline) run: the printed text is whipcast's pipeline with udpsrc and
//! filesink standing in for its appsrcs and appsinks, and gst-launch-1.0 runs it: two
//! seconds of H.264 and Opus RTP in, a fragmented MP4 per rendition out.
#![allow(clippy::unwrap_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LADDER: &str = "[video]\nfps = 30\npreset = \"ultrafast\"\nprofile = \"main\"\n\
    plan_height = 0\n[audio]\nbitrate_kbps = 96\nlanguage = \"und\"\naac_coder = \"fast\"\n\
    [[rungs]]\nname = \"lo\"\nheight = 180\nbitrate_kbps = 300\n";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Four distinct loopback UDP ports nobody uses (bound together, then released).
fn free_ports() -> [u16; 4] {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect();
    ports.try_into().unwrap()
}

/// gst-launch-1.0 has no cmafmux (Debian 12 has none); cargo builds gst-plugin-fmp4 as a
/// plugin next to whipcast. GStreamer derives the entry point from the file name, so it is
/// linked as `libgstfmp4.so` into a directory for GST_PLUGIN_PATH (as pipelines/common.sh).
/// livesync (gst-plugin-livesync) likewise, as `libgstlivesync.so` in the same directory.
fn cmafmux_plugin_dir(dir: &Path) -> PathBuf {
    let deps = Path::new(env!("CARGO_BIN_EXE_whipcast"))
        .parent()
        .unwrap()
        .join("deps");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for plugin in ["libgstfmp4", "libgstlivesync"] {
        let so = std::fs::read_dir(&deps)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&format!("{plugin}-")) && name.ends_with(".so")
            })
            .max_by_key(|p| p.metadata().unwrap().modified().unwrap())
            .unwrap_or_else(|| panic!("no {plugin}-*.so in {}", deps.display()));
        std::os::unix::fs::symlink(so, plugins.join(format!("{plugin}.so"))).unwrap();
    }
    plugins
}

fn wait_for(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Top-level ISO BMFF boxes (ISO/IEC 14496-12 §4.2).
fn boxes(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&data[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

#[test]
fn the_printed_pipeline_runs_in_gst_launch() {
    let dir = Dir(std::env::temp_dir().join(format!("whipcast-print-{}", std::process::id())));
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(dir.0.join("ladder.toml"), LADDER).unwrap();
    let config = dir.0.join("whipcast.toml");
    std::fs::write(
        &config,
        format!(
            "[media]\nladder_file = \"{}\"\n[hls]\nsegment_duration = \"1s\"\n\
             part_duration = \"250ms\"\n",
            dir.0.join("ladder.toml").display()
        ),
    )
    .unwrap();
    let [video, video_rtcp, audio, audio_rtcp] = free_ports();
    let printed = Command::new(env!("CARGO_BIN_EXE_whipcast"))
        .arg("--config")
        .arg(&config)
        .args(["print-pipelines", "--width=320", "--height=180"])
        .arg(format!("--video-port={video}"))
        .arg(format!("--video-rtcp-port={video_rtcp}"))
        .arg(format!("--audio-port={audio}"))
        .arg(format!("--audio-rtcp-port={audio_rtcp}"))
        .arg("--out-dir")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let text = String::from_utf8(printed.stdout).unwrap();
    let chains: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();

    // The builders' elements and settings, the stand-ins, and nothing gst-launch cannot run.
    let all = chains.join(" ");
    for expected in [
        format!("udpsrc name=video_src address=127.0.0.1 port={video} "),
        format!("udpsrc name=video_rtcp address=127.0.0.1 port={video_rtcp} "),
        "! video_jitter.sink_rtcp".to_string(),
        "rtpjitterbuffer name=video_jitter latency=150 do-lost=true".into(),
        "video/x-raw,format=I420,width=320,height=180,pixel-aspect-ratio=1/1".into(),
        "x264enc name=lo_x264enc bitrate=300 key-int-max=30 option-string=scenecut=0 \
         speed-preset=ultrafast tune=zerolatency ! video/x-h264,profile=main"
            .into(),
        // A video muxer's fragment and chunk end 11 ms early (src/media/mux.rs VIDEO_EARLY).
        "cmafmux name=lo_mux fragment-duration=989000000 chunk-duration=239000000 !".into(),
        // The ladder's `aac_coder` reaches the encoder (and so the bare baseline).
        "avenc_aac name=audio_aacenc perfect-timestamp=true aac-coder=fast bitrate=96000".into(),
        format!("filesink name=lo_sink location={}/lo.mp4", out.display()),
    ] {
        assert!(all.contains(&expected), "no {expected:?} in\n{text}");
    }
    assert!(
        !all.contains("appsrc") && !all.contains("appsink"),
        "{text}"
    );
    assert!(chains[0].starts_with("udpsrc name=video_src "), "{text}");
    assert!(
        chains
            .iter()
            .any(|c| c.starts_with("video_tee. ! queue name=lo_queue ")),
        "{text}"
    );

    let plugins = cmafmux_plugin_dir(&dir.0);
    let log = std::fs::File::create(dir.0.join("receiver.log")).unwrap();
    let mut receiver = Command::new("gst-launch-1.0")
        .arg("-e")
        .args(all.split_whitespace())
        .env("GST_PLUGIN_PATH", &plugins)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let receiver_log = || std::fs::read_to_string(dir.0.join("receiver.log")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !receiver_log().contains("Setting pipeline to PLAYING") {
        assert!(
            receiver.try_wait().unwrap().is_none(),
            "receiver exited: {}",
            receiver_log()
        );
        assert!(
            Instant::now() < deadline,
            "receiver not playing: {}",
            receiver_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Two seconds of live test media, as RTP to the stand-ins' ports.
    let sender = format!(
        "videotestsrc is-live=true pattern=smpte horizontal-speed=2 num-buffers=60 \
         ! video/x-raw,format=I420,width=320,height=180,framerate=30/1 \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 bframes=0 \
         ! video/x-h264,profile=constrained-baseline \
         ! rtph264pay pt=102 mtu=1200 config-interval=-1 \
         ! udpsink host=127.0.0.1 port={video} sync=false \
         audiotestsrc is-live=true num-buffers=94 ! audio/x-raw,rate=48000,channels=2 \
         ! opusenc ! rtpopuspay pt=111 ! udpsink host=127.0.0.1 port={audio} sync=false"
    );
    let mut sender = Command::new("gst-launch-1.0")
        .args(sender.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(&mut sender, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "sender: {status:?}");

    // Let the jitter buffers (150 ms) and encoders drain, then end it: SIGINT is EOS (-e).
    std::thread::sleep(Duration::from_secs(1));
    let kill = Command::new("kill")
        .args(["-INT", &receiver.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_for(&mut receiver, Duration::from_secs(15));
    if status.is_none() {
        let _ = receiver.kill();
    }
    assert!(
        status.is_some_and(|s| s.success()),
        "receiver: {status:?}\n{}",
        receiver_log()
    );

    // A fragmented MP4 per rendition: init segment, then 1 s fragments of 250 ms chunks.
    for (rendition, sample_entry) in [("lo", "avc1"), ("audio", "mp4a")] {
        let data = std::fs::read(out.join(format!("{rendition}.mp4"))).unwrap();
        let b = boxes(&data);
        assert_eq!(b[..2], ["ftyp", "moov"], "{rendition}: {b:?}");
        assert!(
            data.windows(4).any(|w| w == sample_entry.as_bytes()),
            "{rendition}: no {sample_entry}"
        );
        let styp = b.iter().filter(|x| *x == "styp").count();
        let moof = b.iter().filter(|x| *x == "moof").count();
        assert!(styp >= 2 && moof >= 6, "{rendition}: {b:?}");
    }
}
