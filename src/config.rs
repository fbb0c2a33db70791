//! Typed configuration: one TOML file (optional), every key defaulted, validated at start.
//!
//! `deploy/whipcast.toml` documents every key. Components receive their own sub-struct
//! (`&IceConfig`, `&HlsConfig`, …), never the whole [`Config`]. `validate()` names the key
//! at fault so a bad file fails at start with a message a user can act on.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::media::Ladder;

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
}

/// `[limits]`: bounds on connections, so that no client (or crowd of idle ones) can take
/// the server's descriptors or memory away from the others. Each has a counter in
/// `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections (HTTP, HTTPS, WebSockets); the next one gets `503` and is closed.
    /// Lowered at start to fit the process's descriptor limit.
    pub max_connections: usize,
    /// Open connections per client address (an IPv6 client counts by its /64).
    pub max_connections_per_client: usize,
    /// From the moment the server waits for a request (a new connection, or a kept-alive
    /// one after its last response) until that request's headers are complete; a client
    /// that takes longer is closed (slowloris, idle keep-alive).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed, whatever it
    /// is doing. Must exceed a blocking playlist request's wait (3 × target duration).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request body (an SDP offer, a trickle fragment) must arrive within this time.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Concurrent HTTP/2 streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// On shutdown, after every broadcast ended: how long open connections get to finish
    /// before they are closed.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 8192,
            max_connections_per_client: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            h2_max_concurrent_streams: 128,
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// `[record]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordConfig {
    /// Record every stream.
    pub enabled: bool,
    /// Let a publisher ask for a recording of its stream with `?record=1` on the WHIP or
    /// WebSocket URL.
    pub allow_request: bool,
    /// Where recordings go: `<directory>/<stream>/<epoch>/`.
    pub directory: String,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_request: false,
            directory: "recordings".to_string(),
        }
    }
}

/// `[s3]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    /// Upload every stream's segments and playlists.
    pub enabled: bool,
    /// Endpoint URL, e.g. `https://s3.eu-west-1.amazonaws.com` or `http://127.0.0.1:9000`.
    pub endpoint: String,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix; objects go to `<prefix>/<stream>/…`.
    pub prefix: String,
    /// Region used in request signatures.
    pub region: String,
    /// Access key id; empty: `AWS_ACCESS_KEY_ID` (and `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN`) from the environment.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Path-style URLs (`endpoint/bucket/key`, what MinIO and most S3-compatible stores
    /// want); `false`: virtual-hosted (`bucket.endpoint/key`).
    pub path_style: bool,
    /// How long a failed upload is retried (exponential backoff) before it is given up.
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
    /// Canned ACL sent as `x-amz-acl` with every upload (e.g. `public-read` when players or
    /// a CDN read the bucket anonymously); empty: none (the bucket's policy decides, as
    /// with S3 buckets that have ACLs disabled).
    pub acl: String,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            region: "us-east-1".to_string(),
            access_key: String::new(),
            secret_key: String::new(),
            path_style: true,
            retry_for: Duration::from_secs(60),
            acl: String::new(),
        }
    }
}

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
}

/// `[ice]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IceConfig {
    /// Local addresses each peer connection binds its UDP socket on. Each becomes a host
    /// candidate. The default is loopback only; set the machine's public or LAN address (or
    /// `0.0.0.0` for every interface) to accept publishers from elsewhere.
    pub udp_addrs: Vec<IpAddr>,
    /// First UDP port of the range peers bind in; `0` (with `port_max = 0`) picks ephemeral
    /// ports. Open this range on the firewall.
    pub port_min: u16,
    /// Last UDP port of the range.
    pub port_max: u16,
    /// Public IPs to advertise instead of the bound ones (1:1 NAT, e.g. a cloud VM or a
    /// container with published ports).
    pub nat_1to1_ips: Vec<String>,
    /// STUN/TURN URLs given to WHIP clients in `Link` headers (RFC 9725 §4.6) and to the
    /// browser pages. Not contacted by the server itself.
    pub ice_servers: Vec<String>,
    /// How long a new session may take to connect and send video before it is dropped.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// A live stream whose video RTP stops for this long is ended.
    #[serde(with = "humantime_serde")]
    pub media_timeout: Duration,
}

impl Default for IceConfig {
    fn default() -> Self {
        Self {
            udp_addrs: vec![IpAddr::from([127, 0, 0, 1])],
            port_min: 0,
            port_max: 0,
            nat_1to1_ips: Vec::new(),
            ice_servers: Vec::new(),
            connect_timeout: Duration::from_secs(15),
            media_timeout: Duration::from_secs(10),
        }
    }
}

/// `[media]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Path of a ladder file (format of `pipelines/ladder.toml`). Empty: the embedded default.
    pub ladder_file: String,
    /// Inline ladder; takes precedence over `ladder_file`.
    pub ladder: Option<Ladder>,
}

impl MediaConfig {
    /// The ladder in force: inline, from file, or the embedded `pipelines/ladder.toml`.
    pub fn resolve_ladder(&self) -> Result<Ladder, ConfigError> {
        if let Some(l) = &self.ladder {
            return Ok(l.clone());
        }
        if !self.ladder_file.is_empty() {
            let path = PathBuf::from(&self.ladder_file);
            let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            return toml::from_str(&text).map_err(|e| ConfigError::Parse {
                origin: path.display().to_string(),
                message: e.to_string(),
            });
        }
        toml::from_str(crate::media::DEFAULT_LADDER).map_err(|e| ConfigError::Parse {
            origin: "embedded pipelines/ladder.toml".into(),
            message: e.to_string(),
        })
    }
}

/// `[hls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsConfig {
    /// Target segment duration. Keyframes are forced on this cadence in every rung.
    #[serde(with = "humantime_serde")]
    pub segment_duration: Duration,
    /// LL-HLS part duration (the muxer's CMAF chunk duration); `0s` turns LL-HLS off.
    /// Must divide `segment_duration` exactly (cmafmux 0.14.5 skips fragment boundaries
    /// otherwise, measured).
    #[serde(with = "humantime_serde")]
    pub part_duration: Duration,
    /// Most blocking playlist / preload-hint requests parked at once; beyond it: 503 with
    /// `Retry-After`.
    pub max_blocking_requests: usize,
    /// Segments listed in each live media playlist (Apple requires ≥ 6, AUTH 8.11).
    pub window_segments: usize,
    /// Segments kept downloadable after they leave the playlist (HLS2 §6.2.2: at least one
    /// playlist duration).
    pub retain_segments: usize,
    /// How long an ended stream's playlists and segments stay served.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
    /// DVR: how far back the live playlists reach (e.g. `"2h"`); `"0s"` = just
    /// `window_segments`. The playlists list max(window_segments, dvr_window /
    /// segment_duration) segments; players can seek back that far.
    #[serde(with = "humantime_serde")]
    pub dvr_window: Duration,
    /// Memory budget per stream (all renditions, listed and retained segments), MiB. What
    /// exceeds it is handled by `dvr_overflow`.
    pub stream_memory_mib: u64,
    /// Past the memory budget: `"trim"` drops the oldest segments (retained ones first, then
    /// listed ones down to three: the DVR window shrinks); `"disk"` moves the oldest
    /// segments' bytes to files under `spill_directory` and keeps listing them (falls back
    /// to trimming if the disk fails).
    pub dvr_overflow: DvrOverflow,
    /// Where `dvr_overflow = "disk"` writes (`<dir>/<stream>/<epoch>/<rendition>/<n>.m4s`;
    /// files are deleted as their segments leave the window, the directory with the stream).
    pub spill_directory: PathBuf,
}

/// `hls.dvr_overflow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DvrOverflow {
    /// Drop the oldest segments.
    Trim,
    /// Move the oldest segments to disk.
    Disk,
}

impl HlsConfig {
    /// Segments each media playlist lists: the live window, or the DVR window if longer.
    pub fn listed_segments(&self) -> usize {
        let seg = self.segment_duration.as_millis().max(1);
        let dvr = self.dvr_window.as_millis().div_ceil(seg) as usize;
        self.window_segments.max(dvr)
    }

    /// [`HlsConfig::stream_memory_mib`] in bytes.
    pub fn stream_memory_bytes(&self) -> usize {
        usize::try_from(self.stream_memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_duration: Duration::from_secs(2),
            part_duration: Duration::from_millis(200),
            max_blocking_requests: 10_000,
            window_segments: 6,
            retain_segments: 6,
            grace_period: Duration::from_secs(60),
            dvr_window: Duration::ZERO,
            // 6 + 6 segments of a 5 Mbit/s 1080p ladder (~9.5 Mbit/s) take ~30 MiB; this
            // leaves room for a DVR window of ~7 minutes at that rate, or hours at low ones.
            stream_memory_mib: 512,
            dvr_overflow: DvrOverflow::Trim,
            spill_directory: PathBuf::from("spill"),
        }
    }
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
        let invalid = |key, message: &str| ConfigError::Invalid {
            key,
            message: message.to_string(),
        };
        let seg = self.hls.segment_duration;
        if seg < Duration::from_millis(500) || seg > Duration::from_secs(20) {
            return Err(invalid(
                "hls.segment_duration",
                "must be between 500ms and 20s",
            ));
        }
        if !seg.subsec_millis().is_multiple_of(100) {
            return Err(invalid(
                "hls.segment_duration",
                "must be a multiple of 100ms (cmafmux cuts on exact multiples)",
            ));
        }
        let part = self.hls.part_duration;
        if !part.is_zero() {
            if part < Duration::from_millis(100) || part > seg / 2 {
                return Err(invalid(
                    "hls.part_duration",
                    "must be 0s (LL-HLS off) or between 100ms and half of hls.segment_duration",
                ));
            }
            if !seg.as_nanos().is_multiple_of(part.as_nanos()) {
                return Err(invalid(
                    "hls.part_duration",
                    "must divide hls.segment_duration exactly (e.g. 2s / 200ms)",
                ));
            }
        }
        if self.hls.dvr_window > Duration::from_secs(24 * 3600) {
            return Err(invalid("hls.dvr_window", "must be at most 24h"));
        }
        if self.hls.stream_memory_mib < 1 {
            return Err(invalid("hls.stream_memory_mib", "must be at least 1"));
        }
        if self.hls.dvr_overflow == DvrOverflow::Disk
            && self.hls.spill_directory.as_os_str().is_empty()
        {
            return Err(invalid(
                "hls.spill_directory",
                "must be set when hls.dvr_overflow = \"disk\"",
            ));
        }
        if self.hls.window_segments < 3 {
            return Err(invalid(
                "hls.window_segments",
                "must be at least 3 (HLS2 §6.2.2; Apple requires 6)",
            ));
        }
        let limits = &self.limits;
        if limits.max_connections < 16 {
            return Err(invalid("limits.max_connections", "must be at least 16"));
        }
        if limits.max_connections_per_client == 0
            || limits.max_connections_per_client > limits.max_connections
        {
            return Err(invalid(
                "limits.max_connections_per_client",
                "must be between 1 and limits.max_connections",
            ));
        }
        if limits.header_timeout < Duration::from_secs(1) {
            return Err(invalid("limits.header_timeout", "must be at least 1s"));
        }
        if limits.body_timeout < Duration::from_secs(1) {
            return Err(invalid("limits.body_timeout", "must be at least 1s"));
        }
        // A parked blocking reload answers within 3 × target duration (HLS2 §6.2.5.2).
        let blocking = Duration::from_secs(3 * crate::hls::target_duration(seg));
        if limits.idle_timeout <= blocking + Duration::from_secs(1) {
            return Err(invalid(
                "limits.idle_timeout",
                "must exceed 3 × the target duration (+1s): a blocking playlist request waits that long",
            ));
        }
        if limits.h2_max_concurrent_streams == 0 {
            return Err(invalid(
                "limits.h2_max_concurrent_streams",
                "must be at least 1",
            ));
        }
        if self.server.max_sdp_bytes < 1024 {
            return Err(invalid("server.max_sdp_bytes", "must be at least 1024"));
        }
        if self.server.max_streams == 0 {
            return Err(invalid("server.max_streams", "must be at least 1"));
        }
        let url = &self.server.public_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                "server.public_url",
                "must start with http:// or https://",
            ));
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return Err(invalid(
                "server.tls_cert",
                "and server.tls_key must be set together",
            ));
        }
        if self.ice.udp_addrs.is_empty() {
            return Err(invalid("ice.udp_addrs", "must list at least one address"));
        }
        if (self.ice.port_min == 0) != (self.ice.port_max == 0)
            || self.ice.port_min > self.ice.port_max
        {
            return Err(invalid(
                "ice.port_min",
                "and ice.port_max must both be 0 or form a range min <= max",
            ));
        }
        for name in self.auth.streams.keys() {
            if !crate::StreamKey::is_valid(name) {
                return Err(invalid(
                    "auth.streams",
                    &format!("{name:?} is not a valid stream name"),
                ));
            }
        }
        if (self.record.enabled || self.record.allow_request) && self.record.directory.is_empty() {
            return Err(invalid("record.directory", "must be set to record"));
        }
        if self.s3.enabled {
            let e = &self.s3.endpoint;
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "s3.endpoint",
                    "must start with http:// or https://",
                ));
            }
            if self.s3.bucket.is_empty() {
                return Err(invalid("s3.bucket", "must be set when s3.enabled"));
            }
            if self.s3.access_key.is_empty() != self.s3.secret_key.is_empty() {
                return Err(invalid(
                    "s3.access_key",
                    "and s3.secret_key must be set together (or both empty: AWS_* environment)",
                ));
            }
        }
        self.media
            .resolve_ladder()?
            .validate()
            .map_err(|message| ConfigError::Invalid {
                key: "media.ladder",
                message,
            })?;
        Ok(())
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
        let c = Config::parse("[ice]\nport_min = 5000\n", "t").expect("parses");
        assert!(
            c.validate()
                .expect_err("half range")
                .to_string()
                .contains("ice.port_min")
        );
    }

    #[test]
    fn per_stream_token_overrides_global() {
        let c = Config::parse("[auth]\ntoken = \"g\"\n[auth.streams]\ncam = \"c\"\n", "t")
            .expect("parses");
        assert_eq!(c.auth.required_token("cam"), Some("c"));
        assert_eq!(c.auth.required_token("other"), Some("g"));
        assert_eq!(AuthConfig::default().required_token("x"), None);
    }
}
