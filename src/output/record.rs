//! The recording writer: one thread per recorded broadcast, writing each object atomically
//! (temporary file, `fsync`, rename), so a crash at any moment leaves complete files and
//! playlists that list only complete files. The first error stops the recording (one log
//! line, state `failed` in `/api/streams`); the live stream never notices.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{error, info, info_span};

use super::{Object, OutputStatus, WriterGuard};
use crate::StreamKey;

/// Starts the writer thread for `root` (`<directory>/<stream>/<epoch>`).
pub fn spawn(
    root: PathBuf,
    rx: mpsc::Receiver<Object>,
    status: &OutputStatus,
    stream: &StreamKey,
    epoch: &str,
    guard: WriterGuard,
) {
    let span = info_span!("record", stream = %stream, epoch = %epoch);
    let name = format!("rec-{stream}");
    let thread_status = status.clone();
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _g = span.enter();
        run(&root, rx, &thread_status);
        drop(guard);
    });
    if let Err(e) = spawned {
        let why = format!("cannot start the recording thread: {e}");
        if status.fail(why.clone()) {
            error!(stream = %stream, "{why}");
        }
    }
}

fn run(root: &Path, mut rx: mpsc::Receiver<Object>, status: &OutputStatus) {
    // Directories are made with the first file: a publisher that never sends media leaves
    // nothing behind.
    let mut first = true;
    while let Some(obj) = rx.blocking_recv() {
        if std::mem::take(&mut first) {
            info!(dir = %root.display(), "recording");
        }
        let path = root.join(&obj.path);
        match write_atomic(&path, &obj.body) {
            Ok(()) => status.wrote(obj.body.len()),
            Err(e) => {
                stop(status, &path, &e);
                // Dropping the receiver tells the broadcast side to stop sending.
                return;
            }
        }
    }
    status.finish();
    let s = status.snapshot();
    info!(dir = %root.display(), files = s.objects, bytes = s.bytes, "recording complete");
}

fn stop(status: &OutputStatus, path: &Path, e: &std::io::Error) {
    let why = format!("cannot write {}: {e}", path.display());
    if status.fail(why.clone()) {
        error!("recording stopped, the live stream goes on: {why}");
    }
}

/// Writes `data` to `path` so that `path` is either absent, the old content or the new
/// content, never a part: write a temporary file beside it, flush it to disk, rename,
/// flush the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("object path has no directory"))?;
    fs::create_dir_all(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("object path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", file_name.to_string_lossy()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        fs::rename(&tmp, path)?;
        // The rename lives in the directory: sync it too, so that after a power loss a
        // playlist never survives without the segments renamed into place before it. Not
        // an error when it fails: the file is in place, and some filesystems cannot sync
        // a directory (EINVAL); stopping the recording for that would lose more.
        let _ = File::open(dir).and_then(|d| d.sync_all());
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("whipcast-rec-{:016x}", rand::random::<u64>()));
        fs::create_dir_all(&d).expect("tempdir");
        d
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_leaves_no_temp() {
        let d = tempdir();
        let p = d.join("360p/index.m3u8");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        let names: Vec<String> = fs::read_dir(d.join("360p"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["index.m3u8"]);
        fs::remove_dir_all(&d).expect("cleanup");
    }

    #[test]
    fn write_into_a_file_fails() {
        let d = tempdir();
        fs::write(d.join("blocker"), b"x").expect("file");
        let err = write_atomic(&d.join("blocker/a/b.m4s"), b"x").expect_err("not a directory");
        assert!(!err.to_string().is_empty());
        fs::remove_dir_all(&d).expect("cleanup");
    }
}
