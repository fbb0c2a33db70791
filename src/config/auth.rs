//! `[auth]`: who may publish (a global bearer token, per-stream tokens), with the checks
//! on it. Plain data; comparing a presented token is the ingest's job.

use std::collections::BTreeMap;

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
        Ok(())
    }
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
}
