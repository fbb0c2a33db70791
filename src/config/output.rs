//! `[record]` and `[s3]`: the outputs beside the live origin (recording to disk, upload
//! to S3-compatible object storage), with the checks on them. Plain data; the output
//! module builds its writers from it.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, invalid};

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

impl RecordConfig {
    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if (self.enabled || self.allow_request) && self.directory.is_empty() {
            return Err(invalid("record.directory", "must be set to record"));
        }
        Ok(())
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

impl S3Config {
    /// Rejects values that would make a broken server, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled {
            let e = &self.endpoint;
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "s3.endpoint",
                    "must start with http:// or https://",
                ));
            }
            if self.bucket.is_empty() {
                return Err(invalid("s3.bucket", "must be set when s3.enabled"));
            }
            if self.access_key.is_empty() != self.secret_key.is_empty() {
                return Err(invalid(
                    "s3.access_key",
                    "and s3.secret_key must be set together (or both empty: AWS_* environment)",
                ));
            }
        }
        Ok(())
    }
}
