//! Outputs beside the live origin: a recording to disk (live-to-VOD) and an upload to
//! S3-compatible object storage.
//!
//! The broadcast task feeds every init section and CMAF chunk to its [`BroadcastOutputs`];
//! a pure [`package::Packager`] per output turns them into whole objects (segments, then
//! the playlists that list them) and hands them over a bounded channel with `try_send` to
//! the output's writer: a dedicated thread for the disk ([`record`]), a task doing HTTP for
//! the store ([`s3`]). The live path never waits on either: a full channel or a failing
//! writer stops that output, with one log line and its state in `/api/streams`.
//!
//! This file holds the configured [`Outputs`] and each broadcast's [`BroadcastOutputs`],
//! which feed the packagers and queue their objects. The rest, one concern per file:
//! `package` (the pure packager), `object` (what it hands to the writers), `status`
//! (each output's state for the API and the metrics), `record` and `s3` (the writers).

pub mod object;
pub mod package;
pub mod record;
pub mod s3;
mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::error;

use crate::StreamKey;
use crate::auth::Hooks;
use crate::config::{HlsConfig, RecordConfig, S3Config};
use crate::media::RenditionInfo;
use crate::metrics::{Metrics, OutputKind};
pub use object::{Object, ObjectKind};
pub use package::{ChunkIn, Listing, Packager};
pub use status::{OutputSnapshot, OutputStatus, WriterGuard};

/// Objects waiting for the disk writer. Objects come a few per segment (segment, playlist,
/// sometimes the master), so this is tens of seconds of media; when full the disk is far
/// slower than the stream and the recording stops (drop and fail, never wait).
pub const RECORD_QUEUE: usize = 128;

/// Objects waiting for the uploader (which holds as many again while it retries). Sized to
/// ride out a store outage of a minute or more at the default ladder; when full the upload
/// stops (drop and fail, never wait).
pub const S3_QUEUE: usize = 1024;

/// Why the outputs could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// `s3.endpoint` / `s3.bucket` / `s3.region` do not make a bucket URL.
    #[error("s3: bad bucket ({0})")]
    Bucket(String),
    /// Neither `s3.access_key`/`s3.secret_key` nor `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    #[error(
        "s3: no credentials: set s3.access_key and s3.secret_key, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials,
    /// The HTTP client could not be built.
    #[error("s3: http client: {0}")]
    Client(String),
}

/// The configured outputs; cheap to clone. [`Outputs::start`] makes a broadcast's.
#[derive(Clone)]
pub struct Outputs {
    record: Arc<RecordConfig>,
    s3: Option<Arc<s3::Store>>,
    target_duration: u64,
    window: usize,
    writers: Arc<watch::Sender<usize>>,
    metrics: Metrics,
    /// The outputs of each stream's latest broadcast, for `/api/streams`; a stream's entry
    /// goes when the store forgets the stream ([`Outputs::forget`]).
    statuses: Arc<Mutex<HashMap<String, Vec<OutputStatus>>>>,
    /// Where `recording_finished` goes (nowhere without `[auth.webhooks]`).
    hooks: Hooks,
}

impl Outputs {
    /// Outputs as configured (the S3 client is built here, so a bad `[s3]` fails at start).
    pub fn new(
        record: &RecordConfig,
        s3: &S3Config,
        hls: &HlsConfig,
        metrics: Metrics,
    ) -> Result<Self, OutputError> {
        Ok(Self {
            record: Arc::new(record.clone()),
            s3: if s3.enabled {
                Some(Arc::new(s3::Store::new(
                    s3,
                    crate::hls::target_duration(hls.segment_duration),
                )?))
            } else {
                None
            },
            target_duration: crate::hls::target_duration(hls.segment_duration),
            window: hls.window_segments,
            writers: Arc::new(watch::Sender::new(0)),
            hooks: Hooks::disabled(metrics.auth.clone()),
            metrics,
            statuses: Arc::default(),
        })
    }

    /// Waits (at most `limit`) until every writer has finished: on shutdown, after every
    /// broadcast ended, so recordings get their VOD playlists and the bucket its ENDLIST.
    /// Returns whether all finished.
    pub async fn drain(&self, limit: std::time::Duration) -> bool {
        let mut rx = self.writers.subscribe();
        let all_done = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0)).await;
        matches!(all_done, Ok(Ok(_)))
    }

    /// Whether a broadcast is recorded: always with `record.enabled`, on the publisher's
    /// request (`?record=1`) with `record.allow_request`.
    pub fn records(&self, requested: bool) -> bool {
        self.record.enabled || (requested && self.record.allow_request)
    }

    /// Sends `recording_finished` webhooks through `hooks`.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Starts the outputs of one broadcast (spawns their writers); `record`: whether it
    /// is recorded (see [`Outputs::records`]).
    pub fn start(
        &self,
        stream: &StreamKey,
        epoch: &str,
        discontinuity_sequence: u64,
        record: bool,
    ) -> BroadcastOutputs {
        let mut sinks = Vec::new();
        if record {
            let root = std::path::Path::new(&self.record.directory)
                .join(stream.as_str())
                .join(epoch);
            let status = OutputStatus::new(
                OutputKind::Record,
                root.display().to_string(),
                &self.metrics,
            );
            let (tx, rx) = mpsc::channel(RECORD_QUEUE);
            record::spawn(
                root,
                rx,
                &status,
                stream,
                epoch,
                WriterGuard::new(&self.writers),
                self.hooks.clone(),
            );
            sinks.push(Sink {
                // A recording is one broadcast: its own numbering has no discontinuity.
                packager: Packager::new(Listing::Everything, epoch, self.target_duration, 0),
                tx: Some(tx),
                status,
            });
        }
        if let Some(store) = &self.s3 {
            let status = OutputStatus::new(OutputKind::S3, store.location(stream), &self.metrics);
            let (tx, rx) = mpsc::channel(S3_QUEUE);
            s3::spawn(
                store.clone(),
                stream,
                epoch,
                rx,
                status.clone(),
                WriterGuard::new(&self.writers),
            );
            sinks.push(Sink {
                packager: Packager::new(
                    Listing::Window(self.window),
                    epoch,
                    self.target_duration,
                    discontinuity_sequence,
                ),
                tx: Some(tx),
                status,
            });
        }
        let statuses = sinks.iter().map(|s| s.status.clone()).collect();
        self.statuses_lock()
            .insert(stream.as_str().to_string(), statuses);
        BroadcastOutputs { sinks }
    }

    fn statuses_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<OutputStatus>>> {
        // Plain data: still consistent after a panic elsewhere.
        self.statuses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outputs of `stream`'s latest broadcast, with their failures.
    pub fn snapshots(&self, stream: &str) -> Vec<OutputSnapshot> {
        self.statuses_lock()
            .get(stream)
            .map(|v| v.iter().map(OutputStatus::snapshot).collect())
            .unwrap_or_default()
    }

    /// The store forgot `stream`: so does the API.
    pub fn forget(&self, stream: &str) {
        self.statuses_lock().remove(stream);
    }
}

struct Sink {
    packager: Packager,
    /// `None` once the output stopped.
    tx: Option<mpsc::Sender<Object>>,
    status: OutputStatus,
}

impl Sink {
    fn send(&mut self, objects: Vec<Object>) {
        for obj in objects {
            let Some(tx) = &self.tx else { return };
            match tx.try_send(obj) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let snap = self.status.snapshot();
                    let why = format!("{} queue full: the writer cannot keep up", snap.kind);
                    if self.status.fail(why.clone()) {
                        error!(output = %snap.kind, location = %snap.location, "{why}; output stopped, the live stream goes on");
                    }
                    self.tx = None;
                }
                // The writer stopped (it logged why).
                Err(mpsc::error::TrySendError::Closed(_)) => self.tx = None,
            }
        }
    }
}

/// One broadcast's outputs, owned by its broadcast task. Every method returns at once.
pub struct BroadcastOutputs {
    sinks: Vec<Sink>,
}

impl BroadcastOutputs {
    /// No outputs.
    pub fn none() -> Self {
        Self { sinks: Vec::new() }
    }

    /// Every rendition the broadcast will have (the multivariant playlist waits for all).
    pub fn expect(&mut self, renditions: &[String]) {
        for s in &mut self.sinks {
            s.packager.expect(renditions);
        }
    }

    /// A rendition's init section.
    pub fn init(&mut self, info: &RenditionInfo, data: &Bytes) {
        for s in self.sinks.iter_mut().filter(|s| s.tx.is_some()) {
            let objs = s.packager.init(info.clone(), data.clone());
            s.send(objs);
        }
    }

    /// A chunk the store accepted as part of segment `seq`.
    pub fn chunk(
        &mut self,
        rendition: &str,
        seq: u64,
        starts_segment: bool,
        duration: std::time::Duration,
        wallclock: SystemTime,
        data: &Bytes,
    ) {
        let chunk = ChunkIn {
            seq,
            starts_segment,
            duration,
            wallclock,
            data: data.clone(),
        };
        for s in self.sinks.iter_mut().filter(|s| s.tx.is_some()) {
            let objs = s.packager.chunk(rendition, &chunk);
            s.send(objs);
        }
    }

    /// The broadcast ended: final segments and playlists, then the writers finish.
    pub fn end(&mut self) {
        for s in &mut self.sinks {
            if s.tx.is_some() {
                let objs = s.packager.end();
                s.send(objs);
            }
            s.tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::status::OutputState;
    use super::*;

    #[test]
    fn who_is_recorded() {
        let outputs = |enabled, allow_request| {
            let record = RecordConfig {
                enabled,
                allow_request,
                ..RecordConfig::default()
            };
            Outputs::new(
                &record,
                &S3Config::default(),
                &HlsConfig::default(),
                Metrics::default(),
            )
            .expect("outputs")
        };
        assert!(!outputs(false, false).records(true));
        assert!(outputs(false, true).records(true));
        assert!(!outputs(false, true).records(false));
        assert!(outputs(true, false).records(false));
    }

    #[test]
    fn a_full_queue_fails_the_output_once_and_never_waits() {
        let status = OutputStatus::new(OutputKind::Record, "/x".into(), &Metrics::default());
        let (tx, _rx) = mpsc::channel(1);
        let mut sink = Sink {
            packager: Packager::new(Listing::Everything, "e", 1, 0),
            tx: Some(tx),
            status: status.clone(),
        };
        let obj = |p: &str| Object {
            path: p.into(),
            kind: ObjectKind::Segment,
            body: Bytes::new(),
        };
        sink.send(vec![obj("a"), obj("b"), obj("c")]);
        assert!(sink.tx.is_none());
        let s = status.snapshot();
        assert_eq!(s.state, OutputState::Failed);
        assert!(s.error.is_some_and(|e| e.contains("queue full")));
    }
}
