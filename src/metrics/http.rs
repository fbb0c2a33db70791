//! The HTTP server's connection figures: open connections, refusals by cap, closes by
//! timeout. Written by `origin::serve` on every accept and close; a clone shares them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values as operators read them
pub enum RefusedBy {
    /// `limits.max_connections`.
    global,
    /// `limits.max_connections_per_client`.
    per_client,
}

/// Why the server closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values as operators read them
pub enum ClosedFor {
    /// No complete request headers within `limits.header_timeout`.
    header_timeout,
    /// No byte either way for `limits.idle_timeout`.
    idle,
    /// Still open when the shutdown grace period ended.
    shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    reason: RefusedBy,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClosedLabels {
    reason: ClosedFor,
}

/// The connection counters; cheap to clone (handles on shared atomics).
#[derive(Debug, Clone)]
pub struct HttpCounters {
    /// Connections open now (HTTP, HTTPS, upgraded WebSockets).
    pub open: Gauge,
    /// Connections admitted since start.
    pub accepted: Counter,
    /// `accept` errors (descriptor exhaustion and the like).
    pub accept_errors: Counter,
    refused: Family<RefusedLabels, Counter>,
    closed: Family<ClosedLabels, Counter>,
}

impl Default for HttpCounters {
    fn default() -> Self {
        let c = HttpCounters {
            open: Gauge::default(),
            accepted: Counter::default(),
            accept_errors: Counter::default(),
            refused: Family::default(),
            closed: Family::default(),
        };
        // Closed label sets exist from the start, at 0 (see `Counters::default`).
        for reason in [RefusedBy::global, RefusedBy::per_client] {
            c.refused.get_or_create_owned(&RefusedLabels { reason });
        }
        for reason in [
            ClosedFor::header_timeout,
            ClosedFor::idle,
            ClosedFor::shutdown,
        ] {
            c.closed.get_or_create_owned(&ClosedLabels { reason });
        }
        c
    }
}

impl HttpCounters {
    /// Counts a connection refused by `cap`.
    pub fn refused(&self, cap: RefusedBy) {
        self.refused
            .get_or_create(&RefusedLabels { reason: cap })
            .inc();
    }

    /// Counts `n` connections closed for `why`.
    pub fn closed(&self, why: ClosedFor, n: u64) {
        self.closed
            .get_or_create(&ClosedLabels { reason: why })
            .inc_by(n);
    }

    /// Connections refused by `cap` so far.
    pub fn refusals(&self, cap: RefusedBy) -> u64 {
        self.refused
            .get(&RefusedLabels { reason: cap })
            .map_or(0, |c| c.get())
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "whipcast_http_connections_open",
            "HTTP connections open now, upgraded WebSockets included",
            self.open.clone(),
        );
        r.register(
            "whipcast_http_connections_accepted",
            "HTTP connections admitted",
            self.accepted.clone(),
        );
        r.register(
            "whipcast_http_connections_refused",
            "HTTP connections refused (503 and closed) by limits.max_connections (global) or limits.max_connections_per_client (per_client)",
            self.refused.clone(),
        );
        r.register(
            "whipcast_http_connections_closed",
            "HTTP connections closed by the server: header_timeout, idle (limits.idle_timeout), shutdown (still open after limits.shutdown_grace)",
            self.closed.clone(),
        );
        r.register(
            "whipcast_http_accept_errors",
            "Failed accepts (descriptor exhaustion and the like)",
            self.accept_errors.clone(),
        );
    }
}
