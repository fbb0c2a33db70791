//! Reading one remote track into our [`RtpPacket`]s: announce the track on its first
//! packet, then forward every packet into a bounded channel with `try_send` (never
//! waiting: a full queue drops the packet and asks for a keyframe). Also the per-SSRC
//! task that sends RTCP PLI (RFC 4585 §6.3.1) when a keyframe is requested.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::shared::marshal::Marshal;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};

use super::codecs::video_codec;
use super::{IncomingTrack, KeyframeRequester, PeerEvent, TrackKind};
use crate::media::RtpPacket;

/// RTP packets waiting for the pipeline, per track. ~1 s of 5 Mbit/s video. When full the
/// packet is dropped, counted, and a keyframe is requested (the decoder will need one).
pub const RTP_CHANNEL_CAPACITY: usize = 512;

/// Minimum spacing of PLIs, so a burst of losses does not become a burst of keyframes.
const PLI_MIN_INTERVAL: Duration = Duration::from_millis(300);

/// Reads one remote track until it ends: announces it on the first packet, then forwards
/// every packet into a bounded channel.
pub(super) async fn pump_track(track: Arc<dyn TrackRemote>, events: mpsc::Sender<PeerEvent>) {
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
