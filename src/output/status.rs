//! The status of one output of one broadcast: the snapshot `/api/streams` shows, written
//! by the output's writer and counted process-wide in the metrics; and the guard that
//! counts running writers so shutdown can wait for their last playlists. Each update
//! takes a `std::sync::Mutex` for a few field writes and never across `.await`.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use crate::metrics::{Metrics, OutputCounters, OutputKind};

/// State of one output of one broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputState {
    /// Writing as the stream goes.
    Active,
    /// Stopped by an error (see `error`); the live stream goes on without it.
    Failed,
    /// Everything written, playlists final.
    Finished,
}

/// One output as `/api/streams` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct OutputSnapshot {
    /// `record` or `s3`.
    pub kind: OutputKind,
    /// Directory or `s3://bucket/prefix/stream/`.
    pub location: String,
    /// Current state.
    pub state: OutputState,
    /// Objects written (files renamed into place, or uploads acknowledged).
    pub objects: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Upload attempts that failed and were retried.
    pub retries: u64,
    /// Objects given up on (retry budget exhausted).
    pub dropped: u64,
    /// The error that stopped (or last troubled) the output.
    pub error: Option<String>,
}

/// Shared, cheap handle to an output's status: written by its writer, read by the API.
#[derive(Debug, Clone)]
pub struct OutputStatus {
    snapshot: Arc<Mutex<OutputSnapshot>>,
    /// Every change is also counted process-wide: the snapshot goes with its stream.
    counters: OutputCounters,
}

impl OutputStatus {
    pub(super) fn new(kind: OutputKind, location: String, metrics: &Metrics) -> Self {
        Self {
            snapshot: Arc::new(Mutex::new(OutputSnapshot {
                kind,
                location,
                state: OutputState::Active,
                objects: 0,
                bytes: 0,
                retries: 0,
                dropped: 0,
                error: None,
            })),
            counters: metrics.output(kind),
        }
    }

    fn update(&self, f: impl FnOnce(&mut OutputSnapshot)) {
        // Plain counters: a poisoned lock still holds consistent data.
        f(&mut self.snapshot.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> OutputSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the output failed; returns false if it already was (log only once).
    pub(super) fn fail(&self, why: String) -> bool {
        let mut first = false;
        self.update(|s| {
            if s.state != OutputState::Failed {
                first = true;
                s.state = OutputState::Failed;
                s.error = Some(why);
            }
        });
        if first {
            self.counters.failures.inc();
        }
        first
    }

    pub(super) fn wrote(&self, bytes: usize) {
        self.update(|s| {
            s.objects += 1;
            s.bytes += bytes as u64;
        });
        self.counters.objects.inc();
        self.counters.bytes.inc_by(bytes as u64);
    }

    /// An upload attempt failed with `why`; it will be retried.
    pub(super) fn retried(&self, why: String) {
        self.update(|s| {
            s.retries += 1;
            s.error = Some(why);
        });
        self.counters.retries.inc();
    }

    /// An object was given up on.
    pub(super) fn dropped(&self) {
        self.update(|s| s.dropped += 1);
        self.counters.dropped.inc();
    }

    pub(super) fn finish(&self) {
        self.update(|s| {
            if s.state == OutputState::Active {
                s.state = OutputState::Finished;
            }
        });
    }
}

/// Counts a running writer (thread or task) until dropped, so shutdown can wait for the
/// final playlists.
pub struct WriterGuard(Arc<watch::Sender<usize>>);

impl WriterGuard {
    pub(super) fn new(count: &Arc<watch::Sender<usize>>) -> Self {
        count.send_modify(|n| *n += 1);
        Self(count.clone())
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}
