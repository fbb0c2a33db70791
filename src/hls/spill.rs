//! DVR overflow to disk (`hls.dvr_overflow = "disk"`): one writer thread for the whole
//! store, fed through a bounded channel, so neither the store's lock nor the async runtime
//! ever waits on the disk.
//!
//! The store queues the oldest in-memory segments past the budget ([`Job::Write`]); the
//! thread writes each to a temporary file, renames it into place and reports back, and only
//! then does the store drop the bytes from memory. Files of segments that left the window
//! ([`Job::Delete`]) and directories of streams that went ([`Job::DeleteDir`]) are removed
//! here too. A write error marks the spiller failed: the store then trims instead (one
//! error line), because a broken disk must not cost the live stream its memory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use bytes::Bytes;

use crate::atomic_file::{self, Durability};
use tracing::{error, warn};

/// Jobs waiting for the disk. Each is one segment (or a delete); when full, the store keeps
/// the segment in memory a little longer and tries again on the next publish.
const QUEUE: usize = 64;

/// Work for the writer thread.
#[derive(Debug)]
pub(super) enum Job {
    /// Write `data` to `path`, then report through `done`.
    Write {
        /// Where the store expects it (also the key it reports back with).
        key: SpillKey,
        /// The file.
        path: Arc<PathBuf>,
        /// The segment's bytes.
        data: Bytes,
    },
    /// Remove a spilled segment's file.
    Delete(Arc<PathBuf>),
    /// Remove a stream's broadcast directory.
    DeleteDir(PathBuf),
}

/// Identifies a segment in the store.
#[derive(Debug, Clone)]
pub(super) struct SpillKey {
    pub(super) stream: String,
    pub(super) epoch: String,
    pub(super) rendition: String,
    pub(super) seq: u64,
}

/// The store's side: queue jobs, see whether the disk still works.
#[derive(Debug, Clone)]
pub(super) struct Spiller {
    tx: SyncSender<Job>,
    dir: Arc<PathBuf>,
    failed: Arc<AtomicBool>,
}

/// What the writer reports for one segment.
#[derive(Debug)]
pub(super) enum Written {
    /// The file is in place.
    To(Arc<PathBuf>),
    /// It could not be written (logged once; the spiller is now failed).
    Failed,
}

/// The store's callback for each written segment.
pub(super) type Done = Box<dyn Fn(&SpillKey, Written) -> bool + Send>;

impl Spiller {
    /// Starts the writer thread. `done` is called on it after each write; it returns whether
    /// the store still wanted the file (if not, the thread deletes it).
    pub(super) fn start(dir: PathBuf, done: Done) -> std::io::Result<Spiller> {
        let (tx, rx) = sync_channel(QUEUE);
        let failed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&failed);
        std::thread::Builder::new()
            .name("whipcast-spill".into())
            .spawn(move || run(&rx, &flag, &done))?;
        Ok(Spiller {
            tx,
            dir: Arc::new(dir),
            failed,
        })
    }

    /// The file for a segment.
    pub(super) fn path(&self, key: &SpillKey) -> PathBuf {
        self.stream_dir(&key.stream, &key.epoch)
            .join(&key.rendition)
            .join(format!("{}.m4s", key.seq))
    }

    /// The directory of one broadcast.
    pub(super) fn stream_dir(&self, stream: &str, epoch: &str) -> PathBuf {
        // Stream names and epochs are [A-Za-z0-9_-] (StreamKey, hex), rendition names come
        // from the validated ladder: no path traversal.
        self.dir.join(stream).join(epoch)
    }

    /// Whether writing has failed (the store trims instead).
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Queues a job; `false` if the queue is full (the caller keeps the data in memory).
    pub(super) fn send(&self, job: Job) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                self.failed.store(true, Ordering::Relaxed);
                false
            }
        }
    }
}

fn run(rx: &Receiver<Job>, failed: &AtomicBool, done: &Done) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::Write { key, path, data } => {
                match atomic_file::write(&path, &data, Durability::Cache) {
                    Ok(()) => {
                        if !done(&key, Written::To(Arc::clone(&path))) {
                            remove(&path);
                        }
                    }
                    Err(e) => {
                        if !failed.swap(true, Ordering::Relaxed) {
                            error!(path = %path.display(), error = %e,
                            "DVR spill to disk failed; trimming the oldest segments instead");
                        }
                        done(&key, Written::Failed);
                    }
                }
            }
            Job::Delete(path) => remove(&path),
            Job::DeleteDir(dir) => {
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    warn!(dir = %dir.display(), error = %e, "cannot remove spill directory");
                }
            }
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), error = %e, "cannot remove spilled segment");
    }
}
