//! The recording writer: one thread per recorded broadcast, writing each object atomically
//! (temporary file, `fsync`, rename), so a crash at any moment leaves complete files and
//! playlists that list only complete files. The first error stops the recording (one log
//! line, state `failed` in `/api/streams`); the live stream never notices.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tracing::{error, info, info_span};

use super::{Object, OutputStatus, WriterGuard};
use crate::StreamKey;
use crate::atomic_file::{self, Durability};
use crate::auth::{Hooks, RecordingDone};

/// Starts the writer thread for `root` (`<directory>/<stream>/<epoch>`).
pub fn spawn(
    root: PathBuf,
    rx: mpsc::Receiver<Object>,
    status: &OutputStatus,
    stream: &StreamKey,
    epoch: &str,
    guard: WriterGuard,
    hooks: Hooks,
) {
    let span = info_span!("record", stream = %stream, epoch = %epoch);
    let name = format!("rec-{stream}");
    let thread_status = status.clone();
    let (stream_name, epoch_name) = (stream.to_string(), epoch.to_string());
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let _g = span.enter();
        run(&root, rx, &thread_status);
        finished(&hooks, &stream_name, &epoch_name, &root, &thread_status);
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
        match atomic_file::write(&path, &obj.body, Durability::Synced) {
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

/// The `recording_finished` webhook, once the writer is done (a broadcast that never sent
/// media, and so wrote nothing, has no recording to report).
fn finished(hooks: &Hooks, stream: &str, epoch: &str, root: &Path, status: &OutputStatus) {
    let s = status.snapshot();
    if s.objects == 0 && s.error.is_none() {
        return;
    }
    let directory = root.display().to_string();
    hooks.recording_finished(&RecordingDone {
        stream,
        epoch,
        directory: &directory,
        files: s.objects,
        bytes: s.bytes,
        error: s.error.as_deref(),
    });
}

fn stop(status: &OutputStatus, path: &Path, e: &std::io::Error) {
    let why = format!("cannot write {}: {e}", path.display());
    if status.fail(why.clone()) {
        error!("recording stopped, the live stream goes on: {why}");
    }
}
