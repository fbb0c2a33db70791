//! The connection and its driver: answers an offer (recvonly, every candidate gathered
//! before the answer), applies trickled candidates, closes. The stack's callbacks become
//! [`PeerEvent`] sends on a bounded channel at once; none of them waits on a reader, so
//! a slow broadcast task never stalls the WebRTC stack. Remote candidates, the offer's and
//! trickled ones, reach the stack only through [`candidates`](super::candidates)' policy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription,
};

use super::candidates::{Admission, CandidatePolicy, RemoteCandidates, Skip, filter_offer};
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
    /// The remote candidates admitted so far (offer and trickle); locked for a count,
    /// never across an `.await`.
    remote: Mutex<RemoteCandidates>,
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
    /// Answers `offer`: drops the remote candidates that are not to be checked (outside
    /// `ice.candidate_networks`, beyond `ice.max_remote_candidates`), builds the connection
    /// on the configured addresses, gathers every candidate (RFC 9725 §4.3.2: WHIP cannot
    /// send server candidates later) and returns the answer SDP with the event stream.
    pub async fn answer(
        ice: &IceConfig,
        offer: &str,
        audio: bool,
    ) -> Result<(PeerSession, String, mpsc::Receiver<PeerEvent>), PeerError> {
        let mut remote = RemoteCandidates::new(CandidatePolicy::from_config(ice));
        let filtered =
            filter_offer(offer, &mut remote).map_err(|e| PeerError::BadOffer(e.to_string()))?;
        if filtered.dropped_total() > 0 {
            let dropped = filtered.dropped_summary();
            if filtered.dropped.contains_key(&Skip::OverCap) {
                warn!(kept = filtered.kept, %dropped, limit = remote.limit(), "offer candidates dropped");
            } else {
                info!(kept = filtered.kept, %dropped, "offer candidates dropped");
            }
        }
        let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let (gathered_tx, mut gathered_rx) = mpsc::channel(1);
        let handler = Arc::new(Handler {
            events: events_tx,
            gathered: gathered_tx,
        });
        let pc = build(ice, handler).await?;
        let session = PeerSession {
            pc,
            remote: Mutex::new(remote),
        };
        match session
            .negotiate(&filtered.sdp, audio, &mut gathered_rx)
            .await
        {
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
            .map_err(local_description_error)?;
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
    /// candidates" and is accepted silently, and so is one the policy does not check (a
    /// browser trickles its link-local or mDNS candidates too) or one naming a target
    /// already checked. One beyond `ice.max_remote_candidates` is refused.
    pub async fn add_candidate(&self, c: Candidate) -> Result<(), PeerError> {
        if c.candidate.trim().is_empty() {
            return Ok(());
        }
        let (admission, limit) = {
            let mut remote = self.remote.lock().unwrap_or_else(PoisonError::into_inner);
            (remote.admit(c.candidate.trim()), remote.limit())
        };
        match admission.map_err(|e| PeerError::BadCandidate(e.to_string()))? {
            Admission::Check(_) => {}
            Admission::Skipped(Skip::OverCap) => return Err(PeerError::TooManyCandidates(limit)),
            Admission::Skipped(why) => {
                debug!(candidate = %c.candidate, reason = %why, "trickled candidate not checked");
                return Ok(());
            }
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

/// Maps a failure to apply our answer. The answer mirrors the offer, so some failures are
/// the offer's: a section with an `a=msid` (RFC 8830) but no usable `a=ssrc` (RFC 5576)
/// or `a=rid` (RFC 8851) leaves this stack no way to map its RTP to a track once the offer
/// has more than one section, and an offer without `a=mid` gives an answer without one.
/// Those are client errors (4xx); anything else is ours (500).
fn local_description_error(e: webrtc::error::Error) -> PeerError {
    use webrtc::error::Error as E;
    match e {
        E::ErrRTPReceiverForSSRCTrackStreamNotFound
        | E::ErrRTPReceiverForRIDTrackStreamNotFound => PeerError::BadOffer(format!(
            "{e}: a media section with a=msid needs a valid a=ssrc (RFC 5576) or a=rid (RFC 8851)"
        )),
        E::ErrPeerConnLocalDescriptionWithoutMidValue | E::ErrPeerConnTransceiverMidNil => {
            PeerError::BadOffer(format!(
                "{e}: every media section needs an a=mid (RFC 8843)"
            ))
        }
        e => PeerError::Setup(e.to_string()),
    }
}
