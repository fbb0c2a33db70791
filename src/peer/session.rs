//! The connection and its driver: answers an offer (recvonly, every candidate gathered
//! before the answer), applies trickled candidates, closes. The stack's callbacks become
//! [`PeerEvent`] sends on a bounded channel at once; none of them waits on a reader, so
//! a slow broadcast task never stalls the WebRTC stack.

use std::sync::Arc;
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

use super::ice::build;
use super::track::pump_track;
use super::{Candidate, PeerError, PeerEvent};
use crate::config::IceConfig;

/// Peer events waiting for the broadcast task. Few and small; when full (the broadcast is
/// not reading) the event is dropped with a warning.
const EVENT_CHANNEL_CAPACITY: usize = 32;

/// How long ICE gathering may take before answering (host candidates only: instant).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected (or connecting) publisher.
pub struct PeerSession {
    pc: Arc<dyn PeerConnection>,
}

/// The stack's callbacks, each turned into a channel send.
pub(super) struct Handler {
    /// Where the connection's events go (the sender-report tap sends there too).
    pub(super) events: mpsc::Sender<PeerEvent>,
    gathered: mpsc::Sender<()>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            let _ = self.events.try_send(PeerEvent::LocalCandidate(Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
            }));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(%state, "peer connection state");
        let ev = match state {
            RTCPeerConnectionState::Connected => PeerEvent::Connected,
            RTCPeerConnectionState::Failed => PeerEvent::Closed("ICE/DTLS failed".into()),
            RTCPeerConnectionState::Closed => PeerEvent::Closed("closed".into()),
            _ => return,
        };
        if self.events.try_send(ev).is_err() {
            warn!("peer event channel full; connection state change dropped");
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        tokio::spawn(pump_track(track, self.events.clone()));
    }
}

impl PeerSession {
    /// Answers `offer`: builds the connection on the configured addresses, gathers every
    /// candidate (RFC 9725 §4.3.2: WHIP cannot send server candidates later) and returns
    /// the answer SDP with the event stream.
    pub async fn answer(
        ice: &IceConfig,
        offer: &str,
        audio: bool,
    ) -> Result<(PeerSession, String, mpsc::Receiver<PeerEvent>), PeerError> {
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
        let handler = Arc::new(Handler {
            events: events_tx,
            gathered: gathered_tx,
        });
        let pc = build(ice, handler).await?;
        let session = PeerSession { pc };
        match session.negotiate(offer, audio, &mut gathered_rx).await {
            Ok(answer) => Ok((session, answer, events_rx)),
            Err(e) => {
                session.close().await;
                Err(e)
            }
        }
    }

    async fn negotiate(
        &self,
        offer: &str,
        audio: bool,
        gathered: &mut mpsc::Receiver<()>,
    ) -> Result<String, PeerError> {
        // Receive-only transceivers: the answer must be recvonly (RFC 9725 §4.2).
        let kinds: &[RtpCodecKind] = if audio {
            &[RtpCodecKind::Audio, RtpCodecKind::Video]
        } else {
            &[RtpCodecKind::Video]
        };
        for kind in kinds {
            self.pc
                .add_transceiver_from_kind(
                    *kind,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        ..Default::default()
                    }),
                )
                .await
                .map_err(|e| PeerError::Setup(e.to_string()))?;
        }
        let desc = RTCSessionDescription::offer(super::offer_text(offer).to_string())
            .map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(|e| PeerError::BadOffer(e.to_string()))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| PeerError::BadOffer(e.to_string()))?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|e| PeerError::Setup(e.to_string()))?;
        if tokio::time::timeout(GATHER_TIMEOUT, gathered.recv())
            .await
            .is_err()
        {
            return Err(PeerError::Setup("ICE gathering timed out".into()));
        }
        let local = self
            .pc
            .local_description()
            .await
            .ok_or_else(|| PeerError::Setup("no local description".into()))?;
        Ok(local.sdp)
    }

    /// Adds a trickled remote candidate (RFC 8838). An empty candidate means "end of
    /// candidates" and is accepted silently.
    pub async fn add_candidate(&self, c: Candidate) -> Result<(), PeerError> {
        if c.candidate.trim().is_empty() {
            return Ok(());
        }
        let init = RTCIceCandidateInit {
            candidate: c.candidate,
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            ..Default::default()
        };
        self.pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| PeerError::BadCandidate(e.to_string()))
    }

    /// Closes the connection (idempotent).
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            debug!(error = %e, "peer close");
        }
    }
}
