//! Process-wide counters, and the registry that `GET /metrics` encodes.
//!
//! A stream's figures (`/api/streams`) go when the stream expires; an operator's alert on
//! "recordings failed" or "uploads dropped" must not. So every event that an operator
//! counts is added here as well, by the module where it happens, and stays for the life
//! of the process. The counters are prometheus-client's (an atomic behind an `Arc`): the
//! writers are the hot paths (segment publication, uploads), the reader is a scrape every
//! few seconds. The live figures of each stream are not kept here; [`Live`] reads them at
//! scrape time. Only this module names `prometheus_client`: the HTTP handler gets text.

mod auth;
mod cluster;
mod http;
mod live;

pub use auth::{AuthAction, AuthCheck, AuthCounters, AuthResult, Delivery, HookEvent};
pub use cluster::ClusterCounters;
pub use http::{ClosedFor, HttpCounters, RefusedBy};
pub use live::{Live, RenditionFigures, StreamFigures};

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use crate::client::Signaling;

/// HTTP statuses a publish attempt can be refused with ([`crate::ingest::IngestError`]).
pub const REFUSAL_STATUSES: [u16; 12] =
    [400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 500, 503];

/// The media type of the exposition (OpenMetrics 1.0, "Overall Structure").
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A kind of output ([`crate::output`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Files on the local disk (`[record]`).
    Record,
    /// An S3-compatible bucket (`[s3]`).
    S3,
}

impl OutputKind {
    /// Every kind.
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

// By hand rather than derived: the derive writes the variant's name (`Record`), and the
// label values are the lowercase names that `/api/streams` and the logs use.
impl EncodeLabelValue for OutputKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

impl EncodeLabelValue for Signaling {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.name())
    }
}

/// `signaling="whip"` or `"websocket"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PublishLabels {
    signaling: Signaling,
}

/// `status="409"`: one of [`REFUSAL_STATUSES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    status: u16,
}

/// `kind="record"` or `"s3"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutputLabels {
    kind: OutputKind,
}

/// The counters of one output kind: handles on its series of the `kind`-labelled
/// families (a clone shares the count).
#[derive(Debug, Clone)]
pub struct OutputCounters {
    /// Objects written (files renamed into place, uploads acknowledged).
    pub objects: Counter,
    /// Bytes written.
    pub bytes: Counter,
    /// Failed upload attempts that were retried.
    pub retries: Counter,
    /// Objects given up on.
    pub dropped: Counter,
    /// Outputs that stopped on an error (the stream went on).
    pub failures: Counter,
}

/// The output families, labelled `kind`.
#[derive(Debug, Default)]
struct OutputFamilies {
    objects: Family<OutputLabels, Counter>,
    bytes: Family<OutputLabels, Counter>,
    retries: Family<OutputLabels, Counter>,
    dropped: Family<OutputLabels, Counter>,
    failures: Family<OutputLabels, Counter>,
}

/// The counters; see [`Metrics`].
#[derive(Debug)]
pub struct Counters {
    /// Broadcasts started, by signalling.
    publishes: Family<PublishLabels, Counter>,
    /// Publish attempts refused, by status.
    refusals: Family<RefusalLabels, Counter>,
    /// Segments dropped early to stay within `hls.stream_memory_mib`.
    pub segments_trimmed: Counter,
    /// Segments moved to disk to stay within it.
    pub segments_spilled: Counter,
    /// Blocking playlist / preload-hint requests answered 503 after 3 × target duration.
    pub blocking_timeouts: Counter,
    /// Blocking requests refused at once: `hls.max_blocking_requests` were parked.
    pub blocking_refused: Counter,
    outputs: OutputFamilies,
    /// The HTTP server's connections.
    pub http: HttpCounters,
    /// Authorization decisions and webhook deliveries.
    pub auth: AuthCounters,
    /// The cluster's figures for this node.
    pub cluster: ClusterCounters,
}

impl Default for Counters {
    fn default() -> Self {
        let c = Counters {
            publishes: Family::default(),
            refusals: Family::default(),
            segments_trimmed: Counter::default(),
            segments_spilled: Counter::default(),
            blocking_timeouts: Counter::default(),
            blocking_refused: Counter::default(),
            outputs: OutputFamilies::default(),
            http: HttpCounters::default(),
            auth: AuthCounters::default(),
            cluster: ClusterCounters::default(),
        };
        // Every series of these closed label sets exists from the start, at 0: a series
        // that appears only with its first event hides that event from rate() and alerts
        // (Prometheus instrumentation practices, "Avoid missing metrics").
        for signaling in [Signaling::Whip, Signaling::WebSocket] {
            c.publishes
                .get_or_create_owned(&PublishLabels { signaling });
        }
        for status in REFUSAL_STATUSES {
            c.refusals.get_or_create_owned(&RefusalLabels { status });
        }
        for kind in OutputKind::ALL {
            c.output(kind);
        }
        c
    }
}

impl Counters {
    /// Counts a broadcast that started.
    pub fn published(&self, signaling: Signaling) {
        self.publishes
            .get_or_create(&PublishLabels { signaling })
            .inc();
    }

    /// Broadcasts started over `signaling` so far.
    pub fn publishes(&self, signaling: Signaling) -> u64 {
        self.publishes
            .get(&PublishLabels { signaling })
            .map_or(0, |c| c.get())
    }

    /// Counts a refused publish attempt.
    pub fn refused(&self, status: u16) {
        // An unlisted status counts as 500: the mapping in `IngestError::status` and the
        // list above are kept together, so this is a bug guard, not a path.
        let status = if REFUSAL_STATUSES.contains(&status) {
            status
        } else {
            500
        };
        self.refusals.get_or_create(&RefusalLabels { status }).inc();
    }

    /// Refusals with `status` so far.
    pub fn refusals(&self, status: u16) -> u64 {
        self.refusals
            .get(&RefusalLabels { status })
            .map_or(0, |c| c.get())
    }

    /// The counters of output kind `kind`.
    pub fn output(&self, kind: OutputKind) -> OutputCounters {
        let labels = OutputLabels { kind };
        let o = &self.outputs;
        OutputCounters {
            objects: o.objects.get_or_create_owned(&labels),
            bytes: o.bytes.get_or_create_owned(&labels),
            retries: o.retries.get_or_create_owned(&labels),
            dropped: o.dropped.get_or_create_owned(&labels),
            failures: o.failures.get_or_create_owned(&labels),
        }
    }

    /// Registers every counter. Names leave out `_total`: the encoder appends it to a
    /// counter's samples (OpenMetrics 1.0, "Counter"), and a unit's suffix with it. Help
    /// texts leave out their full stop: the registry appends one.
    fn register(&self, r: &mut Registry) {
        self.http.register(r);
        self.auth.register(r);
        self.cluster.register(r);
        r.register(
            "whipcast_publishes",
            "Broadcasts started, by signalling",
            self.publishes.clone(),
        );
        r.register(
            "whipcast_publish_refused",
            "Publish attempts refused, by HTTP status (WebSocket refusals carry the same codes)",
            self.refusals.clone(),
        );
        for (name, help, c) in [
            (
                "whipcast_hls_segments_trimmed",
                "Segments dropped early to stay within hls.stream_memory_mib",
                &self.segments_trimmed,
            ),
            (
                "whipcast_hls_segments_spilled",
                "Segments moved to disk to stay within hls.stream_memory_mib",
                &self.segments_spilled,
            ),
            (
                "whipcast_hls_blocking_timeouts",
                "Blocking playlist or preload-hint requests answered 503 after 3 x target duration",
                &self.blocking_timeouts,
            ),
            (
                "whipcast_hls_blocking_refused",
                "Blocking requests refused at once because hls.max_blocking_requests were parked",
                &self.blocking_refused,
            ),
        ] {
            r.register(name, help, c.clone());
        }
        let o = &self.outputs;
        r.register(
            "whipcast_output_objects",
            "Objects written by outputs (files renamed into place, uploads acknowledged)",
            o.objects.clone(),
        );
        // OpenMetrics 1.0, "MetricFamily metadata": the unit is the family name's suffix.
        r.register_with_unit(
            "whipcast_output",
            "Bytes written by outputs",
            Unit::Bytes,
            o.bytes.clone(),
        );
        r.register(
            "whipcast_output_retries",
            "Failed upload attempts that were retried",
            o.retries.clone(),
        );
        r.register(
            "whipcast_output_dropped",
            "Objects an output gave up on after its retry budget",
            o.dropped.clone(),
        );
        r.register(
            "whipcast_output_failures",
            "Outputs stopped by an error (the live stream went on)",
            o.failures.clone(),
        );
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

/// What `GET /metrics` encodes: the counters and the live figures, in one registry.
#[derive(Debug)]
pub struct Exposition(Registry);

impl Exposition {
    /// A registry of `metrics`' counters and of the gauges `live` gives at each scrape.
    pub fn new(metrics: &Metrics, live: impl Live) -> Self {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(live::Gauges(live)));
        Self(registry)
    }

    /// The OpenMetrics text, `# EOF` line included; served as [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.0)
            .expect("writing to a String cannot fail, and the encoders fail only when it does");
        out
    }
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
        m.output(OutputKind::S3).dropped.inc();
        m.output(OutputKind::Record).bytes.inc_by(10);
        assert_eq!(m.output(OutputKind::S3).dropped.get(), 1);
        assert_eq!(m.output(OutputKind::Record).bytes.get(), 10);
        assert_eq!(m.output(OutputKind::Record).dropped.get(), 0);
        // Clones share the counters.
        let c = m.clone();
        c.published(Signaling::Whip);
        assert_eq!(m.publishes(Signaling::Whip), 1);
        assert_eq!(m.publishes(Signaling::WebSocket), 0);
    }

    /// No streams; three requests parked.
    struct Parked;

    impl Live for Parked {
        fn streams(&self) -> Vec<StreamFigures> {
            Vec::new()
        }
        fn blocking_requests(&self) -> usize {
            3
        }
    }

    #[test]
    fn exposition_is_openmetrics_with_every_closed_series_from_zero() {
        let m = Metrics::default();
        m.refused(409);
        m.output(OutputKind::Record).failures.inc();
        let text = Exposition::new(&m, Parked).encode();
        for line in [
            "# HELP whipcast_publish_refused Publish attempts refused, by HTTP status (WebSocket refusals carry the same codes).\n",
            "# TYPE whipcast_publish_refused counter\n",
            "whipcast_publish_refused_total{status=\"409\"} 1\n",
            "whipcast_publish_refused_total{status=\"401\"} 0\n",
            "whipcast_publishes_total{signaling=\"whip\"} 0\n",
            "whipcast_publishes_total{signaling=\"websocket\"} 0\n",
            "whipcast_output_failures_total{kind=\"record\"} 1\n",
            "whipcast_output_failures_total{kind=\"s3\"} 0\n",
            "# UNIT whipcast_output_bytes bytes\n",
            "whipcast_output_bytes_total{kind=\"s3\"} 0\n",
            "whipcast_hls_segments_trimmed_total 0\n",
            "whipcast_hls_blocking_requests 3\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        // Every sample belongs to a family declared before it; a counter's samples are
        // its name plus `_total` (OpenMetrics 1.0, "Counter").
        let mut declared = std::collections::HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
                declared.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                let counter = name
                    .strip_suffix("_total")
                    .is_some_and(|f| declared.get(f).is_some_and(|k| k == "counter"));
                let gauge = declared.get(name).is_some_and(|k| k == "gauge");
                assert!(counter || gauge, "{line}");
            }
        }
    }
}
