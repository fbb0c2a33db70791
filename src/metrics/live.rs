//! The live gauges of `/metrics`: a collector that reads its figures at each scrape, so
//! a stream's series go with the stream and none is left behind stale.
//!
//! One gauge family per live figure of each stream in the store (the same numbers as
//! `/api/streams`), labelled `stream` (and `rendition`), and the blocking requests parked
//! now.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

/// One stream's live figures, as the collector writes them; the origin fills them from the
/// store's summaries, so this module knows no other module's types.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamFigures {
    /// The stream name (label `stream`).
    pub name: String,
    /// Published now (not ended, in its grace period).
    pub live: bool,
    /// Seconds since the broadcast started.
    pub uptime_s: f64,
    /// Media bytes held in memory.
    pub memory_bytes: u64,
    /// Seconds from publish to the first playable multivariant playlist, once it was.
    pub first_playable_s: Option<f64>,
    /// Observed keyframe interval, when known (H.264 sources).
    pub gop_s: Option<f64>,
    /// Whether whipcast steers the publisher's keyframes, when it tracks them.
    pub steering: Option<bool>,
    /// Keyframe requests sent in this broadcast, when it tracks them.
    pub keyframe_requests: Option<u64>,
    /// Median and 99th percentile server lag, seconds, once there are samples.
    pub lag_s: Option<(f64, f64)>,
    /// Its renditions.
    pub renditions: Vec<RenditionFigures>,
}

/// One rendition's live figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenditionFigures {
    /// The rendition name (label `rendition`).
    pub name: String,
    /// Segments published (its next media sequence number).
    pub segments: u64,
    /// Average measured bitrate, bit/s.
    pub average_bps: u64,
}

/// Where the live figures come from; called once per scrape.
pub trait Live: Send + Sync + 'static {
    /// The streams in the store now.
    fn streams(&self) -> Vec<StreamFigures>;
    /// Blocking playlist / preload-hint requests parked now.
    fn blocking_requests(&self) -> usize;
}

/// The collector over a [`Live`] source.
pub(super) struct Gauges<L>(pub(super) L);

impl<L> std::fmt::Debug for Gauges<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gauges").finish_non_exhaustive()
    }
}

/// `stream="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
}

/// `stream="…",rendition="…"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RenditionLabels {
    stream: String,
    rendition: String,
}

/// A gauge's value: counts and flags are written as integers, measurements as reals
/// (OpenMetrics 1.0, "Numbers").
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Real(f64),
}

impl Value {
    fn flag(on: bool) -> Value {
        Value::Int(u64::from(on))
    }
}

/// A per-stream family: name (without its unit), unit, help, and the value of a stream,
/// if it has one.
type PerStream = (
    &'static str,
    Option<Unit>,
    &'static str,
    fn(&StreamFigures) -> Option<Value>,
);

fn per_stream() -> [PerStream; 9] {
    [
        (
            "whipcast_stream_live",
            None,
            "1 while the stream is published, 0 once it ended (kept for the grace period).",
            |s| Some(Value::flag(s.live)),
        ),
        (
            "whipcast_stream_uptime",
            Some(Unit::Seconds),
            "Seconds since the broadcast started (until it ended).",
            |s| Some(Value::Real(s.uptime_s)),
        ),
        (
            "whipcast_stream_memory",
            Some(Unit::Bytes),
            "Media bytes held in memory for the stream.",
            |s| Some(Value::Int(s.memory_bytes)),
        ),
        (
            "whipcast_stream_first_playable",
            Some(Unit::Seconds),
            "Seconds from publish to the first playable multivariant playlist.",
            |s| s.first_playable_s.map(Value::Real),
        ),
        (
            "whipcast_stream_gop",
            Some(Unit::Seconds),
            "Observed interval between the publisher's keyframes (median of the recent ones).",
            |s| s.gop_s.map(Value::Real),
        ),
        (
            "whipcast_stream_keyframe_steering",
            None,
            "1 while whipcast steers the publisher's keyframes with PLI, 0 when it follows the publisher's GOP.",
            |s| s.steering.map(Value::flag),
        ),
        (
            "whipcast_stream_keyframe_requests",
            None,
            "Keyframe requests (PLI) sent to the publisher in this broadcast.",
            |s| s.keyframe_requests.map(Value::Int),
        ),
        // Percentiles as plain gauges: a `quantile` label belongs to the summary type,
        // which would also need _sum and _count (OpenMetrics 1.0, "Summary").
        (
            "whipcast_stream_server_lag_p50",
            Some(Unit::Seconds),
            "Median server lag of recent video parts: arrival of their last frame to published.",
            |s| s.lag_s.map(|(p50, _)| Value::Real(p50)),
        ),
        (
            "whipcast_stream_server_lag_p99",
            Some(Unit::Seconds),
            "99th percentile server lag of recent video parts.",
            |s| s.lag_s.map(|(_, p99)| Value::Real(p99)),
        ),
    ]
}

/// A per-rendition family: name, help, value.
type PerRendition = (&'static str, &'static str, fn(&RenditionFigures) -> u64);

const PER_RENDITION: [PerRendition; 2] = [
    (
        "whipcast_rendition_segments",
        "Segments published in a rendition (its next media sequence number).",
        |r| r.segments,
    ),
    (
        "whipcast_rendition_bitrate_bps",
        "Average measured bitrate of a rendition, bit/s.",
        |r| r.average_bps,
    ),
];

impl<L: Live> Collector for Gauges<L> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encoder
            .encode_descriptor(
                "whipcast_hls_blocking_requests",
                "Blocking requests parked now.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.0.blocking_requests())?;
        let streams = self.0.streams();
        for (name, unit, help, value) in &per_stream() {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
            for s in &streams {
                let Some(v) = value(s) else { continue };
                let labels = StreamLabels {
                    stream: s.name.clone(),
                };
                let mut sample = family.encode_family(&labels)?;
                match v {
                    Value::Int(n) => sample.encode_gauge(&n)?,
                    Value::Real(x) => sample.encode_gauge(&x)?,
                }
            }
        }
        for (name, help, value) in &PER_RENDITION {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for s in &streams {
                for r in &s.renditions {
                    let labels = RenditionLabels {
                        stream: s.name.clone(),
                        rendition: r.name.clone(),
                    };
                    family.encode_family(&labels)?.encode_gauge(&value(r))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::metrics::{Exposition, Metrics};

    /// A store stand-in whose streams the test sets.
    #[derive(Clone, Default)]
    struct Streams(Arc<Mutex<Vec<StreamFigures>>>);

    impl Live for Streams {
        fn streams(&self) -> Vec<StreamFigures> {
            self.0.lock().expect("test lock").clone()
        }
        fn blocking_requests(&self) -> usize {
            0
        }
    }

    fn stream(name: &str) -> StreamFigures {
        StreamFigures {
            name: name.into(),
            live: true,
            uptime_s: 12.5,
            memory_bytes: 4096,
            first_playable_s: None,
            gop_s: Some(1.0),
            steering: Some(true),
            keyframe_requests: Some(3),
            lag_s: Some((0.04, 0.12)),
            renditions: vec![RenditionFigures {
                name: "360p".into(),
                segments: 7,
                average_bps: 800_000,
            }],
        }
    }

    #[test]
    fn stream_series_follow_the_store_and_escape_their_labels() {
        let live = Streams::default();
        let exposition = Exposition::new(&Metrics::default(), live.clone());
        live.0
            .lock()
            .expect("test lock")
            .extend([stream("cam"), stream("a\"b\\c")]);
        let text = exposition.encode();
        for line in [
            "# TYPE whipcast_stream_live gauge\n",
            "whipcast_stream_live{stream=\"cam\"} 1\n",
            "# UNIT whipcast_stream_uptime_seconds seconds\n",
            "whipcast_stream_uptime_seconds{stream=\"cam\"} 12.5\n",
            "whipcast_stream_memory_bytes{stream=\"cam\"} 4096\n",
            "whipcast_stream_gop_seconds{stream=\"cam\"} 1.0\n",
            "whipcast_stream_keyframe_steering{stream=\"cam\"} 1\n",
            "whipcast_stream_keyframe_requests{stream=\"cam\"} 3\n",
            "whipcast_stream_server_lag_p50_seconds{stream=\"cam\"} 0.04\n",
            "whipcast_stream_server_lag_p99_seconds{stream=\"cam\"} 0.12\n",
            "whipcast_rendition_segments{stream=\"cam\",rendition=\"360p\"} 7\n",
            "whipcast_rendition_bitrate_bps{stream=\"cam\",rendition=\"360p\"} 800000\n",
            // OpenMetrics 1.0, "Escaping": backslash, double quote, line feed.
            "whipcast_stream_live{stream=\"a\\\"b\\\\c\"} 1\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
        // Not playable yet: no sample rather than a made-up value.
        assert!(!text.contains("whipcast_stream_first_playable_seconds{"));

        // The stream expires: its series go with it at the next scrape.
        live.0.lock().expect("test lock").clear();
        let text = exposition.encode();
        assert!(!text.contains("stream=\""), "{text}");
        assert!(text.contains("# TYPE whipcast_stream_live gauge\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
