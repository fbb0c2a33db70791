//! The WebRTC answerer: the only module that names `webrtc` / `rtc` (`sdp` holds the pure
//! rules over what its SDP parser read).
//!
//! Turns an SDP offer into a connected peer whose tracks come out as our own
//! [`IncomingTrack`]s: bounded channels of marshalled RTP packets plus a
//! [`KeyframeRequester`] that sends RTCP PLI. webrtc 0.21 is the maintained line of the
//! webrtc-rs project (a sans-IO core, `rtc`, under an async API); its callbacks are turned into channel sends at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Interceptor, Packet as IPacket, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::shared::marshal::Marshal;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceCandidateType, RTCIceGatheringState,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

mod sdp;

use crate::config::IceConfig;
use crate::media::{RtpPacket, SenderReport, VideoCodec};
use sdp::{Direction, OfferSection};
pub use sdp::{OfferSummary, SdpError};

/// RTP packets waiting for the pipeline, per track. ~1 s of 5 Mbit/s video. When full the
/// packet is dropped, counted, and a keyframe is requested (the decoder will need one).
pub const RTP_CHANNEL_CAPACITY: usize = 512;

/// Peer events waiting for the broadcast task. Few and small; when full (the broadcast is
/// not reading) the event is dropped with a warning.
const EVENT_CHANNEL_CAPACITY: usize = 32;

/// Minimum spacing of PLIs, so a burst of losses does not become a burst of keyframes.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(300);

/// How long ICE gathering may take before answering (host candidates only: instant).
const GATHER_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// RTP packets with their arrival instants, in arrival order.
    pub packets: mpsc::Receiver<RtpPacket>,
    /// When the first packet arrived.
    pub first_arrival: Instant,
    /// PLI sender (video only).
    pub keyframes: Option<KeyframeRequester>,
    /// Packets dropped because the pipeline was not keeping up.
    pub dropped: Arc<AtomicU64>,
}

/// Asks the publisher for a keyframe (RTCP PLI). Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct KeyframeRequester(mpsc::Sender<()>);

impl KeyframeRequester {
    /// Requests a keyframe; requests made while one is pending are merged.
    pub fn request(&self) {
        let _ = self.0.try_send(());
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

/// A connected (or connecting) publisher.
pub struct PeerSession {
    pc: Arc<dyn PeerConnection>,
}

struct Handler {
    events: mpsc::Sender<PeerEvent>,
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

/// Reads one remote track until it ends: announces it on the first packet, then forwards
/// every packet into a bounded channel.
async fn pump_track(track: Arc<dyn TrackRemote>, events: mpsc::Sender<PeerEvent>) {
    let mut tx: Option<mpsc::Sender<RtpPacket>> = None;
    let mut pli: Option<KeyframeRequester> = None;
    let dropped = Arc::new(AtomicU64::new(0));
    while let Some(ev) = track.poll().await {
        match ev {
            TrackRemoteEvent::OnRtpPacket(pkt) => {
                let arrival = Instant::now();
                if tx.is_none() {
                    let ssrc = pkt.header.ssrc;
                    let kind = match track.kind().await {
                        RtpCodecKind::Video => {
                            let mime = track
                                .codec(ssrc)
                                .await
                                .map(|c| c.mime_type.to_ascii_lowercase())
                                .unwrap_or_default();
                            match video_codec(&mime) {
                                Some(c) => TrackKind::Video(c),
                                None => {
                                    warn!(
                                        mime,
                                        "unsupported video codec negotiated; ignoring track"
                                    );
                                    return;
                                }
                            }
                        }
                        _ => TrackKind::Audio,
                    };
                    let (ptx, prx) = mpsc::channel(RTP_CHANNEL_CAPACITY);
                    if let TrackKind::Video(_) = kind {
                        pli = Some(spawn_pli(Arc::clone(&track), ssrc));
                    }
                    info!(?kind, pt = pkt.header.payload_type, ssrc, "track started");
                    let incoming = IncomingTrack {
                        kind,
                        payload_type: pkt.header.payload_type,
                        ssrc,
                        packets: prx,
                        first_arrival: arrival,
                        keyframes: pli.clone(),
                        dropped: Arc::clone(&dropped),
                    };
                    if events.send(PeerEvent::Track(incoming)).await.is_err() {
                        return;
                    }
                    tx = Some(ptx);
                }
                let Ok(buf) = pkt.marshal() else {
                    continue;
                };
                if let Some(tx) = &tx {
                    // Parsed once, here: the header fields and payload the broadcast and the
                    // media layer look at travel with the marshalled bytes.
                    let packet = RtpPacket {
                        arrival,
                        timestamp: pkt.header.timestamp,
                        payload: pkt.payload.clone(),
                        data: buf.freeze(),
                    };
                    match tx.try_send(packet) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                            if n.is_power_of_two() {
                                warn!(dropped = n, "rtp queue full; dropping packets");
                            }
                            if let Some(p) = &pli {
                                p.request();
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
    debug!("track ended");
}

/// A task sending PLIs for one video SSRC when asked, at most one per [`PLI_MIN_INTERVAL`].
fn spawn_pli(track: Arc<dyn TrackRemote>, media_ssrc: u32) -> KeyframeRequester {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                break;
            }
            debug!(media_ssrc, "sent PLI");
            tokio::time::sleep(PLI_MIN_INTERVAL).await;
        }
    });
    KeyframeRequester(tx)
}

fn video_codec(mime: &str) -> Option<VideoCodec> {
    match mime {
        "video/h264" => Some(VideoCodec::H264),
        "video/vp8" => Some(VideoCodec::Vp8),
        "video/vp9" => Some(VideoCodec::Vp9),
        _ => None,
    }
}

fn feedback() -> Vec<RTCPFeedback> {
    [
        ("nack", ""),
        ("nack", "pli"),
        ("ccm", "fir"),
        ("goog-remb", ""),
    ]
    .into_iter()
    .map(|(typ, parameter)| RTCPFeedback {
        typ: typ.into(),
        parameter: parameter.into(),
    })
    .collect()
}

/// Only codecs the pipeline can take. No RTX: without it, browsers retransmit NACKed
/// packets on the original SSRC, which is what our jitter buffer sees.
fn media_engine() -> Result<MediaEngine, PeerError> {
    let mut me = MediaEngine::default();
    let codec =
        |mime: &str, clock: u32, channels: u16, fmtp: &str, pt: u8, fb: Vec<RTCPFeedback>| {
            RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.into(),
                    clock_rate: clock,
                    channels,
                    sdp_fmtp_line: fmtp.into(),
                    rtcp_feedback: fb,
                },
                payload_type: pt,
            }
        };
    let audio = codec(
        "audio/opus",
        48_000,
        2,
        "minptime=10;useinbandfec=1",
        111,
        vec![],
    );
    me.register_codec(audio, RtpCodecKind::Audio)
        .map_err(|e| PeerError::Setup(e.to_string()))?;
    // H.264: one entry per profile family and packetization mode, so any offer matches
    // (a single variant made OBS fail with "codec not found", muxshed/shed #19). The level is
    // not matched, and the profile is re-read from the SPS by the decoder anyway.
    let h264 = |profile: &str, mode: u8| {
        format!("level-asymmetry-allowed=1;packetization-mode={mode};profile-level-id={profile}")
    };
    let video = [
        codec("video/H264", 90_000, 0, &h264("42e01f", 1), 102, feedback()),
        codec("video/H264", 90_000, 0, &h264("42001f", 1), 104, feedback()),
        codec("video/H264", 90_000, 0, &h264("4d001f", 1), 106, feedback()),
        codec("video/H264", 90_000, 0, &h264("64001f", 1), 108, feedback()),
        codec("video/H264", 90_000, 0, &h264("42e01f", 0), 110, feedback()),
        codec("video/VP8", 90_000, 0, "", 96, feedback()),
        codec("video/VP9", 90_000, 0, "profile-id=0", 98, feedback()),
    ];
    for v in video {
        me.register_codec(v, RtpCodecKind::Video)
            .map_err(|e| PeerError::Setup(e.to_string()))?;
    }
    Ok(me)
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
        let desc = RTCSessionDescription::offer(offer.to_string())
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

/// Reads an offer with the WebRTC stack's own SDP parser (the one `set_remote_description`
/// uses, so what we inspect is what will be negotiated) and applies [`sdp`]'s rules.
pub fn inspect_offer(text: &str) -> Result<OfferSummary, SdpError> {
    let text = text.trim_start_matches('\u{feff}').trim_start();
    let desc = rtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(text))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    // RFC 4566 §6: a direction attribute at session level applies to every section that
    // has none of its own (OBS puts some attributes only there).
    let session_direction = desc
        .attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.key));
    let sections = desc
        .media_descriptions
        .iter()
        .map(|m| {
            let port = u16::try_from(m.media_name.port.value).map_err(|_| {
                SdpError::Malformed(format!("m={} port out of range", m.media_name.media))
            })?;
            let mut codecs: Vec<(u8, String)> = m
                .codecs()
                .into_values()
                .filter(|c| !c.name.is_empty())
                .map(|c| (c.payload_type, c.name))
                .collect();
            // Offer order is the order of the m= line's format list (RFC 4566 §5.14).
            let order = |pt: &u8| {
                m.media_name
                    .formats
                    .iter()
                    .position(|f| f.parse::<u8>().ok() == Some(*pt))
                    .unwrap_or(usize::MAX)
            };
            codecs.sort_by_key(|(pt, _)| order(pt));
            Ok(OfferSection {
                media: m.media_name.media.clone(),
                port,
                bundle_only: m.has_attribute("bundle-only"),
                direction: m
                    .attributes
                    .iter()
                    .find_map(|a| Direction::from_attribute(&a.key))
                    .or(session_direction),
                codecs,
            })
        })
        .collect::<Result<Vec<_>, SdpError>>()?;
    sdp::summarize(&sections)
}

/// Hands the publisher's RTCP sender reports to the broadcast (the default interceptors
/// consume inbound RTCP). Observes only: every packet goes on unchanged. When the event
/// channel is full the report is dropped; the next one comes within seconds.
struct SenderReportTap {
    events: mpsc::Sender<PeerEvent>,
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for SenderReportTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(sr) = p
                    .as_any()
                    .downcast_ref::<rtc::rtcp::sender_report::SenderReport>()
                {
                    let _ = self.events.try_send(PeerEvent::SenderReport(SenderReport {
                        ssrc: sr.ssrc,
                        ntp: sr.ntp_time,
                        rtp: sr.rtp_time,
                    }));
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for SenderReportTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Builds the connection, binding one UDP socket per configured address: on an ephemeral
/// port, or on the first free port of the configured range.
async fn build(
    ice: &IceConfig,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let ports: Vec<u16> = if ice.port_min == 0 {
        vec![0]
    } else {
        // Start at a random offset so concurrent publishers do not all race for port_min.
        let span = u32::from(ice.port_max - ice.port_min) + 1;
        let start = rand::random::<u32>() % span;
        (0..span)
            .map(|i| ice.port_min + ((start + i) % span) as u16)
            .collect()
    };
    let mut last_err = String::from("no port tried");
    for port in ports {
        let addrs: Vec<SocketAddr> = ice
            .udp_addrs
            .iter()
            .map(|ip: &IpAddr| SocketAddr::new(*ip, port))
            .collect();
        if port != 0 && addrs.iter().any(|a| std::net::UdpSocket::bind(a).is_err()) {
            // Probe first: cheaper than building a whole connection on a taken port.
            last_err = format!("port {port} in use");
            continue;
        }
        let mut me = media_engine()?;
        // Application-most (after the receiver-report interceptor has read the same
        // reports for its own statistics): a slot above the jitter buffer's, 13 000.
        let registry = register_default_interceptors(Registry::new(), &mut me)
            .map_err(|e| PeerError::Setup(e.to_string()))?
            .with(
                Slot::from(14_000),
                SenderReportTap {
                    events: handler.events.clone(),
                    read: Default::default(),
                    write: Default::default(),
                },
            );
        let mut se = SettingEngineBuilder::new()
            // No mDNS: resolving `.local` candidates sends multicast queries off the box;
            // browsers' real addresses are learnt as peer-reflexive from their checks.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if !ice.nat_1to1_ips.is_empty() {
            se = se.with_nat_1to1_ips(ice.nat_1to1_ips.clone(), RTCIceCandidateType::Host);
        }
        let config = RTCConfigurationBuilder::new().build();
        let built = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(me)
            .with_setting_engine(se.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::clone(&handler) as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(addrs)
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(PeerError::Setup(format!(
        "cannot bind a UDP port: {last_err}"
    )))
}
