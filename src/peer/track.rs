//! Reading one remote track into our [`RtpPacket`]s: announce the track on its first
//! packet, then forward every packet into a bounded channel with `try_send` (never
//! waiting: a full queue drops the packet and asks for a keyframe). Also the per-SSRC
//! task that sends RTCP PLI (RFC 4585 §6.3.1) when a keyframe is requested.

use std::collections::{HashMap, HashSet};
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

/// At most this many SSRCs are told apart on one track: a simulcast publisher sends one per
/// layer (RFC 8853 allows a handful; browsers send up to 3, OBS up to 3). Packets of further
/// SSRCs are dropped, so a flood of invented SSRCs costs no memory.
const MAX_SSRCS_PER_TRACK: usize = 8;

/// Where one layer's packets go: the whole track without simulcast, else one per `rid`.
struct Outlet {
    tx: mpsc::Sender<RtpPacket>,
    pli: Option<KeyframeRequester>,
    dropped: Arc<AtomicU64>,
}

/// Reads one remote track until it ends. Without simulcast, every packet goes to one
/// [`IncomingTrack`] announced on the first packet. With simulcast (the packets carry an
/// RtpStreamId, RFC 8852), each layer is its own [`IncomingTrack`] with its `rid`, its
/// own queue and its own PLI sender (RFC 4585 §6.3.1 names the SSRC to refresh),
/// announced on that layer's first packet.
pub(super) async fn pump_track(track: Arc<dyn TrackRemote>, events: mpsc::Sender<PeerEvent>) {
    // SSRC → the layer it carries (None: not simulcast), as the stack read it.
    let mut rids: HashMap<u32, Option<String>> = HashMap::new();
    // Layer (None: the whole track) → its outlet.
    let mut outlets: HashMap<Option<String>, Outlet> = HashMap::new();
    // Layers in a codec we do not take (said once, then ignored).
    let mut ignored: HashSet<Option<String>> = HashSet::new();
    let mut pli_for: Option<Box<dyn Fn(u32) -> KeyframeRequester + Send>> = None;
    while let Some(ev) = track.poll().await {
        let pkt = match ev {
            TrackRemoteEvent::OnRtpPacket(pkt) => pkt,
            TrackRemoteEvent::OnEnded => break,
            _ => continue,
        };
        let arrival = Instant::now();
        let ssrc = pkt.header.ssrc;
        let rid = match rids.get(&ssrc) {
            Some(rid) => rid.clone(),
            None if rids.len() >= MAX_SSRCS_PER_TRACK => continue,
            None => {
                let rid = track.rid(ssrc).await.filter(|r| !r.is_empty());
                rids.insert(ssrc, rid.clone());
                rid
            }
        };
        if ignored.contains(&rid) {
            continue;
        }
        if !outlets.contains_key(&rid) {
            let Some(kind) = track_kind(track.as_ref(), ssrc).await else {
                // A codec we do not take: this layer is ignored, the others go on.
                ignored.insert(rid);
                continue;
            };
            let (ptx, prx) = mpsc::channel(RTP_CHANNEL_CAPACITY);
            let pli = matches!(kind, TrackKind::Video(_)).then(|| {
                pli_for.get_or_insert_with(|| Box::new(spawn_pli(Arc::clone(&track))))(ssrc)
            });
            let dropped = Arc::new(AtomicU64::new(0));
            info!(
                ?kind,
                pt = pkt.header.payload_type,
                ssrc,
                rid = rid.as_deref().unwrap_or(""),
                "track started"
            );
            let incoming = IncomingTrack {
                kind,
                payload_type: pkt.header.payload_type,
                ssrc,
                rid: rid.clone(),
                packets: prx,
                first_arrival: arrival,
                keyframes: pli.clone(),
                dropped: Arc::clone(&dropped),
            };
            if events.send(PeerEvent::Track(incoming)).await.is_err() {
                return;
            }
            outlets.insert(
                rid.clone(),
                Outlet {
                    tx: ptx,
                    pli,
                    dropped,
                },
            );
        }
        let Some(outlet) = outlets.get(&rid) else {
            continue;
        };
        let Ok(buf) = pkt.marshal() else {
            continue;
        };
        // Parsed once, here: the header fields and payload the broadcast and the media
        // layer look at travel with the marshalled bytes.
        let packet = RtpPacket {
            arrival,
            timestamp: pkt.header.timestamp,
            payload: pkt.payload.clone(),
            data: buf.freeze(),
        };
        match outlet.tx.try_send(packet) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let n = outlet.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    warn!(
                        dropped = n,
                        rid = rid.as_deref().unwrap_or(""),
                        "rtp queue full; dropping packets"
                    );
                }
                if let Some(p) = &outlet.pli {
                    p.request();
                }
            }
            // The broadcast let go of this layer (it takes one video, or the layers it
            // planned); the track's other layers go on.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if outlets.values().all(|o| o.tx.is_closed()) {
                    return;
                }
            }
        }
    }
    debug!("track ended");
}

/// What an SSRC of `track` carries, or `None` for a video codec we do not take.
async fn track_kind(track: &dyn TrackRemote, ssrc: u32) -> Option<TrackKind> {
    match track.kind().await {
        RtpCodecKind::Video => {
            let mime = track
                .codec(ssrc)
                .await
                .map(|c| c.mime_type.to_ascii_lowercase())
                .unwrap_or_default();
            let codec = video_codec(&mime);
            if codec.is_none() {
                warn!(
                    mime,
                    ssrc, "unsupported video codec negotiated; ignoring its RTP"
                );
            }
            codec.map(TrackKind::Video)
        }
        _ => Some(TrackKind::Audio),
    }
}

/// Keyframe requests waiting for a track's PLI task: one per layer at most, and a few more.
const PLI_QUEUE: usize = 16;

/// The task sending PLIs for the video SSRCs of one track, when asked, at most one RTCP
/// packet per [`PLI_MIN_INTERVAL`]. Requests that come together (the broadcast asks every
/// simulcast layer at once) leave in one compound RTCP packet (RFC 3550 §6.1), so the
/// publisher's encoder sees them before the same frame and every layer's keyframe is the
/// same picture. Returns a function making each SSRC's requester.
fn spawn_pli(track: Arc<dyn TrackRemote>) -> impl Fn(u32) -> KeyframeRequester {
    let (tx, mut rx) = mpsc::channel::<u32>(PLI_QUEUE);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut ssrcs = vec![first];
            while let Ok(ssrc) = rx.try_recv() {
                if !ssrcs.contains(&ssrc) {
                    ssrcs.push(ssrc);
                }
            }
            let plis: Vec<Box<dyn rtc::rtcp::Packet>> = ssrcs
                .iter()
                .map(|&media_ssrc| {
                    Box::new(PictureLossIndication {
                        sender_ssrc: 0,
                        media_ssrc,
                    }) as Box<dyn rtc::rtcp::Packet>
                })
                .collect();
            if track.write_rtcp(plis).await.is_err() {
                break;
            }
            debug!(?ssrcs, "sent PLI");
            tokio::time::sleep(PLI_MIN_INTERVAL).await;
        }
    });
    move |ssrc| KeyframeRequester {
        tx: tx.clone(),
        ssrc,
    }
}
