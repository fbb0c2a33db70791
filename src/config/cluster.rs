//! `[cluster]`: several whipcast nodes acting as one service, coordinated through Redis
//! (or Valkey). Off by default: without `cluster.redis_url` a node is a single node and
//! needs no Redis. Plain data read once at start; `cluster` acts on it.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// What a node does with a new publish while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RedisDown {
    /// Refuse it with 503: no name can go live on two nodes (the default).
    #[default]
    Refuse,
    /// Let it go live on this node alone; the claim is written to Redis when it is back,
    /// and if another node claimed the name meanwhile, the higher fencing token wins.
    Local,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port/db` (or `rediss://` for TLS); unset: no cluster.
    pub redis_url: Option<String>,
    /// This node's id in the cluster; default: a random one per process.
    pub node_id: Option<String>,
    /// Prefix of every key this cluster writes, so clusters can share one Redis.
    pub key_prefix: String,
    /// How long a stream claim (and a node's registration) lives in Redis without being
    /// renewed: a node that dies frees its names within this time. Renewed every third of
    /// it.
    #[serde(with = "humantime_serde")]
    pub claim_ttl: Duration,
    /// A Redis command that has not answered within this time counts as Redis being down.
    #[serde(with = "humantime_serde")]
    pub redis_timeout: Duration,
    /// What a new publish gets while Redis is down.
    pub when_redis_down: RedisDown,
    /// On `SIGTERM` or `POST /api/drain`, how long the node keeps its live streams (new
    /// publishes go to other nodes) before it ends them and exits.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Bearer token of `POST /api/drain`; unset: the endpoint is off (404).
    pub admin_token: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            node_id: None,
            key_prefix: "whipcast".into(),
            claim_ttl: Duration::from_secs(10),
            redis_timeout: Duration::from_millis(500),
            when_redis_down: RedisDown::Refuse,
            drain_timeout: Duration::from_secs(30),
            admin_token: None,
        }
    }
}

impl ClusterConfig {
    /// Whether this node is part of a cluster.
    pub fn enabled(&self) -> bool {
        self.redis_url.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://")
                || url.starts_with("rediss://")
                || url.starts_with("unix://"))
        {
            return Err(invalid(
                "cluster.redis_url",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        {
            return Err(invalid(
                "cluster.node_id",
                "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'",
            ));
        }
        if self.key_prefix.is_empty() || self.key_prefix.contains(char::is_whitespace) {
            return Err(invalid(
                "cluster.key_prefix",
                "must be non-empty, without spaces",
            ));
        }
        // Renewed every third of the TTL: under 3 s the renewals come closer than Redis'
        // own timeouts allow for; over 60 s a dead node holds its names a minute.
        if self.claim_ttl < Duration::from_secs(3) || self.claim_ttl > Duration::from_secs(60) {
            return Err(invalid("cluster.claim_ttl", "must be between 3 s and 60 s"));
        }
        if self.redis_timeout.is_zero() || self.redis_timeout * 3 > self.claim_ttl {
            return Err(invalid(
                "cluster.redis_timeout",
                "must be above zero and at most a third of cluster.claim_ttl",
            ));
        }
        if self.drain_timeout > Duration::from_secs(3600) {
            return Err(invalid("cluster.drain_timeout", "must be at most 1 h"));
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return Err(invalid(
                "cluster.admin_token",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        let d = ClusterConfig::default();
        assert!(!d.enabled());
        assert!(d.validate().is_ok());
        let on = ClusterConfig {
            redis_url: Some("redis://127.0.0.1:6379".into()),
            node_id: Some("node-a".into()),
            ..d.clone()
        };
        assert!(on.enabled() && on.validate().is_ok());
        for bad in [
            ClusterConfig {
                redis_url: Some("http://x".into()),
                ..d.clone()
            },
            ClusterConfig {
                node_id: Some("a b".into()),
                ..d.clone()
            },
            ClusterConfig {
                claim_ttl: Duration::from_secs(1),
                ..d.clone()
            },
            ClusterConfig {
                redis_timeout: Duration::from_secs(5),
                ..d.clone()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
