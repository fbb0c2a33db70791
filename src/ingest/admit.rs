//! Admission: the publish-time checks that may wait on the network, after the cheap
//! synchronous ones. [`Ingest::admit`] repeats the name and static-token check (free),
//! then asks [`crate::auth`] (JWT, the operator's callback) and applies the callback's
//! overrides to the publish options. The edges call it before reading an offer (WHIP) or
//! before taking one (WebSocket), so a refused publisher costs no SDP work.

use std::net::SocketAddr;

use super::{Ingest, IngestError, PublishOptions, Signaling};
use crate::auth;

/// Who asks to publish, as the edge saw the request. No `Debug`: it holds a token.
#[derive(Clone, Copy)]
pub struct Admission<'a> {
    /// The client's address (axum's `ConnectInfo`), when known.
    pub client: Option<SocketAddr>,
    /// WHIP or WebSocket.
    pub signaling: Signaling,
    /// The bearer token (header, or `?token=` on the WebSocket URL).
    pub token: Option<&'a str>,
    /// The request URL's query, without `?`.
    pub query: Option<&'a str>,
}

impl Ingest {
    /// Checks a publish of `stream` end to end (name, static token, JWT, callback) and
    /// returns `options` with the callback's overrides applied.
    pub async fn admit(
        &self,
        stream: &str,
        who: &Admission<'_>,
        mut options: PublishOptions,
    ) -> Result<PublishOptions, IngestError> {
        let key = self.authorize(stream, who.token)?;
        let overrides = self
            .inner
            .auth
            .admit_publish(&auth::Request {
                stream: key.as_str(),
                client: who.client,
                signaling: Some(who.signaling.name()),
                token: who.token,
                query: who.query,
            })
            .await?;
        // The operator's word is final: it records (or not) whatever the query asked and
        // whatever `record.allow_request` allows.
        if let Some(record) = overrides.record {
            options.record_override = Some(record);
        }
        if let Some(h) = overrides.height {
            options.height = Some(h);
        }
        Ok(options)
    }
}
