//! Several whipcast nodes as one service, coordinated through Redis (`[cluster]`; off by
//! default). The only module that names `redis`.
//!
//! What lives in Redis (`keys`): one claim per live stream name, `SET NX PX` with the
//! owner's node id and a fencing token from one cluster-wide counter; one registration per
//! node, with its URL and load. Both expire after `cluster.claim_ttl` unless renewed: the
//! heartbeat (`heartbeat`) renews them every third of it, so a node that dies frees its
//! names within one TTL. Claims are checked and changed by Lua scripts (`scripts`), each
//! one atomic on the server: a renewal only extends a claim that still carries this node's
//! token, so a node that lost its claim (Redis restarted and another node claimed the name,
//! or this node was cut off past the TTL) learns it at its next renewal and ends that
//! stream; it never writes over the new owner.
//!
//! Redis trouble: every command is bounded by `cluster.redis_timeout`. Live streams never
//! wait on Redis (claims are renewed by the heartbeat task, not by the broadcasts). A new
//! publish while Redis is down is refused with 503, or, with
//! `cluster.when_redis_down = "local"`, goes live here and is claimed in Redis when it
//! answers again — where a claim another node made meanwhile wins, as its token is higher.
//!
//! The held claims are a small map behind a `std::sync::Mutex`, never held across
//! `.await`; lost names go to the ingest through a bounded channel.

mod heartbeat;
mod keys;
mod scripts;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{ClusterConfig, RedisDown};
use crate::metrics::ClusterCounters;
use keys::Keys;
pub use keys::{Owner, Progress};
use scripts::{ClaimResult, Scripts};

/// How long a stream's owner, once looked up, is taken as known (the origin asks on every
/// request for a stream it does not have; an owner changes only when a stream moves).
const OWNER_CACHE_TTL: Duration = Duration::from_secs(1);

/// Owners remembered at most; past it the table starts again (requests for made-up names
/// cannot grow it without bound).
const OWNER_CACHE_ENTRIES: usize = 4096;

/// Names whose claim was lost, waiting for the ingest to end their broadcasts. Losses are
/// rare (a Redis restart, a partition); a full channel delays the next heartbeat, no more.
const LOST_CHANNEL_CAPACITY: usize = 64;

/// Where a stream's HLS numbering stands on this node (next media sequence number,
/// discontinuity sequence), for the stream's next owner; the origin's store answers.
pub type ProgressSource = Arc<dyn Fn(&str) -> Option<(u64, u64)> + Send + Sync>;

/// Why the cluster refused a publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Another node holds the name (the same 409 as a second publisher on one node).
    #[error("stream is live on node {}", .0.node)]
    Taken(Owner),
    /// Redis did not answer in time or failed, and `cluster.when_redis_down` is `refuse`
    /// (503).
    #[error("the cluster's Redis is unavailable: {0}")]
    Unavailable(String),
}

/// A node as it registers itself (`GET /api/cluster`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `cluster.node_id`.
    pub id: String,
    /// Where the node is reached (`server.public_url`, else its listener).
    pub url: String,
    /// Stream names it holds.
    pub streams: usize,
    /// `server.max_streams`.
    pub capacity: usize,
    /// Whether it is shutting down (takes no new publish).
    pub draining: bool,
}

/// Placement: of `nodes`, the other node with the most room.
fn pick(me: &str, nodes: Vec<NodeInfo>) -> Option<NodeInfo> {
    nodes
        .into_iter()
        .filter(|n| n.id != me && !n.draining && n.streams < n.capacity)
        .max_by(|a, b| {
            (a.capacity - a.streams)
                .cmp(&(b.capacity - b.streams))
                .then_with(|| b.id.cmp(&a.id))
        })
}

/// What this node holds of a name.
#[derive(Debug, Clone, PartialEq)]
enum Held {
    /// Its claim in Redis.
    Claimed(Owner),
    /// Live here while Redis was down (`when_redis_down = "local"`); claimed in Redis by
    /// the next heartbeat that reaches it.
    LocalOnly,
}

struct Inner {
    keys: Keys,
    node: String,
    url: String,
    capacity: usize,
    ttl: Duration,
    timeout: Duration,
    when_down: RedisDown,
    admin_token: Option<String>,
    conn: ConnectionManager,
    scripts: Scripts,
    progress: ProgressSource,
    metrics: ClusterCounters,
    held: Mutex<HashMap<String, Held>>,
    /// Stream name → (looked up at, the owner's URL if another node owns it).
    owners: Mutex<HashMap<String, (Instant, Option<String>)>>,
    lost: mpsc::Sender<String>,
    /// The last command reached Redis (for the log lines on each change).
    redis_up: AtomicBool,
    draining: AtomicBool,
}

/// This node's membership of the cluster; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl Cluster {
    /// Joins the cluster of `cfg` (which must be enabled) as a node reached at `url`. Does
    /// not wait for Redis: the connection is made on first use and remade after failures,
    /// so a node starts, and serves, while Redis is down. Returns the receiver of lost
    /// names, for the ingest.
    pub fn new(
        cfg: &ClusterConfig,
        url: &str,
        capacity: usize,
        progress: ProgressSource,
        metrics: ClusterCounters,
    ) -> Result<(Cluster, mpsc::Receiver<String>), ClusterError> {
        let redis_url = cfg
            .redis_url
            .as_deref()
            .ok_or_else(|| ClusterError::Unavailable("cluster.redis_url is unset".into()))?;
        let client =
            redis::Client::open(redis_url).map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        // Bounded reconnects, each bounded in time: a command fails fast while Redis is
        // down (the heartbeat retries every third of the TTL) instead of queueing.
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(cfg.redis_timeout))
            .set_response_timeout(Some(cfg.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(cfg.redis_timeout);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| ClusterError::Unavailable(e.to_string()))?;
        let node = cfg
            .node_id
            .clone()
            .unwrap_or_else(|| format!("node-{:016x}", rand::random::<u64>()));
        let (lost, lost_rx) = mpsc::channel(LOST_CHANNEL_CAPACITY);
        let cluster = Cluster {
            inner: Arc::new(Inner {
                keys: Keys::new(&cfg.key_prefix),
                node,
                url: url.to_string(),
                capacity,
                ttl: cfg.claim_ttl,
                timeout: cfg.redis_timeout,
                when_down: cfg.when_redis_down,
                admin_token: cfg.admin_token.clone(),
                conn,
                scripts: Scripts::new(),
                progress,
                metrics,
                held: Mutex::new(HashMap::new()),
                owners: Mutex::new(HashMap::new()),
                lost,
                redis_up: AtomicBool::new(true),
                draining: AtomicBool::new(false),
            }),
        };
        info!(node = %cluster.inner.node, url, "cluster: joining");
        Ok((cluster, lost_rx))
    }

    /// The bearer token of `POST /api/drain`, if set.
    pub fn admin_token(&self) -> Option<&str> {
        self.inner.admin_token.as_deref()
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node
    }

    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.inner.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one Redis call within `cluster.redis_timeout`, noting whether Redis answered.
    async fn call<T>(
        &self,
        what: &'static str,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let r = match tokio::time::timeout(self.inner.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        };
        let up = r.is_ok();
        if !up {
            self.inner.metrics.redis_errors.inc();
        }
        if self.inner.redis_up.swap(up, Ordering::Relaxed) != up {
            match &r {
                Ok(_) => info!(node = %self.inner.node, "cluster: Redis answers again"),
                Err(e) => {
                    warn!(node = %self.inner.node, %what, error = %e, "cluster: Redis unavailable")
                }
            }
        }
        r
    }

    /// The refusal for a publish while Redis is down, or `None` when the policy lets it go
    /// live here alone.
    fn when_down(&self, why: String) -> Option<ClusterError> {
        match self.inner.when_down {
            RedisDown::Refuse => Some(ClusterError::Unavailable(why)),
            RedisDown::Local => None,
        }
    }

    /// Whether `stream` may be published here: refused when another node holds it (or
    /// Redis is down and the policy refuses). Checked when the offer arrives; the name is
    /// only claimed when media flows ([`Cluster::claim`]).
    pub async fn check_free(&self, stream: &str) -> Result<(), ClusterError> {
        let mut conn = self.inner.conn.clone();
        let key = self.inner.keys.claim(stream);
        let value = self
            .call("check", async move {
                redis::cmd("GET")
                    .arg(key)
                    .query_async::<Option<String>>(&mut conn)
                    .await
            })
            .await;
        match value {
            Ok(Some(v)) => match Owner::parse(&v) {
                Some(o) if o.node != self.inner.node => Err(ClusterError::Taken(o)),
                _ => Ok(()),
            },
            Ok(None) => Ok(()),
            Err(why) => self.when_down(why).map_or(Ok(()), Err),
        }
    }

    /// Claims `stream` for this node, cluster-wide: refused when another node holds it.
    /// Returns where the stream's numbering stood when a node (this one or another) last
    /// reported it, for the new broadcast to continue.
    pub async fn claim(&self, stream: &str) -> Result<Option<Progress>, ClusterError> {
        match self.claim_in_redis(stream).await {
            Ok(ClaimResult::Claimed(owner, progress)) => {
                info!(stream, token = owner.token, ?progress, "cluster: claimed");
                self.held().insert(stream.to_string(), Held::Claimed(owner));
                Ok(progress)
            }
            Ok(ClaimResult::Taken(owner)) if owner.node == self.inner.node => {
                // Ours already (a claim this node made and has not released yet: a
                // re-publish right after the previous session ended). Keep it.
                self.held().insert(stream.to_string(), Held::Claimed(owner));
                Ok(None)
            }
            Ok(ClaimResult::Taken(owner)) => Err(ClusterError::Taken(owner)),
            Err(why) => match self.when_down(why) {
                Some(refusal) => Err(refusal),
                None => {
                    warn!(
                        stream,
                        "cluster: Redis unavailable; live on this node only until it answers"
                    );
                    self.held().insert(stream.to_string(), Held::LocalOnly);
                    Ok(None)
                }
            },
        }
    }

    async fn claim_in_redis(&self, stream: &str) -> Result<ClaimResult, String> {
        let mut conn = self.inner.conn.clone();
        let invocation =
            self.inner
                .scripts
                .claim(&self.inner.keys, stream, &self.inner.node, self.inner.ttl);
        self.call("claim", async move {
            invocation.invoke_async::<Vec<String>>(&mut conn).await
        })
        .await
        .and_then(|reply| ClaimResult::from_reply(&reply))
    }

    /// Gives `stream` up (its broadcast ended). A claim this node no longer holds in Redis
    /// is left alone.
    pub async fn release(&self, stream: &str) {
        let Some(held) = self.held().remove(stream) else {
            return;
        };
        let Held::Claimed(owner) = held else {
            return;
        };
        let mut conn = self.inner.conn.clone();
        let progress = (self.inner.progress)(stream);
        let invocation = self
            .inner
            .scripts
            .release(&self.inner.keys, stream, &owner, progress);
        match self
            .call("release", async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await
        {
            Ok(_) => info!(stream, "cluster: released"),
            // It expires by itself within one TTL.
            Err(e) => warn!(stream, error = %e, "cluster: release failed; the claim will expire"),
        }
    }

    /// The URL of the node that owns `stream`, when that is another node (for the
    /// origin, which proxies requests for streams it does not have). Remembered for
    /// [`OWNER_CACHE_TTL`]; `None` also when Redis does not answer.
    pub async fn owner_url(&self, stream: &str, now: Instant) -> Option<String> {
        {
            let owners = self.inner.owners.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, url)) = owners.get(stream)
                && now.saturating_duration_since(*at) < OWNER_CACHE_TTL
            {
                return url.clone();
            }
        }
        let url = self.look_up_owner(stream).await.ok()?;
        let mut owners = self.inner.owners.lock().unwrap_or_else(|p| p.into_inner());
        if owners.len() >= OWNER_CACHE_ENTRIES {
            owners.clear();
        }
        owners.insert(stream.to_string(), (now, url.clone()));
        url
    }

    async fn look_up_owner(&self, stream: &str) -> Result<Option<String>, String> {
        let mut conn = self.inner.conn.clone();
        let keys = self.inner.keys.clone();
        let stream = stream.to_string();
        let me = self.inner.node.clone();
        self.call("owner", async move {
            let claim: Option<String> = redis::cmd("GET")
                .arg(keys.claim(&stream))
                .query_async(&mut conn)
                .await?;
            let Some(owner) = claim.as_deref().and_then(Owner::parse) else {
                return Ok(None);
            };
            if owner.node == me {
                return Ok(None);
            }
            let node: Option<String> = redis::cmd("GET")
                .arg(keys.node(&owner.node))
                .query_async(&mut conn)
                .await?;
            Ok(node
                .and_then(|n| serde_json::from_str::<NodeInfo>(&n).ok())
                .map(|n| n.url))
        })
        .await
    }

    /// Marks the node as draining in its registration (it takes no new publish).
    pub fn set_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// The nodes registered now, this one included when Redis has it.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClusterError> {
        let mut conn = self.inner.conn.clone();
        let keys = self.inner.keys.clone();
        let (ids, values) = self
            .call("nodes", async move {
                let ids: Vec<String> = redis::cmd("SMEMBERS")
                    .arg(keys.nodes())
                    .query_async(&mut conn)
                    .await?;
                if ids.is_empty() {
                    return Ok((ids, Vec::new()));
                }
                let node_keys: Vec<String> = ids.iter().map(|id| keys.node(id)).collect();
                let values: Vec<Option<String>> = redis::cmd("MGET")
                    .arg(node_keys)
                    .query_async(&mut conn)
                    .await?;
                Ok((ids, values))
            })
            .await
            .map_err(ClusterError::Unavailable)?;
        let mut nodes = Vec::new();
        let mut gone = Vec::new();
        for (id, v) in ids.into_iter().zip(values) {
            match v.and_then(|v| serde_json::from_str::<NodeInfo>(&v).ok()) {
                Some(n) => nodes.push(n),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Registrations that expired: their nodes stopped renewing them.
            let mut conn = self.inner.conn.clone();
            let key = self.inner.keys.nodes();
            let _ = self
                .call("forget nodes", async move {
                    redis::cmd("SREM")
                        .arg(key)
                        .arg(gone)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await;
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// The node a publish refused here (full, or draining) should go to: of the other
    /// nodes that are not draining and below their capacity, the one with the most room
    /// (ties: the lowest id). `None` when there is none, or Redis does not answer.
    pub async fn best_node(&self) -> Option<NodeInfo> {
        let nodes = self.nodes().await.ok()?;
        pick(&self.inner.node, nodes)
    }

    /// Leaves the cluster (shutdown): the registration goes at once, and the claims went
    /// with their broadcasts.
    pub async fn leave(&self) {
        let mut conn = self.inner.conn.clone();
        let keys = self.inner.keys.clone();
        let node = self.inner.node.clone();
        let _ = self
            .call("leave", async move {
                redis::pipe()
                    .cmd("DEL")
                    .arg(keys.node(&node))
                    .cmd("SREM")
                    .arg(keys.nodes())
                    .arg(&node)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
        info!(node = %self.inner.node, "cluster: left");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, streams: usize, capacity: usize, draining: bool) -> NodeInfo {
        NodeInfo {
            id: id.into(),
            url: format!("http://{id}"),
            streams,
            capacity,
            draining,
        }
    }

    #[test]
    fn placement_takes_the_other_node_with_most_room() {
        let nodes = vec![
            node("a", 0, 16, false),
            node("b", 4, 16, false),
            node("c", 2, 16, false),
            node("d", 0, 16, true),
            node("e", 8, 8, false),
            node("f", 2, 16, false),
        ];
        // "a" is this node; "d" drains; "e" is full; "c" and "f" tie: the lower id.
        assert_eq!(pick("a", nodes.clone()).map(|n| n.id), Some("c".into()));
        assert_eq!(pick("a", vec![node("a", 0, 4, false)]), None);
        assert_eq!(pick("x", vec![node("e", 8, 8, false)]), None);
    }
}
