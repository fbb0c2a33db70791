//! `[media]`: where the transcoding ladder comes from (inline, a file, or the embedded
//! `pipelines/ladder.toml`), with its validation. Reads the ladder file at start only,
//! never while streams run.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::media::Ladder;

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

    /// Rejects a ladder that does not resolve or does not validate, naming the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.resolve_ladder()?
            .validate()
            .map_err(|message| ConfigError::Invalid {
                key: "media.ladder",
                message,
            })?;
        Ok(())
    }
}
