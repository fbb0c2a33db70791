//! The play-decision cache: players reload a live playlist every few seconds, and each
//! reload must not cost a callback round trip. A decision (allow, or a refusal with its
//! status) is kept for `auth.callback.play_cache`, keyed by the stream and a SHA-256 of the
//! token, so the cache holds no token. "No answer" (503) is never cached. Bounded: at
//! [`MAX_ENTRIES`] the expired entries go, and if that frees nothing, all of them. One
//! `std::sync::Mutex`, held for a lookup or an insert, never across `.await`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::error::Refusal;

/// Most decisions kept.
pub const MAX_ENTRIES: usize = 16_384;

type Key = [u8; 32];

/// A decision and until when it holds.
type Entry = (Instant, Result<(), Refusal>);

/// Cached decisions.
pub struct DecisionCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, Entry>>,
}

impl DecisionCache {
    /// A cache keeping each decision for `ttl` (zero: nothing is kept).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    fn key(stream: &str, token: Option<&str>) -> Key {
        let mut h = Sha256::new();
        h.update(stream.as_bytes());
        // The stream name never holds a NUL; a missing token differs from an empty one.
        match token {
            Some(t) => {
                h.update([0u8, 1]);
                h.update(t.as_bytes());
            }
            None => h.update([0u8, 0]),
        }
        h.finalize().into()
    }

    /// The decision cached for `stream` and `token`, if still fresh.
    pub fn get(&self, stream: &str, token: Option<&str>) -> Option<Result<(), Refusal>> {
        let key = Self::key(stream, token);
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key)
            .filter(|(until, _)| Instant::now() < *until)
            .map(|(_, d)| d.clone())
    }

    /// Keeps `decision` (unless it is "no answer").
    pub fn put(&self, stream: &str, token: Option<&str>, decision: &Result<(), Refusal>) {
        if self.ttl.is_zero() || matches!(decision, Err(Refusal::Unavailable(_))) {
            return;
        }
        let key = Self::key(stream, token);
        let now = Instant::now();
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (until, _)| now < *until);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (now + self.ttl, decision.clone()));
    }

    /// Decisions held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::error::Unavailable;

    #[test]
    fn keeps_decisions_not_outages() {
        let c = DecisionCache::new(Duration::from_secs(60));
        c.put("a", Some("t"), &Ok(()));
        c.put("b", Some("t"), &Err(Refusal::CallbackForbidden));
        c.put(
            "c",
            Some("t"),
            &Err(Refusal::Unavailable(Unavailable::CallbackStatus(500))),
        );
        assert_eq!(c.get("a", Some("t")), Some(Ok(())));
        assert_eq!(c.get("a", Some("u")), None);
        assert_eq!(c.get("a", None), None);
        assert_eq!(c.get("b", Some("t")), Some(Err(Refusal::CallbackForbidden)));
        assert_eq!(c.get("c", Some("t")), None);
        assert_eq!(c.len(), 2);
        let off = DecisionCache::new(Duration::ZERO);
        off.put("a", None, &Ok(()));
        assert!(off.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let c = DecisionCache::new(Duration::from_secs(60));
        for i in 0..MAX_ENTRIES + 10 {
            c.put(&format!("s{i}"), None, &Ok(()));
        }
        assert!(c.len() <= MAX_ENTRIES);
    }
}
