//! `[server]`: the HTTP listener, the public URL, TLS and the publish limits, with the
//! checks on them. Plain data read once at start; nothing here opens a socket.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Base URL used for absolute `Location` headers and playback URLs, e.g.
    /// `https://live.example.com`. Empty: derived from the request's `Host` header.
    pub public_url: String,
    /// Directory of the web pages (`player/`). Empty: the `player/` directory next to the
    /// crate, if it exists.
    pub player_dir: String,
    /// Largest accepted SDP offer, bytes (mediamtx uses 128 KiB).
    pub max_sdp_bytes: usize,
    /// Most simultaneous live streams; further publishers get 503 + `Retry-After`.
    pub max_streams: usize,
    /// PEM certificate chain: with `tls_key`, the listener speaks HTTPS with HTTP/2.
    pub tls_cert: String,
    /// PEM private key for `tls_cert`.
    pub tls_key: String,
    /// On shutdown, how long HTTP keeps serving after every playlist got `EXT-X-ENDLIST`,
    /// so players and caches can read the final state.
    #[serde(with = "humantime_serde")]
    pub shutdown_linger: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            player_dir: String::new(),
            max_sdp_bytes: 128 * 1024,
            max_streams: 16,
            shutdown_linger: Duration::from_secs(2),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

impl ServerConfig {
    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_sdp_bytes < 1024 {
            return Err(invalid("server.max_sdp_bytes", "must be at least 1024"));
        }
        if self.max_streams == 0 {
            return Err(invalid("server.max_streams", "must be at least 1"));
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "server.public_url",
                "must start with http:// or https://",
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(invalid(
                "server.tls_cert",
                "and server.tls_key must be set together",
            ));
        }
        Ok(())
    }
}
