//! Ingest: who may publish what, and the registry of live broadcasts.
//!
//! The HTTP edges (`whip`, `ws`) only translate requests into [`Ingest`] calls; this module
//! checks the stream name, the token and the offer, reserves the name (409 on a second
//! publisher), answers through [`peer`](crate::peer), and spawns the stream's broadcast
//! task. The registry is a small map behind a `std::sync::Mutex`, never held across
//! `.await`.
//!
//! This file holds the [`Ingest`] handle and its admission checks (name, token, shutdown).
//! The rest, one concern per file:
//! - `publish`: the publish / unpublish flow, and the commands to a running broadcast;
//! - `registry`: which names and sessions are live, and the reservation of a name;
//! - `error`: [`IngestError`] and its one mapping to an HTTP status;
//! - `options`: the publish options of a URL query (`record`, `height`);
//! - `admit`: the checks that may wait on the network ([`crate::auth`]: JWT, callback);
//! - `patch`: what a WHIP PATCH is checked against (ETag, `If-Match`, ICE credentials);
//! - `sdpfrag`: the candidates of a WHIP PATCH body;
//! - `whip`, `ws`, `routes`: the HTTP and WebSocket edges.

mod admit;
mod error;
mod options;
mod patch;
mod publish;
mod registry;
mod routes;
pub mod sdpfrag;
pub mod whip;
pub mod ws;

use std::sync::{Arc, Mutex};

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::StreamKey;
use crate::auth::Authorizer;
use crate::client::ClientId;
pub use crate::client::Signaling;
use crate::cluster::Cluster;
use crate::config::{IceConfig, LimitsConfig};
use crate::hls::HlsStore;
use crate::media::Ladder;
use crate::output::Outputs;
pub use crate::peer::{Candidate, PeerError, SdpError};
pub use admit::Admission;
pub use error::IngestError;
pub use options::PublishOptions;
pub use publish::{PublishRequest, Published};
use registry::Registry;
pub use routes::{SignalingState, router};

struct Inner {
    auth: Authorizer,
    ice: IceConfig,
    ladder: Ladder,
    max_sdp_bytes: usize,
    max_streams: usize,
    store: HlsStore,
    outputs: Outputs,
    registry: Mutex<Registry>,
    closing: std::sync::atomic::AtomicBool,
    /// Pending-session caps and the publish rate.
    limits: LimitsConfig,
    /// Publish attempts per client (GCRA, `limits.publish_per_minute`); `None`: off.
    attempts: Option<DefaultKeyedRateLimiter<ClientId>>,
    /// The cluster this node belongs to (`[cluster]`), which owns names cluster-wide.
    cluster: Option<Cluster>,
    /// Draining: new publishes go to other nodes, live ones go on (`cluster.drain_timeout`).
    draining: std::sync::atomic::AtomicBool,
    /// Wakes whoever waits for a drain to be asked (`POST /api/drain`).
    drain_asked: tokio::sync::Notify,
}

/// Clients tracked by the rate limiter before idle ones are dropped from its table.
const RATE_TABLE_TRIM: usize = 4096;

/// What the ingest service is configured with.
pub struct IngestSettings {
    /// `[auth]`: the static tokens, JWT, the callback and the webhooks.
    pub auth: Authorizer,
    /// `[ice]`.
    pub ice: IceConfig,
    /// The ladder in force.
    pub ladder: Ladder,
    /// `server.max_sdp_bytes`.
    pub max_sdp_bytes: usize,
    /// `server.max_streams`.
    pub max_streams: usize,
    /// `[limits]` (pending sessions, publish rate).
    pub limits: LimitsConfig,
    /// `[cluster]`, when on.
    pub cluster: Option<Cluster>,
}

/// The ingest service; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

impl Ingest {
    /// A new service.
    pub fn new(settings: IngestSettings, store: HlsStore, outputs: Outputs) -> Self {
        let IngestSettings {
            auth,
            ice,
            ladder,
            max_sdp_bytes,
            max_streams,
            limits,
            cluster,
        } = settings;
        let attempts = NonZeroU32::new(limits.publish_per_minute).map(|per_minute| {
            let burst = NonZeroU32::new(limits.publish_burst).unwrap_or(per_minute);
            RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst))
        });
        Self {
            inner: Arc::new(Inner {
                auth,
                ice,
                ladder,
                max_sdp_bytes,
                max_streams,
                store,
                outputs,
                registry: Mutex::new(Registry::default()),
                closing: std::sync::atomic::AtomicBool::new(false),
                limits,
                attempts,
                cluster,
                draining: std::sync::atomic::AtomicBool::new(false),
                drain_asked: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Largest accepted offer.
    pub fn max_sdp_bytes(&self) -> usize {
        self.inner.max_sdp_bytes
    }

    /// `[limits]` in force (the WebSocket timers read theirs).
    pub fn limits(&self) -> &LimitsConfig {
        &self.inner.limits
    }

    /// STUN/TURN URLs for `Link` headers.
    pub fn ice_servers(&self) -> &[String] {
        &self.inner.ice.ice_servers
    }

    /// Checks the name and the token (before reading any body).
    pub fn authorize(&self, stream: &str, token: Option<&str>) -> Result<StreamKey, IngestError> {
        let key = StreamKey::parse(stream).ok_or(IngestError::BadStreamName)?;
        if let Some(required) = self.inner.auth.config().required_token(key.as_str())
            && !token.is_some_and(|t| constant_time_eq(t.as_bytes(), required.as_bytes()))
        {
            return Err(IngestError::Unauthorized);
        }
        Ok(key)
    }

    /// Counts a publish attempt (WHIP POST, WebSocket upgrade) of `client` against its
    /// rate (429 beyond it). Cheap: checked before anything else is read.
    pub fn attempt(&self, client: Option<ClientId>) -> Result<(), IngestError> {
        let (Some(limiter), Some(client)) = (&self.inner.attempts, client) else {
            return Ok(());
        };
        if limiter.len() > RATE_TABLE_TRIM {
            limiter.retain_recent();
        }
        limiter
            .check_key(&client)
            .map_err(|_| IngestError::RateLimited)
    }

    /// The external checks and the lifecycle webhooks.
    pub fn authorizer(&self) -> &Authorizer {
        &self.inner.auth
    }

    /// The cluster this node belongs to, if any.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.inner.cluster.as_ref()
    }

    /// Ends the broadcasts whose names the cluster says this node lost (another node
    /// holds them now, with a higher fencing token). Runs until the cluster is gone; holds
    /// the ingest weakly, so it ends with it too.
    pub fn end_lost_claims(&self, mut lost: tokio::sync::mpsc::Receiver<String>) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(stream) = lost.recv().await {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                Ingest { inner }.fence(&stream);
            }
        });
    }

    /// In a cluster, where a publish should go instead of this node: another node's URL
    /// when this one is draining or has no room for one more stream (live and
    /// connecting), and another has (RFC 9725 §4.5: redirects for load balancing).
    /// `None` when this node takes it (or refuses it as a single node would).
    pub async fn elsewhere(&self) -> Option<String> {
        let cluster = self.inner.cluster.as_ref()?;
        let full = {
            let reg = self.registry();
            self.inner.closing.load(std::sync::atomic::Ordering::SeqCst)
                || self.is_draining()
                || reg.load() >= self.inner.max_streams
        };
        if !full {
            return None;
        }
        cluster.best_node().await.map(|n| n.url)
    }

    /// In a cluster, the URL of the node that owns `stream` when that is another node.
    pub async fn owner_elsewhere(&self, stream: &StreamKey) -> Option<String> {
        let cluster = self.inner.cluster.as_ref()?;
        cluster
            .owner_url(stream.as_str(), std::time::Instant::now())
            .await
    }

    /// Counts a publish sent to another node (`/metrics`).
    pub fn redirected(&self, signaling: Signaling) {
        self.inner.store.metrics().cluster.redirected(signaling);
    }

    /// Starts draining (`SIGTERM` or `POST /api/drain` in a cluster): new publishes are
    /// sent to other nodes (or refused with 503 when none has room), the node's
    /// registration says so, and the live streams go on.
    pub fn drain(&self) {
        if !self
            .inner
            .draining
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tracing::info!("draining: new publishes go to other nodes");
            if let Some(c) = &self.inner.cluster {
                c.set_draining();
            }
        }
        self.inner.drain_asked.notify_one();
    }

    /// Whether the node is draining.
    pub fn is_draining(&self) -> bool {
        self.inner
            .draining
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves when a drain is asked for (`POST /api/drain`).
    pub async fn drain_asked(&self) {
        self.inner.drain_asked.notified().await;
    }

    /// Waits until no session is left (live or connecting), or `deadline` passes; says
    /// whether none is left.
    pub async fn drained(&self, deadline: std::time::Duration) -> bool {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            if self.registry().load() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= end {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Refuses new publishers once shutdown began.
    pub fn ensure_open(&self) -> Result<(), IngestError> {
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) || self.is_draining() {
            return Err(IngestError::ShuttingDown);
        }
        Ok(())
    }
}

/// Whether a presented token is the required one, in constant time.
pub fn tokens_match(given: &str, required: &str) -> bool {
    constant_time_eq(given.as_bytes(), required.as_bytes())
}

/// Token comparison that does not stop at the first differing byte (the length is not
/// secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
