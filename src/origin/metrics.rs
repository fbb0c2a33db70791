//! `GET /metrics`: Prometheus text exposition (format 0.0.4).
//!
//! Two kinds of figures. Process-wide counters ([`crate::metrics`]) that outlive streams:
//! publishes, refusals by status, DVR trims and spills, blocking-request timeouts, output
//! objects, retries, drops and failures. And one gauge family per live figure of each
//! stream in the store (the same numbers as `/api/streams`), labelled `stream` (and
//! `rendition`): they go when the stream expires, as a gauge should.

use std::fmt::Write as _;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::hls::StreamSummary;
use crate::metrics::{self, Counters, OutputKind, REFUSAL_STATUSES};

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value (the format's rule: backslash, double quote, line feed).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes `# HELP` and `# TYPE` of a family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing into a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// The counters that outlive streams.
fn render_counters(out: &mut String, c: &Counters, parked: usize) {
    family(
        out,
        "whipcast_publishes_total",
        "counter",
        "Broadcasts started, by signalling.",
    );
    sample(
        out,
        "whipcast_publishes_total",
        "signaling=\"whip\"",
        metrics::get(&c.publishes_whip),
    );
    sample(
        out,
        "whipcast_publishes_total",
        "signaling=\"websocket\"",
        metrics::get(&c.publishes_ws),
    );
    family(
        out,
        "whipcast_publish_refused_total",
        "counter",
        "Publish attempts refused, by HTTP status (WebSocket refusals carry the same codes).",
    );
    for status in REFUSAL_STATUSES {
        sample(
            out,
            "whipcast_publish_refused_total",
            &format!("status=\"{status}\""),
            c.refusals(status),
        );
    }
    for (name, help, v) in [
        (
            "whipcast_hls_segments_trimmed_total",
            "Segments dropped early to stay within hls.stream_memory_mib.",
            &c.segments_trimmed,
        ),
        (
            "whipcast_hls_segments_spilled_total",
            "Segments moved to disk to stay within hls.stream_memory_mib.",
            &c.segments_spilled,
        ),
        (
            "whipcast_hls_blocking_timeouts_total",
            "Blocking playlist or preload-hint requests answered 503 after 3 x target duration.",
            &c.blocking_timeouts,
        ),
        (
            "whipcast_hls_blocking_refused_total",
            "Blocking requests refused at once because hls.max_blocking_requests were parked.",
            &c.blocking_refused,
        ),
    ] {
        family(out, name, "counter", help);
        sample(out, name, "", metrics::get(v));
    }
    family(
        out,
        "whipcast_hls_blocking_requests",
        "gauge",
        "Blocking requests parked now.",
    );
    sample(out, "whipcast_hls_blocking_requests", "", parked);
    type Pick = fn(&metrics::OutputCounters) -> &std::sync::atomic::AtomicU64;
    let outputs: [(&str, &str, Pick); 5] = [
        (
            "whipcast_output_objects_total",
            "Objects written by outputs (files renamed into place, uploads acknowledged).",
            |o| &o.objects,
        ),
        (
            "whipcast_output_bytes_total",
            "Bytes written by outputs.",
            |o| &o.bytes,
        ),
        (
            "whipcast_output_retries_total",
            "Failed upload attempts that were retried.",
            |o| &o.retries,
        ),
        (
            "whipcast_output_dropped_total",
            "Objects an output gave up on after its retry budget.",
            |o| &o.dropped,
        ),
        (
            "whipcast_output_failures_total",
            "Outputs stopped by an error (the live stream went on).",
            |o| &o.failures,
        ),
    ];
    for (name, help, pick) in outputs {
        family(out, name, "counter", help);
        for kind in OutputKind::ALL {
            sample(
                out,
                name,
                &format!("kind=\"{kind}\""),
                metrics::get(pick(c.output(kind))),
            );
        }
    }
}

/// The live figures of each stream in the store.
fn render_streams(out: &mut String, streams: &[StreamSummary]) {
    type Value = fn(&StreamSummary) -> Option<f64>;
    let per_stream: [(&str, &str, Value); 7] = [
        (
            "whipcast_stream_live",
            "1 while the stream is published, 0 once it ended (kept for the grace period).",
            |s| Some(if s.state == "live" { 1.0 } else { 0.0 }),
        ),
        (
            "whipcast_stream_uptime_seconds",
            "Seconds since the broadcast started (until it ended).",
            |s| Some(s.uptime_s),
        ),
        (
            "whipcast_stream_memory_bytes",
            "Media bytes held in memory for the stream.",
            |s| Some(s.memory_bytes as f64),
        ),
        (
            "whipcast_stream_first_playable_seconds",
            "Seconds from publish to the first playable multivariant playlist.",
            |s| s.first_playable_s,
        ),
        (
            "whipcast_stream_gop_seconds",
            "Observed interval between the publisher's keyframes (median of the recent ones).",
            |s| s.keyframes.as_ref().and_then(|k| k.observed_gop_s),
        ),
        (
            "whipcast_stream_keyframe_steering",
            "1 while whipcast steers the publisher's keyframes with PLI, 0 when it follows the publisher's GOP.",
            |s| {
                s.keyframes.as_ref().map(|k| {
                    if k.mode == crate::keyframes::Mode::Steering {
                        1.0
                    } else {
                        0.0
                    }
                })
            },
        ),
        (
            "whipcast_stream_keyframe_requests",
            "Keyframe requests (PLI) sent to the publisher in this broadcast.",
            |s| s.keyframes.as_ref().map(|k| f64::from(k.requests)),
        ),
    ];
    for (name, help, value) in per_stream {
        family(out, name, "gauge", help);
        for s in streams {
            if let Some(v) = value(s) {
                sample(out, name, &format!("stream=\"{}\"", label(&s.name)), v);
            }
        }
    }
    // Percentiles as plain gauges: a `quantile` label belongs to the summary type, which
    // would also need _sum and _count.
    for (name, help, pick) in [
        (
            "whipcast_stream_server_lag_p50_seconds",
            "Median server lag of recent video parts: arrival of their last frame to published.",
            (|l: &crate::hls::LagSummary| l.p50) as fn(&crate::hls::LagSummary) -> f64,
        ),
        (
            "whipcast_stream_server_lag_p99_seconds",
            "99th percentile server lag of recent video parts.",
            |l: &crate::hls::LagSummary| l.p99,
        ),
    ] {
        family(out, name, "gauge", help);
        for s in streams.iter().filter(|s| s.lag_ms.samples > 0) {
            sample(
                out,
                name,
                &format!("stream=\"{}\"", label(&s.name)),
                pick(&s.lag_ms) / 1000.0,
            );
        }
    }
    type PerRendition = fn(&crate::hls::RenditionSummary) -> u64;
    let per_rendition: [(&str, &str, PerRendition); 2] = [
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
    for (name, help, value) in per_rendition {
        family(out, name, "gauge", help);
        for s in streams {
            for r in &s.renditions {
                let labels = format!(
                    "stream=\"{}\",rendition=\"{}\"",
                    label(&s.name),
                    label(&r.name)
                );
                sample(out, name, &labels, value(r));
            }
        }
    }
}

/// Renders the whole exposition.
pub fn render(c: &Counters, parked: usize, streams: &[StreamSummary]) -> String {
    let mut out = String::with_capacity(4096 + streams.len() * 1024);
    render_counters(&mut out, c, parked);
    render_streams(&mut out, streams);
    out
}

/// `GET /metrics`
pub async fn handler(State(state): State<AppState>) -> Response {
    let streams = state.store.summaries(Instant::now());
    let text = render(state.store.metrics(), state.hls.parked.count(), &streams);
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn exposition_has_help_type_and_escaped_labels() {
        let m = Metrics::default();
        m.refused(409);
        metrics::inc(&m.output(OutputKind::Record).failures);
        let text = render(&m, 3, &[]);
        assert!(text.contains("# TYPE whipcast_publish_refused_total counter\n"));
        assert!(text.contains("whipcast_publish_refused_total{status=\"409\"} 1\n"));
        assert!(text.contains("whipcast_publish_refused_total{status=\"401\"} 0\n"));
        assert!(text.contains("whipcast_output_failures_total{kind=\"record\"} 1\n"));
        assert!(text.contains("whipcast_output_failures_total{kind=\"s3\"} 0\n"));
        assert!(text.contains("whipcast_hls_blocking_requests 3\n"));
        // Every sample line belongs to a family declared before it.
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or("").to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap_or("");
                assert!(declared.contains(name), "{line}");
            }
        }
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
