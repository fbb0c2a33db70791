//! A whipcast process for the tests that need one of their own: a signal, a descriptor
//! limit (`prlimit`), or its log output.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::get_from;

/// A whipcast process (the release or debug binary cargo built for the tests).
pub struct Process {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    _dir: tempdir::Dir,
}

pub mod tempdir {
    /// A directory under the system's temp dir, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!(
                "whipcast-{tag}-{}-{}",
                std::process::id(),
                rand_suffix()
            ));
            std::fs::create_dir_all(&p).unwrap();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    fn rand_suffix() -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    }
}

/// Starts the binary with `config` under `wrapper` (e.g. `prlimit --nofile=…`), on a free
/// loopback port, and waits for `/healthz`. Its stderr goes to `log` when given.
pub async fn spawn(config: &str, wrapper: &[&str], log: Option<&std::path::Path>) -> Process {
    let dir = tempdir::Dir::new("limits");
    let cfg = dir.0.join("whipcast.toml");
    std::fs::write(&cfg, config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let bin = env!("CARGO_BIN_EXE_whipcast");
    let mut argv: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    argv.extend([
        bin.to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--listen".into(),
        addr.to_string(),
    ]);
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("WHIPCAST_LOG", "whipcast=info")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    match log {
        Some(p) => cmd.stderr(std::fs::File::create(p).unwrap()),
        None => cmd.stderr(Stdio::inherit()),
    };
    let child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = get_from("127.0.0.1", addr, "/healthz").await
            && r.starts_with("HTTP/1.1 200")
        {
            return Process {
                child,
                addr,
                _dir: dir,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("whipcast ({argv:?}) did not come up");
}
