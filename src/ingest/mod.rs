//! Ingest: who may publish what, and the registry of live broadcasts.
//!
//! The HTTP edges (`whip`, `ws`) only translate requests into [`Ingest`] calls; this module
//! checks the stream name, the token and the offer, reserves the name (409 on a second
//! publisher), answers through [`peer`](crate::peer), and spawns the stream's broadcast
//! task. The registry is a small map behind a `std::sync::Mutex`, never held across
//! `.await`.
//!
//! This file holds the [`Ingest`] handle and its admission checks (name, token, shutdown).
//! The rest, one concern per file:
//! - `publish`: the publish / unpublish flow, and the commands to a running broadcast;
//! - `registry`: which names and sessions are live, and the reservation of a name;
//! - `error`: [`IngestError`] and its one mapping to an HTTP status;
//! - `options`: the publish options of a URL query (`record`, `height`);
//! - `patch`: what a WHIP PATCH is checked against (ETag, `If-Match`, ICE credentials);
//! - `whip`, `ws`, `routes`: the HTTP and WebSocket edges.

mod error;
mod options;
mod patch;
mod publish;
mod registry;
mod routes;
pub mod whip;
pub mod ws;

use std::sync::{Arc, Mutex};

use crate::StreamKey;
use crate::config::{AuthConfig, IceConfig};
use crate::hls::HlsStore;
use crate::media::Ladder;
use crate::output::Outputs;
pub use crate::peer::{Candidate, PeerError, SdpError};
pub use error::IngestError;
pub use options::PublishOptions;
pub use publish::{PublishRequest, Published, Signaling};
use registry::Registry;
pub use routes::{SignalingState, router};

struct Inner {
    auth: AuthConfig,
    ice: IceConfig,
    ladder: Ladder,
    max_sdp_bytes: usize,
    max_streams: usize,
    store: HlsStore,
    outputs: Outputs,
    registry: Mutex<Registry>,
    closing: std::sync::atomic::AtomicBool,
}

/// The ingest service; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

impl Ingest {
    /// A new service.
    pub fn new(
        auth: AuthConfig,
        ice: IceConfig,
        ladder: Ladder,
        max_sdp_bytes: usize,
        max_streams: usize,
        store: HlsStore,
        outputs: Outputs,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth,
                ice,
                ladder,
                max_sdp_bytes,
                max_streams,
                store,
                outputs,
                registry: Mutex::new(Registry::default()),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Largest accepted offer.
    pub fn max_sdp_bytes(&self) -> usize {
        self.inner.max_sdp_bytes
    }

    /// STUN/TURN URLs for `Link` headers.
    pub fn ice_servers(&self) -> &[String] {
        &self.inner.ice.ice_servers
    }

    /// Checks the name and the token (before reading any body).
    pub fn authorize(&self, stream: &str, token: Option<&str>) -> Result<StreamKey, IngestError> {
        let key = StreamKey::parse(stream).ok_or(IngestError::BadStreamName)?;
        if let Some(required) = self.inner.auth.required_token(key.as_str())
            && !token.is_some_and(|t| constant_time_eq(t.as_bytes(), required.as_bytes()))
        {
            return Err(IngestError::Unauthorized);
        }
        Ok(key)
    }

    /// Refuses new publishers once shutdown began.
    pub fn ensure_open(&self) -> Result<(), IngestError> {
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        Ok(())
    }
}

/// Token comparison that does not stop at the first differing byte (the length is not
/// secret).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
