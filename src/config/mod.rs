//! Typed configuration: one TOML file (optional), every key defaulted, validated at start.
//!
//! `deploy/whipcast.toml` documents every key. Components receive their own sub-struct
//! (`&IceConfig`, `&HlsConfig`, …), never the whole [`Config`]. `validate()` names the key
//! at fault so a bad file fails at start with a message a user can act on.
//!
//! One file per section, each with its own checks: `server`, `auth`, `ice`, `media`,
//! `hls`, and `output` (`[record]` and `[s3]`). This file loads and parses the whole and
//! runs the sections' checks. Loading reads files: it runs at start, before anything is
//! served, never on the runtime's hot path.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod auth;
mod cluster;
mod hls;
mod ice;
mod limits;
mod media;
mod output;
mod server;

pub use auth::{AuthConfig, CallbackConfig, JwtConfig, WebhookConfig};
pub use cluster::{ClusterConfig, RedisDown};
pub use hls::{DvrOverflow, HlsConfig};
pub use ice::IceConfig;
pub use limits::LimitsConfig;
pub use media::MediaConfig;
pub use output::{RecordConfig, S3Config};
pub use server::ServerConfig;

/// Errors found while loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown keys / wrong types.
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// Which file (or "embedded default").
        origin: String,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A value is out of range.
    #[error("invalid config: `{key}` {message}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener and public URL.
    pub server: ServerConfig,
    /// Publishing authorisation.
    pub auth: AuthConfig,
    /// ICE / UDP transport of the WebRTC ingest.
    pub ice: IceConfig,
    /// Transcoding ladder and encoder settings.
    pub media: MediaConfig,
    /// HLS packaging and retention.
    pub hls: HlsConfig,
    /// Recording to disk (live-to-VOD).
    pub record: RecordConfig,
    /// Upload to S3-compatible object storage.
    pub s3: S3Config,
    /// What one client, and all of them together, may hold.
    pub limits: LimitsConfig,
    /// Several nodes as one service, through Redis (off by default).
    pub cluster: ClusterConfig,
}

impl Config {
    /// Loads `path` (or the defaults when `None`) and validates it.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::parse(&text, &p.display().to_string())?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })
    }

    /// Rejects values that would make a broken server, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.hls.validate()?;
        self.server.validate()?;
        self.ice.validate()?;
        self.auth.validate()?;
        self.record.validate()?;
        self.s3.validate()?;
        self.limits.validate(self.hls.segment_duration)?;
        self.cluster.validate()?;
        // Last: resolving the ladder may read a file.
        self.media.validate()
    }
}

/// A value out of range at `key`.
fn invalid(key: &'static str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::default();
        c.validate().expect("defaults valid");
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert!(c.ice.udp_addrs.iter().all(|a| a.is_loopback()));
    }

    #[test]
    fn sample_file_is_complete_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/whipcast.toml");
        let c = Config::load(Some(&path)).expect("deploy/whipcast.toml loads");
        let d = Config::default();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.server.max_sdp_bytes, d.server.max_sdp_bytes);
        assert_eq!(c.server.max_streams, d.server.max_streams);
        assert_eq!(c.server.shutdown_linger, d.server.shutdown_linger);
        assert_eq!(c.ice.udp_addrs, d.ice.udp_addrs);
        assert_eq!(c.ice.connect_timeout, d.ice.connect_timeout);
        assert_eq!(c.ice.media_timeout, d.ice.media_timeout);
        assert_eq!(c.ice.max_remote_candidates, d.ice.max_remote_candidates);
        assert_eq!(c.ice.candidate_networks, d.ice.candidate_networks);
        assert_eq!(c.hls.segment_duration, d.hls.segment_duration);
        assert_eq!(c.hls.window_segments, d.hls.window_segments);
        assert_eq!(c.hls.retain_segments, d.hls.retain_segments);
        assert_eq!(c.hls.grace_period, d.hls.grace_period);
        assert_eq!(c.hls.part_duration, d.hls.part_duration);
        assert_eq!(c.hls.max_blocking_requests, d.hls.max_blocking_requests);
        assert_eq!(c.record.enabled, d.record.enabled);
        assert_eq!(c.record.allow_request, d.record.allow_request);
        assert_eq!(c.record.directory, d.record.directory);
        assert_eq!(c.s3.enabled, d.s3.enabled);
        assert_eq!(c.s3.endpoint, d.s3.endpoint);
        assert_eq!(c.s3.bucket, d.s3.bucket);
        assert_eq!(c.s3.prefix, d.s3.prefix);
        assert_eq!(c.s3.region, d.s3.region);
        assert_eq!(c.s3.path_style, d.s3.path_style);
        assert_eq!(c.s3.retry_for, d.s3.retry_for);
        assert_eq!(c.s3.acl, d.s3.acl);
        assert_eq!(c.hls.dvr_window, d.hls.dvr_window);
        assert_eq!(c.hls.stream_memory_mib, d.hls.stream_memory_mib);
        assert_eq!(c.hls.dvr_overflow, d.hls.dvr_overflow);
        assert_eq!(c.hls.spill_directory, d.hls.spill_directory);
        assert_eq!(c.limits, d.limits);
        let (a, b) = (&c.auth, &d.auth);
        assert_eq!(a.jwt.secret, b.jwt.secret);
        assert_eq!(a.jwt.jwks_url, b.jwt.jwks_url);
        assert_eq!(a.jwt.claim, b.jwt.claim);
        assert_eq!(a.jwt.audience, b.jwt.audience);
        assert_eq!(a.jwt.issuer, b.jwt.issuer);
        assert_eq!(a.jwt.leeway, b.jwt.leeway);
        assert_eq!(a.jwt.jwks_timeout, b.jwt.jwks_timeout);
        assert_eq!(a.jwt.jwks_max_age, b.jwt.jwks_max_age);
        assert_eq!(a.jwt.jwks_min_refresh, b.jwt.jwks_min_refresh);
        assert_eq!(a.jwt.on_play, b.jwt.on_play);
        assert_eq!(a.callback.url, b.callback.url);
        assert_eq!(a.callback.timeout, b.callback.timeout);
        assert_eq!(a.callback.fail_open, b.callback.fail_open);
        assert_eq!(a.callback.on_play, b.callback.on_play);
        assert_eq!(a.callback.play_cache, b.callback.play_cache);
        assert_eq!(a.webhooks.url, b.webhooks.url);
        assert_eq!(a.webhooks.secret, b.webhooks.secret);
        assert_eq!(a.webhooks.timeout, b.webhooks.timeout);
        assert_eq!(a.webhooks.max_attempts, b.webhooks.max_attempts);
        assert_eq!(a.webhooks.backoff, b.webhooks.backoff);
        assert_eq!(a.webhooks.queue, b.webhooks.queue);
    }

    #[test]
    fn container_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container.toml");
        let c = Config::load(Some(&path)).expect("deploy/container.toml loads");
        assert_eq!(c.ice.port_min, 40000);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[hls]\nsegment_durration = \"2s\"\n", "t.toml")
            .expect_err("unknown key");
        assert!(err.to_string().contains("segment_durration"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let c = Config::parse("[hls]\nsegment_duration = \"100ms\"\n", "t").expect("parses");
        let err = c.validate().expect_err("too short");
        assert!(err.to_string().contains("hls.segment_duration"), "{err}");
        let c = Config::parse("[hls]\npart_duration = \"300ms\"\n", "t").expect("parses");
        assert!(
            c.validate()
                .expect_err("300ms does not divide 2s")
                .to_string()
                .contains("hls.part_duration")
        );
        for bad in [
            "part_hold_back_factor = 1.5",
            "part_hold_back_factor = 11",
            "start_offset = \"7s\"",
        ] {
            let c = Config::parse(&format!("[hls]\n{bad}\n"), "t").expect("parses");
            let key = bad.split(' ').next().expect("key");
            assert!(
                c.validate()
                    .expect_err(bad)
                    .to_string()
                    .contains(&format!("hls.{key}")),
                "{bad}"
            );
        }
        let c = Config::parse("[ice]\nport_min = 5000\n", "t").expect("parses");
        assert!(
            c.validate()
                .expect_err("half range")
                .to_string()
                .contains("ice.port_min")
        );
        let c = Config::parse("[ice]\nmax_remote_candidates = 0\n", "t").expect("parses");
        assert!(
            c.validate()
                .expect_err("no candidate at all")
                .to_string()
                .contains("ice.max_remote_candidates")
        );
        let c = Config::parse(
            "[ice]\ncandidate_networks = [\"10.0.0.0/8\", \"::1/128\"]\n",
            "t",
        )
        .expect("CIDR list parses");
        assert_eq!(c.ice.candidate_networks.map(|n| n.len()), Some(2));
        let err = Config::parse("[ice]\ncandidate_networks = [\"10.0.0.0/33\"]\n", "t")
            .expect_err("bad CIDR");
        assert!(err.to_string().contains("candidate_networks"), "{err}");
    }
}
