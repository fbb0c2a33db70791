//! The publish / unpublish flow: a checked offer becomes a reserved name, an answer from
//! the peer and a spawned broadcast task; DELETE, trickled candidates and shutdown reach
//! that task through its bounded command channel. Waits on a broadcast task (stop, a
//! candidate) are bounded by timeouts, and no lock is held across an `.await`.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::{Candidate, Ingest, IngestError, PublishOptions};
use crate::StreamKey;
use crate::broadcast::{self, BroadcastParams, Command};
use crate::client::{ClientId, Signaling};
use crate::hls::{Continuity, IngestSummary};
use crate::peer::{self, PeerSession};

/// Commands waiting for a broadcast task. Commands are rare (DELETE, PATCH, a WebSocket
/// candidate); when full the caller gets 503.
const COMMAND_CHANNEL_CAPACITY: usize = 16;

/// How long DELETE waits for the broadcast to flush its last segment and write ENDLIST:
/// the longest its exit path can take.
const STOP_TIMEOUT: Duration = broadcast::STOP_TIMEOUT;

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
    /// The client's address, when the transport knows it (per-client limits).
    pub client: Option<ClientId>,
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

impl Ingest {
    /// Validates, answers and starts a broadcast; counts the outcome (`/metrics`).
    pub async fn publish(&self, req: PublishRequest) -> Result<Published, IngestError> {
        let signaling = req.signaling;
        let result = self.start_broadcast(req).await;
        match &result {
            Ok(_) => {
                self.inner.store.metrics().published(signaling);
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
        if req.options.record
            && req.options.record_override.is_none()
            && !self.inner.outputs.records(true)
        {
            return Err(IngestError::RecordingNotAllowed);
        }
        let summary = peer::inspect_offer(&req.offer)?;
        // In a cluster: is the name live on another node? (Claimed, cluster-wide, only
        // when media flows, as it is here.)
        if let Some(cluster) = &self.inner.cluster {
            cluster.check_free(key.as_str()).await?;
        }
        let session_id = format!("{:032x}", rand::random::<u128>());
        let reservation = self.reserve(&key, &session_id, req.client)?;
        let (peer, answer, events) = PeerSession::answer(
            &self.inner.ice,
            &req.offer,
            summary.audio_payload_type.is_some(),
        )
        .await?;

        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_CHANNEL_CAPACITY);
        let (ended_tx, ended_rx) = oneshot::channel();
        if let Err(e) = reservation.commit(cmd_tx) {
            peer.close().await;
            return Err(e);
        }
        // The name is claimed when the first video arrives (registry.rs); until then the
        // session is pending and the store has not heard of it.
        let claimer = self.clone();
        let claim_sid = session_id.clone();
        let signaling = req.signaling;
        let params = BroadcastParams {
            stream: key.clone(),
            peer,
            events,
            commands: cmd_rx,
            audio_payload_type: summary.audio_payload_type,
            simulcast: summary.simulcast.clone(),
            ladder: self.inner.ladder.clone(),
            height_hint: req.options.height,
            store: self.inner.store.clone(),
            connect_timeout: self.inner.ice.connect_timeout,
            media_timeout: self.inner.ice.media_timeout,
            candidates: req.candidates,
            claim: Some(Box::new(move || {
                Box::pin(async move {
                    let stream = claimer
                        .session_stream(&claim_sid)
                        .ok_or_else(|| IngestError::SessionNotFound.to_string())?;
                    // Cluster-wide first (another node may have it), then here; a name
                    // claimed in the cluster but refused here is given back at once.
                    let cluster = claimer.inner.cluster.clone();
                    let mut elsewhere = None;
                    if let Some(c) = &cluster
                        && let Some(p) = c.claim(&stream).await.map_err(|e| e.to_string())?
                    {
                        // The numbering continues where the stream stood on its last node.
                        elsewhere = Some(Continuity::resumed(
                            p.next_seq,
                            p.discontinuity_seq,
                            p.age,
                            claimer.inner.store.config().segment_duration,
                        ));
                    }
                    if let Err(e) = claimer.claim(&claim_sid) {
                        if let Some(c) = &cluster {
                            c.release(&stream).await;
                        }
                        return Err(e.to_string());
                    }
                    // Published for real: the operator hears of it now, not at the answer.
                    claimer.authorizer().hooks().publish_started(
                        &stream,
                        &claim_sid,
                        signaling.name(),
                    );
                    Ok(elsewhere)
                })
            })),
            ingest: IngestSummary {
                signaling: req.signaling.name(),
                video_codec: summary.video_codecs.join("/"),
                audio: summary.audio_payload_type.is_some(),
            },
            outputs: self.inner.outputs.clone(),
            // The operator's callback may decide; else the configuration and `?record=`.
            record: req
                .options
                .record_override
                .unwrap_or_else(|| self.inner.outputs.records(req.options.record)),
        };
        self.record_remote_ice(
            &session_id,
            super::patch::RemoteIce {
                ufrag: summary.ice_ufrag.clone(),
                pwd: summary.ice_pwd.clone(),
            },
        );
        let this = self.clone();
        let sid = session_id.clone();
        let span = info_span!(
            "broadcast",
            stream = %key,
            session = %&session_id[..8],
            epoch = tracing::field::Empty
        );
        let store = self.inner.store.clone();
        let name = key.clone();
        tokio::spawn(
            async move {
                // The broadcast in a task of its own: should it panic (a bug), its name is
                // still released and its playlists (if it had claimed the name) still get
                // ENDLIST, so the name can be published again and players stop waiting.
                let run = tokio::spawn(broadcast::run(params).in_current_span());
                let reason = match run.await {
                    Ok(reason) => reason,
                    Err(e) => {
                        if this.is_live(&sid) {
                            store.end(name.as_str(), broadcast::now());
                        }
                        tracing::error!(error = %e, "broadcast task failed");
                        broadcast::EndReason::Panicked(e.to_string())
                    }
                };
                let was_live = this.is_live(&sid);
                this.release(&sid);
                if was_live && let Some(c) = this.cluster() {
                    c.release(name.as_str()).await;
                }
                let reason = crate::error_chain(&reason);
                info!(%reason, "broadcast ended");
                if was_live {
                    this.authorizer()
                        .hooks()
                        .publish_ended(name.as_str(), &sid, &reason);
                }
                let _ = ended_tx.send(reason);
            }
            .instrument(span),
        );
        info!(stream = %key, signaling = req.signaling.name(), codecs = ?summary.video_codecs, "answered; waiting for media");
        Ok(Published {
            stream: key,
            etag: super::patch::session_etag(&session_id),
            session_id,
            answer,
            ended: ended_rx,
        })
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
        if let Some(c) = &self.inner.cluster {
            c.set_draining();
        }
        let sessions = self.registry().session_ids();
        let stops = sessions.iter().map(|s| self.unpublish(s));
        futures::future::join_all(stops).await;
    }
}
