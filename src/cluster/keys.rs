//! The names of the keys a cluster keeps in Redis, and the text of a claim. Pure.
//!
//! ```text
//! {prefix}:claim:{stream}  "{node} {token}"   PX claim_ttl   who owns a stream name
//! {prefix}:fence           integer                            the last fencing token
//! {prefix}:hls:{stream}    "{next_seq} {disc_seq}" PX 1 h      where its numbering stands
//! {prefix}:node:{node}     JSON NodeInfo      PX claim_ttl   a live node and its load
//! {prefix}:nodes           set of node ids                    nodes that registered
//! ```
//!
//! A stream name is `[A-Za-z0-9_-]` (`StreamKey`) and a node id the same
//! (`cluster.node_id`), so neither can break out of its key or of a claim's text.

/// The keys of one cluster (one prefix).
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }

    pub(super) fn claim(&self, stream: &str) -> String {
        format!("{}:claim:{stream}", self.prefix)
    }

    pub(super) fn progress(&self, stream: &str) -> String {
        format!("{}:hls:{stream}", self.prefix)
    }

    pub(super) fn fence(&self) -> String {
        format!("{}:fence", self.prefix)
    }

    pub(super) fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    pub(super) fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
}

/// Who holds a stream name: a node, and the fencing token its claim was given. Tokens
/// only grow (one `INCR` per claim, cluster-wide), so of two nodes that each believe they
/// own a name, the higher token is the real owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The node's id.
    pub node: String,
    /// The claim's fencing token.
    pub token: u64,
}

impl Owner {
    /// The claim's text in Redis.
    pub(super) fn to_value(&self) -> String {
        format!("{} {}", self.node, self.token)
    }

    /// Reads a claim's text; `None` for anything this code did not write.
    pub(super) fn parse(value: &str) -> Option<Owner> {
        let (node, token) = value.split_once(' ')?;
        if node.is_empty() {
            return None;
        }
        Some(Owner {
            node: node.to_string(),
            token: token.parse().ok()?,
        })
    }
}

/// Where a stream's HLS numbering stood when its owner last reported it: the next media
/// sequence number, the discontinuity sequence, and how long ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The next media sequence number the owner would have published.
    pub next_seq: u64,
    /// The owner's `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub discontinuity_seq: u64,
    /// Since the report (Redis' clock: the key's TTL run down).
    pub age: std::time::Duration,
}

impl Progress {
    /// The text kept in Redis.
    pub(super) fn value(next_seq: u64, discontinuity_seq: u64) -> String {
        format!("{next_seq} {discontinuity_seq}")
    }

    /// Reads it back; `None` for anything this code did not write.
    pub(super) fn parse(value: &str, age: std::time::Duration) -> Option<Progress> {
        let (a, b) = value.split_once(' ')?;
        Some(Progress {
            next_seq: a.parse().ok()?,
            discontinuity_seq: b.parse().ok()?,
            age,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip() {
        let o = Owner {
            node: "node-a".into(),
            token: 42,
        };
        assert_eq!(o.to_value(), "node-a 42");
        assert_eq!(Owner::parse(&o.to_value()), Some(o));
        for bad in ["", "node-a", " 1", "node-a x", "node-a -1"] {
            assert_eq!(Owner::parse(bad), None, "{bad}");
        }
        let p = Progress::parse(&Progress::value(120, 3), std::time::Duration::ZERO);
        assert_eq!(p.map(|p| (p.next_seq, p.discontinuity_seq)), Some((120, 3)));
        assert_eq!(Progress::parse("x 3", std::time::Duration::ZERO), None);
        let k = Keys::new("wc");
        assert_eq!(k.claim("cam"), "wc:claim:cam");
        assert_eq!(k.node("n1"), "wc:node:n1");
    }
}
