//! `[auth]`: who may publish (and, optionally, play), with the checks on it: a static
//! bearer token and per-stream tokens; JWT bearer tokens (`[auth.jwt]`, RFC 7519); an HTTP
//! callback to the operator's authorization service (`[auth.callback]`); and the lifecycle
//! webhooks (`[auth.webhooks]`). Plain data; [`crate::auth`] and the ingest act on it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Bearer token every publisher must present; empty means publishing is open.
    pub token: String,
    /// Per-stream tokens; a stream listed here needs its own token (the global one is not
    /// accepted for it).
    pub streams: BTreeMap<String, String>,
    /// JWT bearer tokens.
    pub jwt: JwtConfig,
    /// The operator's authorization callback.
    pub callback: CallbackConfig,
    /// Lifecycle webhooks.
    pub webhooks: WebhookConfig,
}

/// `[auth.jwt]`: bearer tokens that are JWTs (RFC 7519), signed with HS256 and a shared
/// secret or with RS256 / ES256 and a key of a JWKS (RFC 7517).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// HS256 shared secret (at least 32 bytes); empty: HS256 tokens are refused.
    pub secret: String,
    /// URL of a JWK Set with the RS256 / ES256 public keys; empty: none.
    pub jwks_url: String,
    /// The private claim that lists what the token grants: `{"<claim>": {"publish":
    /// "cam-*", "play": ["cam-1", "lobby"]}}`.
    pub claim: String,
    /// Required `aud` (one of the token's audiences); empty: not checked.
    pub audience: String,
    /// Required `iss`; empty: not checked.
    pub issuer: String,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    /// Fetching the JWKS gives up after this long.
    #[serde(with = "humantime_serde")]
    pub jwks_timeout: Duration,
    /// Keys older than this are fetched again on their next use.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// At most one JWKS fetch per this interval, whatever the tokens' `kid`s.
    #[serde(with = "humantime_serde")]
    pub jwks_min_refresh: Duration,
    /// HLS playlist requests need a token that grants `play` on the stream too.
    pub on_play: bool,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            secret: String::new(),
            jwks_url: String::new(),
            claim: "whipcast".to_string(),
            audience: String::new(),
            issuer: String::new(),
            leeway: Duration::from_secs(5),
            jwks_timeout: Duration::from_secs(5),
            jwks_max_age: Duration::from_secs(15 * 60),
            jwks_min_refresh: Duration::from_secs(30),
            on_play: false,
        }
    }
}

impl JwtConfig {
    /// Whether bearer tokens are JWTs.
    pub fn enabled(&self) -> bool {
        !self.secret.is_empty() || !self.jwks_url.is_empty()
    }
}

/// `[auth.callback]`: a POST to the operator's service on every publish (and, optionally,
/// every uncached playlist request), which allows (2xx) or denies (401 / 403).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbackConfig {
    /// URL of the service; empty: no callback.
    pub url: String,
    /// The service must answer within this.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow when the service cannot answer (timeout, unreachable, 5xx); false: refuse
    /// with 503 and `Retry-After`.
    pub fail_open: bool,
    /// Ask about HLS playlist requests too.
    pub on_play: bool,
    /// How long a play decision is reused for the same stream and token.
    #[serde(with = "humantime_serde")]
    pub play_cache: Duration,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout: Duration::from_secs(2),
            fail_open: false,
            on_play: false,
            play_cache: Duration::from_secs(10),
        }
    }
}

/// `[auth.webhooks]`: JSON events POSTed to the operator (publish started / ended,
/// recording finished), signed with HMAC-SHA256 (RFC 2104).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Where events go; empty: no webhooks.
    pub url: String,
    /// HMAC key of the `X-Whipcast-Signature` header; required with `url`.
    pub secret: String,
    /// One delivery attempt gives up after this.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per event (the first included) after a 5xx, 408, 429 or timeout.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled for each further one (at most 30 s).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Events waiting for delivery; beyond it new events are dropped (and counted).
    pub queue: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: String::new(),
            timeout: Duration::from_secs(5),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            queue: 256,
        }
    }
}

impl AuthConfig {
    /// The token required to publish `stream`, if any.
    pub fn required_token(&self, stream: &str) -> Option<&str> {
        match self.streams.get(stream) {
            Some(t) => Some(t.as_str()),
            None if !self.token.is_empty() => Some(self.token.as_str()),
            None => None,
        }
    }

    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for name in self.streams.keys() {
            if !crate::StreamKey::is_valid(name) {
                return Err(invalid(
                    "auth.streams",
                    &format!("{name:?} is not a valid stream name"),
                ));
            }
        }
        self.validate_jwt()?;
        self.validate_callback()?;
        self.validate_webhooks()
    }

    fn validate_jwt(&self) -> Result<(), ConfigError> {
        let j = &self.jwt;
        if !j.enabled() {
            if j.on_play {
                return Err(invalid(
                    "auth.jwt.on_play",
                    "needs auth.jwt.secret or auth.jwt.jwks_url",
                ));
            }
            return Ok(());
        }
        // Both read the `Authorization: Bearer` header: a static token is not a JWT.
        if !self.token.is_empty() || !self.streams.is_empty() {
            return Err(invalid(
                "auth.jwt",
                "replaces auth.token and auth.streams (both read the bearer token): leave those empty",
            ));
        }
        // RFC 7518 §3.2: an HS256 key must be at least as long as the hash (256 bits).
        if !j.secret.is_empty() && j.secret.len() < 32 {
            return Err(invalid("auth.jwt.secret", "must be at least 32 bytes"));
        }
        if !j.jwks_url.is_empty() {
            http_url("auth.jwt.jwks_url", &j.jwks_url)?;
        }
        if j.claim.is_empty() {
            return Err(invalid("auth.jwt.claim", "must not be empty"));
        }
        if j.leeway > Duration::from_secs(300) {
            return Err(invalid("auth.jwt.leeway", "must be at most 5m"));
        }
        within("auth.jwt.jwks_timeout", j.jwks_timeout, 100, 60_000)?;
        within(
            "auth.jwt.jwks_min_refresh",
            j.jwks_min_refresh,
            0,
            3_600_000,
        )?;
        if j.jwks_max_age < j.jwks_min_refresh {
            return Err(invalid(
                "auth.jwt.jwks_max_age",
                "must be at least auth.jwt.jwks_min_refresh",
            ));
        }
        Ok(())
    }

    fn validate_callback(&self) -> Result<(), ConfigError> {
        let c = &self.callback;
        if c.url.is_empty() {
            if c.on_play {
                return Err(invalid("auth.callback.on_play", "needs auth.callback.url"));
            }
            return Ok(());
        }
        http_url("auth.callback.url", &c.url)?;
        within("auth.callback.timeout", c.timeout, 50, 60_000)?;
        within("auth.callback.play_cache", c.play_cache, 0, 3_600_000)
    }

    fn validate_webhooks(&self) -> Result<(), ConfigError> {
        let w = &self.webhooks;
        if w.url.is_empty() {
            return Ok(());
        }
        http_url("auth.webhooks.url", &w.url)?;
        if w.secret.is_empty() {
            return Err(invalid(
                "auth.webhooks.secret",
                "must be set with auth.webhooks.url (it signs every event)",
            ));
        }
        within("auth.webhooks.timeout", w.timeout, 50, 60_000)?;
        within("auth.webhooks.backoff", w.backoff, 10, 60_000)?;
        if !(1..=20).contains(&w.max_attempts) {
            return Err(invalid("auth.webhooks.max_attempts", "must be 1 to 20"));
        }
        if !(1..=65_536).contains(&w.queue) {
            return Err(invalid("auth.webhooks.queue", "must be 1 to 65536"));
        }
        Ok(())
    }
}

/// `value` must be an absolute http(s) URL.
fn http_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(invalid(key, "must be an absolute http:// or https:// URL")),
    }
}

/// `d` must lie in `min_ms..=max_ms` milliseconds.
fn within(key: &'static str, d: Duration, min_ms: u64, max_ms: u64) -> Result<(), ConfigError> {
    let ms = d.as_millis();
    if ms < u128::from(min_ms) || ms > u128::from(max_ms) {
        return Err(invalid(
            key,
            &format!("must be from {min_ms} ms to {max_ms} ms"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn per_stream_token_overrides_global() {
        let c = Config::parse("[auth]\ntoken = \"g\"\n[auth.streams]\ncam = \"c\"\n", "t")
            .expect("parses");
        assert_eq!(c.auth.required_token("cam"), Some("c"));
        assert_eq!(c.auth.required_token("other"), Some("g"));
        assert_eq!(AuthConfig::default().required_token("x"), None);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text, "t")
            .expect("parses")
            .validate()
            .expect_err("invalid")
            .to_string()
    }

    #[test]
    fn bad_values_name_their_key() {
        let secret = "s".repeat(32);
        for (text, key) in [
            ("[auth.jwt]\nsecret = \"short\"\n", "auth.jwt.secret"),
            ("[auth.jwt]\njwks_url = \"ftp://x\"\n", "auth.jwt.jwks_url"),
            ("[auth.jwt]\non_play = true\n", "auth.jwt.on_play"),
            (
                &format!("[auth]\ntoken = \"t\"\n[auth.jwt]\nsecret = \"{secret}\"\n"),
                "`auth.jwt`",
            ),
            (
                &format!("[auth.jwt]\nsecret = \"{secret}\"\nleeway = \"1h\"\n"),
                "auth.jwt.leeway",
            ),
            (
                "[auth.callback]\nurl = \"not a url\"\n",
                "auth.callback.url",
            ),
            (
                "[auth.callback]\nurl = \"http://a\"\ntimeout = \"0s\"\n",
                "auth.callback.timeout",
            ),
            ("[auth.callback]\non_play = true\n", "auth.callback.on_play"),
            (
                "[auth.webhooks]\nurl = \"http://a\"\n",
                "auth.webhooks.secret",
            ),
            (
                "[auth.webhooks]\nurl = \"http://a\"\nsecret = \"k\"\nmax_attempts = 0\n",
                "auth.webhooks.max_attempts",
            ),
            (
                "[auth.webhooks]\nurl = \"http://a\"\nsecret = \"k\"\nqueue = 0\n",
                "auth.webhooks.queue",
            ),
        ] {
            let e = error_of(text);
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = Config::parse("[auth.callback]\nurll = \"x\"\n", "t").expect_err("unknown");
        assert!(e.to_string().contains("urll"), "{e}");
    }

    #[test]
    fn a_full_auth_section_is_valid() {
        let text = format!(
            "[auth.jwt]\nsecret = \"{}\"\njwks_url = \"https://idp.example/jwks.json\"\non_play = true\n\
             [auth.callback]\nurl = \"http://127.0.0.1:9/auth\"\nfail_open = true\non_play = true\n\
             [auth.webhooks]\nurl = \"http://127.0.0.1:9/hooks\"\nsecret = \"k\"\n",
            "s".repeat(32)
        );
        let c = Config::parse(&text, "t").expect("parses");
        c.validate().expect("valid");
        assert!(c.auth.jwt.enabled());
    }
}
