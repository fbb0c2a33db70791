//! The JWK Set (RFC 7517 §5) of `auth.jwt.jwks_url`: fetched on first use, cached, and
//! fetched again when a token names a `kid` the cache lacks (a key rotation) or the keys
//! are older than `jwks_max_age`. Fetches are serialized and at most one per
//! `jwks_min_refresh`, so tokens with made-up `kid`s cannot make whipcast hammer the
//! identity provider. Only RS256 (RSA) and ES256 (P-256) signature keys are kept.
//!
//! The key set sits behind a `std::sync::RwLock` held for a copy, never across `.await`;
//! the fetch itself is serialized by a `tokio::sync::Mutex`.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::{info, warn};

use super::error::{Refusal, TokenError, Unavailable};
use crate::metrics::AuthCounters;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Most keys kept from one document.
const MAX_KEYS: usize = 64;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// Its `kid`, if the document gave one.
    pub kid: Option<String>,
    /// RS256 or ES256.
    pub alg: Algorithm,
    /// The public key.
    pub key: Arc<DecodingKey>,
}

#[derive(Default)]
struct KeySet {
    keys: Vec<Key>,
    /// When the keys were read; `None` before the first successful fetch.
    fetched: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<String>,
}

/// The cached key set; shared by every verification.
pub struct Jwks {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
    max_age: Duration,
    min_refresh: Duration,
    set: RwLock<KeySet>,
    /// When the last fetch started; the lock serializes fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    counters: AuthCounters,
}

impl Jwks {
    /// A cache of the keys at `url` (nothing is fetched yet).
    pub fn new(
        url: &str,
        client: reqwest::Client,
        cfg: &crate::config::JwtConfig,
        counters: AuthCounters,
    ) -> Self {
        Self {
            url: url.to_string(),
            client,
            timeout: cfg.jwks_timeout,
            max_age: cfg.jwks_max_age,
            min_refresh: cfg.jwks_min_refresh,
            set: RwLock::default(),
            last_fetch: tokio::sync::Mutex::new(None),
            counters,
        }
    }

    /// The keys that may have signed a token with `kid` and `alg`: the one with that
    /// `kid`, or without a `kid` every key of that algorithm.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Result<Vec<Key>, Refusal> {
        let (found, fresh) = self.lookup(kid, alg);
        if !found.is_empty() && fresh {
            return Ok(found);
        }
        let fetch_error = self.refresh().await.err();
        let (found, _) = self.lookup(kid, alg);
        if !found.is_empty() {
            return Ok(found);
        }
        // No key: a fetch that failed (now, or the last one when rate-limited) means the
        // answer is unknown, not no.
        let failed = fetch_error.or_else(|| self.read().last_error.clone());
        match failed {
            Some(e) => Err(Refusal::Unavailable(Unavailable::Jwks(e))),
            None => Err(Refusal::InvalidToken(TokenError::UnknownKey(
                kid.unwrap_or("").chars().take(64).collect(),
            ))),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        // Plain data: still consistent after a panic elsewhere.
        self.set.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Matching keys, and whether the set is younger than `jwks_max_age`.
    fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> (Vec<Key>, bool) {
        let set = self.read();
        let fresh = set.fetched.is_some_and(|t| t.elapsed() < self.max_age);
        let keys = set
            .keys
            .iter()
            .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid))
            .cloned()
            .collect();
        (keys, fresh)
    }

    /// Fetches the set unless a fetch started less than `jwks_min_refresh` ago (then the
    /// caller uses what that fetch read). Errors say why the fetch failed.
    async fn refresh(&self) -> Result<(), String> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let result = self.fetch().await;
        self.counters.jwks_fetched(result.is_ok());
        let mut set = self.set.write().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(keys) => {
                info!(url = %self.url, keys = keys.len(), "JWKS fetched");
                set.keys = keys;
                set.fetched = Some(Instant::now());
                set.last_error = None;
                Ok(())
            }
            Err(e) => {
                warn!(url = %self.url, error = %e, "JWKS fetch failed");
                set.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, String> {
        let resp = self
            .client
            .get(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| crate::error_chain(&e))?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body = super::read_capped(resp, MAX_JWKS_BYTES).await?;
        parse(&body)
    }
}

/// The usable keys of a JWK Set document; keys of other kinds are skipped.
pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let doc: Document = serde_json::from_slice(body).map_err(|e| format!("not a JWK Set: {e}"))?;
    let keys: Vec<Key> = doc
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter_map(|jwk| key(&jwk))
        .take(MAX_KEYS)
        .collect();
    if keys.is_empty() {
        return Err("the JWK Set has no RS256 or ES256 signature key".into());
    }
    Ok(keys)
}

/// An RS256 or ES256 (P-256) signature key (RFC 7518 §3.1: a key's `alg`, when given,
/// fixes its algorithm).
fn key(jwk: &Jwk) -> Option<Key> {
    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
        return None;
    }
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
            if p.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        key: Arc::new(key),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_signature_keys_only() {
        let doc = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec1","use":"sig","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
            {"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"},
            {"kty":"oct","kid":"hmac","k":"c2VjcmV0"},
            {"kty":"weird"}
        ]}"#;
        let keys = parse(doc).expect("parses");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ec1"));
        assert_eq!(keys[0].alg, Algorithm::ES256);
        assert!(parse(br#"{"keys":[]}"#).is_err());
        assert!(parse(b"<html>").is_err());
    }
}
