//! Process-wide counters: what `/metrics` reports beyond the live streams' own figures.
//!
//! A stream's figures (`/api/streams`) go when the stream expires; an operator's alert on
//! "recordings failed" or "uploads dropped" must not. So every event that an operator
//! counts is added here as well, by the module where it happens, and stays for the life
//! of the process. Plain atomics: the writers are the hot paths (segment publication,
//! uploads), the reader is a scrape every few seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// HTTP statuses a publish attempt can be refused with ([`crate::ingest::IngestError`]).
pub const REFUSAL_STATUSES: [u16; 10] = [400, 401, 403, 404, 409, 413, 415, 422, 500, 503];

/// A kind of output ([`crate::output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Files on the local disk (`[record]`).
    Record,
    /// An S3-compatible bucket (`[s3]`).
    S3,
}

impl OutputKind {
    /// Every kind, in the order `/metrics` lists them.
    pub const ALL: [OutputKind; 2] = [OutputKind::Record, OutputKind::S3];

    /// The name in `/metrics` labels, `/api/streams` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputKind::Record => "record",
            OutputKind::S3 => "s3",
        }
    }
}

impl std::fmt::Display for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of one output kind.
#[derive(Default, Debug)]
pub struct OutputCounters {
    /// Objects written (files renamed into place, uploads acknowledged).
    pub objects: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// Failed upload attempts that were retried.
    pub retries: AtomicU64,
    /// Objects given up on.
    pub dropped: AtomicU64,
    /// Outputs that stopped on an error (the stream went on).
    pub failures: AtomicU64,
}

/// The counters; see [`Metrics`].
#[derive(Default, Debug)]
pub struct Counters {
    /// Broadcasts started over WHIP.
    pub publishes_whip: AtomicU64,
    /// Broadcasts started over the WebSocket channel.
    pub publishes_ws: AtomicU64,
    /// Publish attempts refused, by status (index into [`REFUSAL_STATUSES`]).
    refusals: [AtomicU64; REFUSAL_STATUSES.len()],
    /// Segments dropped early to stay within `hls.stream_memory_mib`.
    pub segments_trimmed: AtomicU64,
    /// Segments moved to disk to stay within it.
    pub segments_spilled: AtomicU64,
    /// Blocking playlist / preload-hint requests answered 503 after 3 × target duration.
    pub blocking_timeouts: AtomicU64,
    /// Blocking requests refused at once: `hls.max_blocking_requests` were parked.
    pub blocking_refused: AtomicU64,
    /// Per output kind (index: the [`OutputKind`] discriminant).
    outputs: [OutputCounters; OutputKind::ALL.len()],
}

impl Counters {
    /// Counts a refused publish attempt.
    pub fn refused(&self, status: u16) {
        // An unlisted status counts as 500: the mapping in `IngestError::status` and the
        // list above are kept together, so this is a bug guard, not a path.
        let i = REFUSAL_STATUSES
            .iter()
            .position(|s| *s == status)
            .or_else(|| REFUSAL_STATUSES.iter().position(|s| *s == 500))
            .unwrap_or(0);
        self.refusals[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals with `status` so far.
    pub fn refusals(&self, status: u16) -> u64 {
        REFUSAL_STATUSES
            .iter()
            .position(|s| *s == status)
            .map_or(0, |i| self.refusals[i].load(Ordering::Relaxed))
    }

    /// The counters of output kind `kind`.
    pub fn output(&self, kind: OutputKind) -> &OutputCounters {
        &self.outputs[kind as usize]
    }
}

/// Shared handle to the process's counters; cheap to clone.
#[derive(Clone, Default, Debug)]
pub struct Metrics(Arc<Counters>);

impl std::ops::Deref for Metrics {
    type Target = Counters;
    fn deref(&self) -> &Counters {
        &self.0
    }
}

/// Adds one to a counter.
pub fn inc(c: &AtomicU64) {
    add(c, 1);
}

/// Adds `n` to a counter.
pub fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_by_status_and_outputs_by_kind() {
        let m = Metrics::default();
        m.refused(409);
        m.refused(409);
        m.refused(401);
        m.refused(418); // not a status ingest answers: counted as 500
        assert_eq!(m.refusals(409), 2);
        assert_eq!(m.refusals(401), 1);
        assert_eq!(m.refusals(500), 1);
        assert_eq!(m.refusals(418), 0);
        inc(&m.output(OutputKind::S3).dropped);
        add(&m.output(OutputKind::Record).bytes, 10);
        assert_eq!(get(&m.output(OutputKind::S3).dropped), 1);
        assert_eq!(get(&m.output(OutputKind::Record).bytes), 10);
        assert_eq!(get(&m.output(OutputKind::Record).dropped), 0);
        // Clones share the counters.
        let c = m.clone();
        inc(&c.publishes_whip);
        assert_eq!(get(&m.publishes_whip), 1);
    }
}
