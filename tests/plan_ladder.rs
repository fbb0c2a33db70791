//! `whipcast plan-ladder`, which `pipelines/*.sh` (and so the CPU benchmark's bare
//! gst-launch-1.0 baseline) use to build their ladder: the binary prints exactly the rungs
//! the library plans, for the embedded ladder and for a ladder file.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn plan_ladder(config: Option<&std::path::Path>, args: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_whipcast"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.arg("plan-ladder").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn library(ladder: &whipcast::media::Ladder, w: u32, h: u32, hint: Option<u32>) -> Vec<String> {
    ladder
        .plan(w, h, hint)
        .iter()
        .map(|r| format!("{} {} {} {}", r.name, r.width, r.height, r.bitrate_kbps))
        .collect()
}

#[test]
fn prints_what_the_library_plans() {
    let embedded = whipcast::Config::parse("", "test")
        .unwrap()
        .media
        .resolve_ladder()
        .unwrap();
    for (w, h, hint) in [
        (1280, 720, None),
        (640, 360, None),
        (640, 360, Some(0)),
        (960, 540, Some(1080)),
        (320, 180, Some(0)),
    ] {
        let mut args = vec![format!("--width={w}"), format!("--height={h}")];
        if let Some(n) = hint {
            args.push(format!("--hint={n}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let printed = plan_ladder(None, &args);
        assert!(!printed.is_empty());
        assert_eq!(
            printed,
            library(&embedded, w, h, hint),
            "{w}x{h} hint {hint:?}"
        );
    }
    assert_eq!(
        plan_ladder(None, &["--width=1280", "--height=720"])[0],
        "720p 1280 720 2800"
    );

    // A ladder file given through the configuration, as common.sh passes LADDER_FILE.
    let dir = std::env::temp_dir().join(format!("whipcast-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ladder = dir.join("ladder.toml");
    std::fs::write(
        &ladder,
        "[video]\nfps = 30\npreset = \"ultrafast\"\nprofile = \"main\"\nplan_height = 0\n\
         [audio]\nbitrate_kbps = 96\nlanguage = \"und\"\n\
         [[rungs]]\nname = \"hi\"\nheight = 400\nbitrate_kbps = 900\n\
         [[rungs]]\nname = \"lo\"\nheight = 200\nbitrate_kbps = 300\n",
    )
    .unwrap();
    let config = dir.join("whipcast.toml");
    std::fs::write(
        &config,
        format!("[media]\nladder_file = \"{}\"\n", ladder.display()),
    )
    .unwrap();
    let printed = plan_ladder(Some(&config), &["--width=800", "--height=400"]);
    assert_eq!(printed, ["hi 800 400 900", "lo 400 200 300"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
