//! Ingest: who may publish what, and the registry of live broadcasts.
//!
//! The HTTP edges (`whip`, `ws`) only translate requests into [`Ingest`] calls; this module
//! checks the stream name, the token and the offer, reserves the name (409 on a second
//! publisher), answers through [`peer`], and spawns the stream's broadcast task. The
//! registry is a small map behind a `std::sync::Mutex`, never held across `.await`.

mod routes;
pub mod whip;
pub mod ws;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use crate::StreamKey;
use crate::broadcast::{self, BroadcastParams, Command};
use crate::config::{AuthConfig, IceConfig};
use crate::hls::{HlsStore, IngestSummary};
use crate::media::Ladder;
use crate::metrics;
use crate::output::Outputs;
use crate::peer::{self, PeerSession};
pub use crate::peer::{Candidate, PeerError, SdpError};
pub use routes::{SignalingState, router};

/// Commands waiting for a broadcast task. Commands are rare (DELETE, PATCH, a WebSocket
/// candidate); when full the caller gets 503.
const COMMAND_CHANNEL_CAPACITY: usize = 16;

/// How long DELETE waits for the broadcast to flush its last segment and write ENDLIST:
/// the longest its exit path can take.
const STOP_TIMEOUT: Duration = broadcast::STOP_TIMEOUT;

/// Why a publish request (or a session request) failed. One `IntoResponse` in
/// [`whip`] maps each to an HTTP status; [`ws`] maps them to error messages.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Stream names are `[A-Za-z0-9_-]{1,64}` (400).
    #[error("invalid stream name: use 1-64 letters, digits, '-' or '_'")]
    BadStreamName,
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// `Content-Type` is not `application/sdp` (415).
    #[error("content type must be application/sdp")]
    BadContentType,
    /// Offer larger than `server.max_sdp_bytes` (413).
    #[error("SDP offer too large (limit {0} bytes)")]
    SdpTooLarge(usize),
    /// The body is not valid UTF-8 SDP (400) or cannot be used (422); see [`SdpError`].
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// The WebRTC stack refused the offer (400).
    #[error("offer rejected: {0}")]
    OfferRejected(String),
    /// Another publisher is live on this name (409).
    #[error("stream {0} is already being published")]
    StreamInUse(String),
    /// `server.max_streams` reached (503).
    #[error("server is at its stream limit; try again later")]
    TooManyStreams,
    /// The server is shutting down (503).
    #[error("server is shutting down")]
    ShuttingDown,
    /// No such session (404).
    #[error("unknown session")]
    SessionNotFound,
    /// A trickled candidate was refused (400).
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// `Content-Type` of a PATCH is not `application/trickle-ice-sdpfrag` (415).
    #[error("content type must be application/trickle-ice-sdpfrag")]
    BadPatchContentType,
    /// ICE restart is not supported (RFC 9725 §4.3.1: 422 for the unsupported kind).
    #[error("ICE restart is not supported; re-publish instead")]
    IceRestartUnsupported,
    /// The broadcast task is gone or not answering (503).
    #[error("session is busy or ending")]
    Busy,
    /// The broadcast did not confirm its end (ENDLIST) within its stop budget (503): it
    /// is still ending, and will.
    #[error("the broadcast is still ending: its playlists may not have EXT-X-ENDLIST yet")]
    StopTimedOut,
    /// A local failure (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// `?record=` with a value that is neither yes nor no (400).
    #[error("record must be 1, true, yes, 0, false or no (got {0:?})")]
    BadRecordFlag(String),
    /// `?height=` that is not a number of lines in 90..=4320 (400).
    #[error("height must be a number of lines from 90 to 4320 (got {0:?})")]
    BadHeight(String),
    /// `?record=1` while `record.allow_request` is off (403): refused rather than
    /// published without the recording the publisher asked for.
    #[error("recording on request is off on this server (record.allow_request)")]
    RecordingNotAllowed,
}

impl IngestError {
    /// The HTTP status for this error: the one mapping, used by WHIP responses and by
    /// WebSocket `error` messages alike.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::BadStreamName
            | IngestError::BadRecordFlag(_)
            | IngestError::BadHeight(_)
            | IngestError::OfferRejected(_)
            | IngestError::BadCandidate(_)
            | IngestError::Sdp(SdpError::Malformed(_)) => 400,
            IngestError::Unauthorized => 401,
            IngestError::RecordingNotAllowed => 403,
            IngestError::SessionNotFound => 404,
            IngestError::StreamInUse(_) => 409,
            IngestError::SdpTooLarge(_) => 413,
            IngestError::BadContentType | IngestError::BadPatchContentType => 415,
            // RFC 9725 §4.4.2 / §4.4.3: unsupported tracks reject the whole offer with 422;
            // §4.3.1: 422 for the unsupported kind of PATCH.
            IngestError::Sdp(_) | IngestError::IceRestartUnsupported => 422,
            IngestError::TooManyStreams
            | IngestError::ShuttingDown
            | IngestError::Busy
            | IngestError::StopTimedOut => 503,
            IngestError::Internal(_) => 500,
        }
    }
}

impl From<PeerError> for IngestError {
    fn from(e: PeerError) -> Self {
        match e {
            PeerError::BadOffer(m) => IngestError::OfferRejected(m),
            PeerError::BadCandidate(m) => IngestError::BadCandidate(m),
            PeerError::Setup(m) => IngestError::Internal(m),
        }
    }
}

/// How the publisher signals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Signaling {
    /// RFC 9725 WHIP.
    Whip,
    /// Our WebSocket JSON protocol.
    WebSocket,
}

impl Signaling {
    fn name(self) -> &'static str {
        match self {
            Signaling::Whip => "whip",
            Signaling::WebSocket => "websocket",
        }
    }
}

/// A publish request, already stripped of its transport.
pub struct PublishRequest {
    /// Requested stream name (unvalidated).
    pub stream: String,
    /// Bearer token presented, if any.
    pub token: Option<String>,
    /// The SDP offer.
    pub offer: String,
    /// WHIP or WebSocket.
    pub signaling: Signaling,
    /// Where to send server candidates gathered after the answer (WebSocket only).
    pub candidates: Option<mpsc::Sender<Candidate>>,
    /// What the URL's query asked for.
    pub options: PublishOptions,
}

/// The query parameters of a publish URL (WHIP and WebSocket alike).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PublishOptions {
    /// The publisher asked for a recording (`?record=1`); honoured with
    /// `record.allow_request`.
    pub record: bool,
    /// The capture height the publisher will send at full quality (`?height=720`): the
    /// ladder is planned for it rather than for a first frame that bandwidth estimation
    /// made small.
    pub height: Option<u32>,
}

/// A successful publish.
pub struct Published {
    /// Stream name.
    pub stream: StreamKey,
    /// Unguessable session id (128 random bits, hex).
    pub session_id: String,
    /// Strong entity tag of the ICE session (RFC 9725 §4.3.1).
    pub etag: String,
    /// The SDP answer.
    pub answer: String,
    /// Resolves when the broadcast has ended, with the reason.
    pub ended: oneshot::Receiver<String>,
}

struct Entry {
    session_id: String,
    commands: Option<mpsc::Sender<Command>>,
}

#[derive(Default)]
struct Registry {
    streams: HashMap<String, Entry>,
    sessions: HashMap<String, String>,
}

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

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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

    /// Validates, answers and starts a broadcast; counts the outcome (`/metrics`).
    pub async fn publish(&self, req: PublishRequest) -> Result<Published, IngestError> {
        let signaling = req.signaling;
        let result = self.start_broadcast(req).await;
        match &result {
            Ok(_) => {
                let m = self.inner.store.metrics();
                metrics::inc(match signaling {
                    Signaling::Whip => &m.publishes_whip,
                    Signaling::WebSocket => &m.publishes_ws,
                });
            }
            Err(e) => self.refused(e),
        }
        result
    }

    /// Counts a refused publish attempt (`/metrics`); the edges call it for the refusals
    /// they find before [`Ingest::publish`].
    pub fn refused(&self, e: &IngestError) {
        self.inner.store.metrics().refused(e.status());
    }

    async fn start_broadcast(&self, req: PublishRequest) -> Result<Published, IngestError> {
        self.ensure_open()?;
        let key = self.authorize(&req.stream, req.token.as_deref())?;
        if req.offer.len() > self.inner.max_sdp_bytes {
            return Err(IngestError::SdpTooLarge(self.inner.max_sdp_bytes));
        }
        if req.options.record && !self.inner.outputs.records(true) {
            return Err(IngestError::RecordingNotAllowed);
        }
        let summary = peer::inspect_offer(&req.offer)?;
        let session_id = format!("{:032x}", rand::random::<u128>());
        let reservation = self.reserve(&key, &session_id)?;
        let (peer, answer, events) = PeerSession::answer(
            &self.inner.ice,
            &req.offer,
            summary.audio_payload_type.is_some(),
        )
        .await?;

        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        let (ended_tx, ended_rx) = oneshot::channel();
        let epoch = self.inner.store.begin(
            key.as_str(),
            IngestSummary {
                signaling: req.signaling.name(),
                video_codec: summary.video_codecs.join("/"),
                audio: summary.audio_payload_type.is_some(),
            },
            broadcast::now(),
        );
        let outputs = self.inner.outputs.start(
            &key,
            &epoch,
            self.inner.store.discontinuity_sequence(key.as_str()),
            req.options.record,
        );
        let params = BroadcastParams {
            stream: key.clone(),
            peer,
            events,
            commands: cmd_rx,
            audio_payload_type: summary.audio_payload_type,
            ladder: self.inner.ladder.clone(),
            height_hint: req.options.height,
            store: self.inner.store.clone(),
            connect_timeout: self.inner.ice.connect_timeout,
            media_timeout: self.inner.ice.media_timeout,
            candidates: req.candidates,
            outputs,
        };
        reservation.commit(cmd_tx);
        let this = self.clone();
        let sid = session_id.clone();
        let span =
            info_span!("broadcast", stream = %key, session = %&session_id[..8], epoch = %epoch);
        let store = self.inner.store.clone();
        let name = key.clone();
        tokio::spawn(
            async move {
                // The broadcast in a task of its own: should it panic (a bug), its name is
                // still released and its playlists still get ENDLIST, so the name can be
                // published again and players stop waiting.
                let run = tokio::spawn(broadcast::run(params).in_current_span());
                let reason = match run.await {
                    Ok(reason) => reason,
                    Err(e) => {
                        store.end(name.as_str(), broadcast::now());
                        tracing::error!(error = %e, "broadcast task failed");
                        broadcast::EndReason::Panicked(e.to_string())
                    }
                };
                this.release(&sid);
                let reason = crate::error_chain(&reason);
                info!(%reason, "broadcast ended");
                let _ = ended_tx.send(reason);
            }
            .instrument(span),
        );
        info!(stream = %key, signaling = req.signaling.name(), codecs = ?summary.video_codecs, "publishing");
        Ok(Published {
            stream: key,
            etag: format!("\"{}\"", &session_id[..16]),
            session_id,
            answer,
            ended: ended_rx,
        })
    }

    fn reserve(&self, key: &StreamKey, session_id: &str) -> Result<Reservation<'_>, IngestError> {
        let mut reg = self.registry();
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        if reg.streams.contains_key(key.as_str()) {
            return Err(IngestError::StreamInUse(key.to_string()));
        }
        if reg.streams.len() >= self.inner.max_streams {
            return Err(IngestError::TooManyStreams);
        }
        reg.streams.insert(
            key.to_string(),
            Entry {
                session_id: session_id.to_string(),
                commands: None,
            },
        );
        reg.sessions.insert(session_id.to_string(), key.to_string());
        Ok(Reservation {
            ingest: self,
            session_id: session_id.to_string(),
            committed: false,
        })
    }

    fn release(&self, session_id: &str) {
        let mut reg = self.registry();
        if let Some(stream) = reg.sessions.remove(session_id)
            && reg
                .streams
                .get(&stream)
                .is_some_and(|e| e.session_id == session_id)
        {
            reg.streams.remove(&stream);
        }
    }

    /// The stream a session belongs to.
    pub fn session_stream(&self, session_id: &str) -> Option<String> {
        self.registry().sessions.get(session_id).cloned()
    }

    fn commands(&self, session_id: &str) -> Result<mpsc::Sender<Command>, IngestError> {
        let reg = self.registry();
        let stream = reg
            .sessions
            .get(session_id)
            .ok_or(IngestError::SessionNotFound)?;
        reg.streams
            .get(stream)
            .and_then(|e| e.commands.clone())
            .ok_or(IngestError::Busy)
    }

    /// Ends a session (WHIP DELETE, WebSocket close) and waits until its playlists carry
    /// `EXT-X-ENDLIST`.
    pub async fn unpublish(&self, session_id: &str) -> Result<(), IngestError> {
        let tx = self.commands(session_id)?;
        let (reply, done) = oneshot::channel();
        tx.try_send(Command::Stop(reply))
            .map_err(|_| IngestError::Busy)?;
        match tokio::time::timeout(STOP_TIMEOUT, done).await {
            Ok(Ok(())) => Ok(()),
            // The task ended without answering: it went through its exit path (ENDLIST
            // included) for another reason while the command was queued, and dropped it.
            Ok(Err(_)) => Ok(()),
            Err(_) => {
                warn!(session = session_id, "broadcast did not stop in time");
                Err(IngestError::StopTimedOut)
            }
        }
    }

    /// Adds a trickled client candidate (WHIP PATCH, WebSocket `candidate`).
    pub async fn add_candidate(&self, session_id: &str, c: Candidate) -> Result<(), IngestError> {
        let tx = self.commands(session_id)?;
        let (reply, done) = oneshot::channel();
        tx.try_send(Command::AddCandidate(c, reply))
            .map_err(|_| IngestError::Busy)?;
        match tokio::time::timeout(Duration::from_secs(5), done).await {
            Ok(Ok(r)) => r.map_err(IngestError::from),
            _ => Err(IngestError::Busy),
        }
    }

    /// Ends every broadcast (graceful shutdown): ENDLIST everywhere, peers closed.
    pub async fn shutdown(&self) {
        // Set under the registry lock so no reservation slips in after the snapshot.
        {
            let _reg = self.registry();
            self.inner
                .closing
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let sessions: Vec<String> = self.registry().sessions.keys().cloned().collect();
        let stops = sessions.iter().map(|s| self.unpublish(s));
        futures::future::join_all(stops).await;
    }
}

/// A reserved stream name; released on drop unless committed.
struct Reservation<'a> {
    ingest: &'a Ingest,
    session_id: String,
    committed: bool,
}

impl Reservation<'_> {
    fn commit(mut self, commands: mpsc::Sender<Command>) {
        let mut reg = self.ingest.registry();
        if let Some(stream) = reg.sessions.get(&self.session_id).cloned()
            && let Some(e) = reg.streams.get_mut(&stream)
        {
            e.commands = Some(commands);
        }
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.ingest.release(&self.session_id);
        }
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
