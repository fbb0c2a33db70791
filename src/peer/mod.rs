//! The WebRTC answerer: the only module that names `webrtc` / `rtc`.
//!
//! Turns an SDP offer into a connected peer whose tracks come out as our own
//! [`IncomingTrack`]s: bounded channels of marshalled RTP packets plus a
//! [`KeyframeRequester`] that sends RTCP PLI. webrtc 0.21 is the maintained line of the
//! webrtc-rs project (a sans-IO core, `rtc`, under an async API); its callbacks are turned
//! into channel sends at once, and nothing here blocks the runtime.
//!
//! This file holds the vocabulary that leaves the module (events, tracks, candidates,
//! errors). The rest, one concern per file:
//! - `session`: the connection and its driver ([`PeerSession`]: answer, trickle, close);
//! - `ice`: the connection's transport as `[ice]` configures it (UDP ports, NAT, mDNS);
//! - `codecs`: the codecs we accept, and their names in our vocabulary;
//! - `track`: reading a remote track into [`RtpPacket`]s, and the PLI sender;
//! - `rtcp_tap`: the publisher's RTCP sender reports, handed to the broadcast;
//! - `offer`: reading an offer with the stack's SDP parser; `sdp` holds the pure rules
//!   over what it read, `sdp_numbers` the ranges of its numbers;
//! - `candidates`: which remote ICE candidates are checked, and how many, with `addresses`
//!   classifying where they point (pure).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

mod addresses;
mod candidates;
mod codecs;
mod ice;
mod offer;
mod rtcp_tap;
mod sdp;
mod sdp_numbers;
mod session;
mod track;

use crate::media::{RtpPacket, SenderReport, VideoCodec};
pub use offer::{inspect_offer, offer_text};
pub use sdp::{OfferSummary, SdpError};
pub use session::PeerSession;
pub use track::RTP_CHANNEL_CAPACITY;

/// Failures of the WebRTC layer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The offer was refused by the WebRTC stack (bad SDP or no common codec).
    #[error("offer rejected: {0}")]
    BadOffer(String),
    /// A trickled candidate could not be parsed or applied.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// Local failure (socket, DTLS setup, gathering).
    #[error("WebRTC setup failed: {0}")]
    Setup(String),
    /// A trickled candidate would exceed `ice.max_remote_candidates`.
    #[error(
        "too many ICE candidates: at most {0} remote candidates per session (ice.max_remote_candidates)"
    )]
    TooManyCandidates(usize),
}

/// A trickle-ICE candidate in the browser's JSON shape (`RTCIceCandidateInit`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// `candidate:…` attribute value (empty = end of candidates).
    pub candidate: String,
    /// Media id of the section.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// Index of the section.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
}

/// What a track carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TrackKind {
    /// Video in this codec.
    Video(VideoCodec),
    /// Opus audio.
    Audio,
}

/// A remote track, available once its first RTP packet arrived.
#[derive(Debug)]
pub struct IncomingTrack {
    /// Kind and codec.
    pub kind: TrackKind,
    /// RTP payload type of the packets.
    pub payload_type: u8,
    /// The stream's SSRC (its sender reports carry it).
    pub ssrc: u32,
    /// The simulcast layer (`a=rid`, RFC 8851) this track is, if the publisher sends
    /// simulcast.
    pub rid: Option<String>,
    /// RTP packets with their arrival instants, in arrival order.
    pub packets: mpsc::Receiver<RtpPacket>,
    /// When the first packet arrived.
    pub first_arrival: Instant,
    /// PLI sender (video only).
    pub keyframes: Option<KeyframeRequester>,
    /// Packets dropped because the pipeline was not keeping up.
    pub dropped: Arc<AtomicU64>,
}

/// Asks the publisher for a keyframe of one video stream (RTCP PLI). Cheap to clone;
/// never blocks.
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    tx: mpsc::Sender<u32>,
    ssrc: u32,
}

impl KeyframeRequester {
    /// Requests a keyframe; requests made while one is pending are merged, and requests
    /// for the track's other SSRCs (simulcast layers) made together leave together.
    pub fn request(&self) {
        let _ = self.tx.try_send(self.ssrc);
    }
}

/// Events of one peer connection.
#[derive(Debug)]
pub enum PeerEvent {
    /// ICE + DTLS up.
    Connected,
    /// The connection failed or closed.
    Closed(String),
    /// A track started.
    Track(IncomingTrack),
    /// A local candidate gathered after the answer (trickle to WebSocket clients).
    LocalCandidate(Candidate),
    /// The publisher's RTCP sender report for one of its streams.
    SenderReport(SenderReport),
}
