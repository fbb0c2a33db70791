//! The cluster's figures for this node (`[cluster]`; all 0 on a single node): the nodes it
//! sees, the stream names it holds, publishes it sent elsewhere, requests it proxied to
//! other nodes, and Redis commands that failed. Written by `cluster`, `ingest` and
//! `origin::proxy`; a clone shares them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::PublishLabels;
use crate::client::Signaling;

/// The cluster counters; cheap to clone (handles on shared atomics).
#[derive(Debug, Clone)]
pub struct ClusterCounters {
    /// Nodes registered, as this node last read them (itself included).
    pub nodes: Gauge,
    /// Stream names this node holds in Redis (or live here while Redis is down).
    pub claims: Gauge,
    redirects: Family<PublishLabels, Counter>,
    /// HLS requests sent to the node that owns the stream.
    pub proxied: Counter,
    /// Proxied requests whose owner did not answer (502).
    pub proxy_errors: Counter,
    /// Redis commands that failed or timed out.
    pub redis_errors: Counter,
}

impl Default for ClusterCounters {
    fn default() -> Self {
        let c = ClusterCounters {
            nodes: Gauge::default(),
            claims: Gauge::default(),
            redirects: Family::default(),
            proxied: Counter::default(),
            proxy_errors: Counter::default(),
            redis_errors: Counter::default(),
        };
        // Closed label sets exist from the start, at 0 (see `Counters::default`).
        for signaling in [Signaling::Whip, Signaling::WebSocket] {
            c.redirects
                .get_or_create_owned(&PublishLabels { signaling });
        }
        c
    }
}

impl ClusterCounters {
    /// Counts a publish sent to another node.
    pub fn redirected(&self, signaling: Signaling) {
        self.redirects
            .get_or_create(&PublishLabels { signaling })
            .inc();
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "whipcast_cluster_nodes",
            "Nodes registered in the cluster, as this node last read them",
            self.nodes.clone(),
        );
        r.register(
            "whipcast_cluster_claims",
            "Stream names this node holds in the cluster",
            self.claims.clone(),
        );
        r.register(
            "whipcast_cluster_redirects",
            "Publishes sent to another node (this one full or draining), by signalling",
            self.redirects.clone(),
        );
        r.register(
            "whipcast_cluster_proxied",
            "HLS requests proxied to the node that owns the stream",
            self.proxied.clone(),
        );
        r.register(
            "whipcast_cluster_proxy_errors",
            "Proxied HLS requests whose owner did not answer (502)",
            self.proxy_errors.clone(),
        );
        r.register(
            "whipcast_cluster_redis_errors",
            "Redis commands that failed or did not answer within cluster.redis_timeout",
            self.redis_errors.clone(),
        );
    }
}
