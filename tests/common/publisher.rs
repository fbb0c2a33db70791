//! A real WebRTC publisher for tests and benchmarks.
//!
//! It generates live test media with GStreamer (`videotestsrc`/`audiotestsrc` → x264enc or
//! vp8enc / opusenc → RTP payloaders → appsink), and sends it over a real webrtc 0.21 peer
//! connection, as the OFFERER, to a WHIP endpoint (RFC 9725) or to the WebSocket signaling
//! endpoint of whipcast.
//!
//! Loopback only: the peer connection binds one UDP socket on `127.0.0.1:0`, uses no STUN/TURN,
//! disables mDNS, and every non-loopback `a=candidate` (local or remote) is dropped before it is
//! sent or applied, so no packet can go anywhere but 127.0.0.1.
//!
//! With [`PublisherOptions::timecode`], every video frame carries its capture time as a
//! barcode ([`paint_timecode`]), for glass-to-glass latency measurements.
//!
//! With [`PublisherOptions::av_marks`], the picture is black but for one white frame at
//! every whole second and the sound silent but for a 1 kHz beep starting at the same
//! instants, for audio/video synchronisation measurements.
//!
//! Self-contained on purpose (only external crates, no `super::`): it is included both as
//! `tests/common/publisher.rs` and by a benchmark through `#[path]`.
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use bytes::Bytes;
use futures::{SinkExt as _, StreamExt as _};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{Attribute, Interceptor, Packet as IPacket, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use rtc::sansio::Protocol;
use rtc::shared::marshal::Unmarshal as _;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceGatheringState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
    register_default_interceptors,
};
use webrtc::rtp_transceiver::{RtpSender, RtpTransceiver};

/// How long [`Publisher::start`] waits for the peer connection to become `Connected`
/// (and, separately, for ICE gathering and for the signaling answer).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An OBS-like publisher's audio runs this long before its first video packet goes out.
pub const OBS_AUDIO_LEAD: Duration = Duration::from_millis(1500);

/// Payload types offered by the publisher (the answer decides what is actually used;
/// outgoing packets are rewritten to the negotiated one).
pub const H264_PT: u8 = 102;
/// VP8 payload type in the offer.
pub const VP8_PT: u8 = 96;
/// Opus payload type in the offer.
pub const OPUS_PT: u8 = 111;

/// Video codec to publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 constrained baseline (x264enc), packetization-mode=1.
    H264,
    /// VP8 (vp8enc, realtime).
    Vp8,
}

/// How the offer/answer is exchanged.
#[derive(Debug, Clone)]
pub enum Signaling {
    /// WHIP (RFC 9725): `POST url` with the complete (non-trickle) offer.
    Whip {
        /// Endpoint URL, e.g. `http://127.0.0.1:PORT/whip/NAME`.
        url: String,
        /// Sent as `Authorization: Bearer <token>` on POST and DELETE.
        token: Option<String>,
    },
    /// JSON messages over a WebSocket, e.g. `ws://127.0.0.1:PORT/ws/NAME?token=..`.
    Ws {
        /// WebSocket URL.
        url: String,
    },
}

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherOptions {
    /// Video codec.
    pub video: VideoCodec,
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second (the GOP is `2 * fps` frames).
    pub fps: u32,
    /// Also publish an Opus 48 kHz stereo track.
    pub audio: bool,
    /// Signaling protocol and URL.
    pub signaling: Signaling,
    /// Video bitrate. H.264 uses x264enc `tune=zerolatency speed-preset=ultrafast bframes=0`
    /// (constrained baseline); VP8 uses vp8enc `deadline=1 cpu-used=8 end-usage=cbr`.
    pub bitrate_kbps: u32,
    /// WebSocket only: send the offer right after `set_local_description` and trickle each
    /// local candidate as a `{"type":"candidate",...}` message. When false (default), the offer
    /// is sent once ICE gathering is complete and carries all candidates; none are trickled.
    pub trickle: bool,
    /// Stamp every video frame with its capture time (wall clock, ms since the Unix epoch) as
    /// a barcode in the top third of the picture, for glass-to-glass latency measurements
    /// (see [`paint_timecode`]). Off by default.
    pub timecode: bool,
    /// Behave like OBS, which has no PLI handler: count keyframe requests, never honour
    /// them; keyframes come only every `2 * fps` frames.
    pub ignore_keyframe_requests: bool,
    /// A/V sync marks: black video but for one white frame at the start of every second of
    /// the pipeline's running time, and silent audio but for a [`AV_MARK_BEEP`] 1 kHz beep
    /// starting at each whole second (pad probes on the raw buffers). Both sources run on
    /// the pipeline's clock and are timestamped with its running time, so flash and beep
    /// are simultaneous at capture. Off by default.
    pub av_marks: bool,
    /// Send what OBS Studio's WHIP output sends (obs-studio `plugins/obs-webrtc`, built on
    /// libdatachannel): the audio section first, ICE credentials, fingerprint and setup at
    /// session level only, `a=group:LS`, no candidates at all, an H.264 fmtp of `42e01f`
    /// over a High profile stream, PLI ignored, audio flowing for a while before the first
    /// video packet, and the first two keyframes of its (top) video without their first
    /// slice (OBS loses its first RTP packets, obs-studio#9614; [`StartLoss`]).
    pub obs_like: bool,
    /// Media from a shared encoder instead of a pipeline of this publisher's own: RTP
    /// packets as GStreamer's payloaders made them, one broadcast per kind, fanned out to
    /// any number of publishers (benches/cpu.rs `publish-many`: one encode, N peers). Each
    /// publisher rewrites PT/SSRC as with its own pipeline; keyframe requests are counted,
    /// never honoured (one stream's request must not put keyframes in all of them).
    pub feed: Option<Feed>,
}

/// The shared media of [`PublisherOptions::feed`].
#[derive(Debug, Clone)]
pub struct Feed {
    /// Video RTP packets.
    pub video: broadcast::Sender<Bytes>,
    /// Opus RTP packets (used when [`PublisherOptions::audio`] is set).
    pub audio: broadcast::Sender<Bytes>,
    /// Simulcast (RFC 8853): the lower layers' H.264 RTP, in [`SIMULCAST_RIDS`] order after
    /// the top one (`video`). Empty: one layer, no simulcast. With layers, the video
    /// transceiver has one encoding per rid (its own SSRC) and every packet carries the MID
    /// and RtpStreamId header extensions (RFC 8852 §3.1), as a browser's first packets do.
    pub layers: Vec<broadcast::Sender<Bytes>>,
}

/// The `rid`s of a simulcast [`Feed`]'s layers: the top one (`video`), then `layers`.
pub static SIMULCAST_RIDS: [&str; 3] = ["h", "m", "l"];

/// The `rid`s OBS Studio's WHIP simulcast gives its layers: each video encoder's index, the
/// first one the full-size picture (obs-studio `plugins/obs-webrtc/whip-output.cpp`).
pub static OBS_SIMULCAST_RIDS: [&str; 3] = ["0", "1", "2"];

/// The appsinks of [`simulcast_pipeline_description`]'s lower layers, in `Feed::layers`
/// order.
pub const LAYER_SINKS: [&str; 2] = ["vsink_m", "vsink_l"];

/// One encoder for any number of publishers ([`PublisherOptions::feed`]): the publisher's
/// pipeline, one layer or three (simulcast), its appsinks sending into a [`Feed`]. Built
/// stopped; `pipeline` is the caller's to start and stop.
pub struct FeedSource {
    /// The encoding pipeline (not started).
    pub pipeline: gst::Pipeline,
    /// What its appsinks send, to give to publishers.
    pub feed: Feed,
    /// Per video layer (top first): while set, that layer's packets are dropped, as a
    /// browser's encoder drops a layer under congestion (`active: false`).
    paused: Arc<[AtomicBool; 3]>,
}

impl FeedSource {
    /// `layers`: 1, or 3 for simulcast ([`simulcast_pipeline_description`]).
    pub fn new(opts: &PublisherOptions, layers: usize) -> anyhow::Result<FeedSource> {
        gst::init().context("gst::init")?;
        let desc = match layers {
            1 => pipeline_description(opts),
            3 => simulcast_pipeline_description(opts),
            n => bail!("a feed has 1 or 3 video layers, not {n}"),
        };
        let pipeline = gst::parse::launch(&desc)
            .with_context(|| format!("parse {desc}"))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| anyhow!("not a pipeline"))?;
        // ~4 s of 2.5 Mbit/s video in 1200-byte packets: a peer further behind drops.
        let feed = Feed {
            video: broadcast::channel(4096).0,
            audio: broadcast::channel(1024).0,
            layers: (1..layers).map(|_| broadcast::channel(2048).0).collect(),
        };
        let paused: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
        let sinks = [
            ("vsink", &feed.video, Some(0)),
            ("asink", &feed.audio, None),
        ]
        .into_iter()
        .chain(
            LAYER_SINKS
                .iter()
                .zip(&feed.layers)
                .enumerate()
                .map(|(i, (name, tx))| (*name, tx, Some(i + 1))),
        );
        for (name, tx, layer) in sinks {
            let tx = tx.clone();
            let paused = paused.clone();
            on_appsink_packets(&pipeline, name, move |packet| {
                if !layer.is_some_and(|i| paused[i].load(Ordering::Relaxed)) {
                    // No subscriber yet (or none left) is not an error.
                    let _ = tx.send(packet);
                }
                Ok(gst::FlowSuccess::Ok)
            })?;
        }
        Ok(FeedSource {
            pipeline,
            feed,
            paused,
        })
    }

    /// Stops (true) or resumes (false) sending video layer `index` (0: the top one).
    pub fn pause_layer(&self, index: usize, paused: bool) {
        if let Some(p) = self.paused.get(index) {
            p.store(paused, Ordering::Relaxed);
        }
    }
}

impl PublisherOptions {
    /// WHIP publisher with defaults: H.264 640x360@30, Opus audio, 1500 kbps, no token.
    pub fn whip(url: &str) -> Self {
        Self::with_signaling(Signaling::Whip {
            url: url.to_owned(),
            token: None,
        })
    }

    /// WebSocket publisher with the same defaults as [`PublisherOptions::whip`].
    pub fn ws(url: &str) -> Self {
        Self::with_signaling(Signaling::Ws {
            url: url.to_owned(),
        })
    }

    fn with_signaling(signaling: Signaling) -> Self {
        Self {
            video: VideoCodec::H264,
            width: 640,
            height: 360,
            fps: 30,
            audio: true,
            signaling,
            bitrate_kbps: 1500,
            trickle: false,
            timecode: false,
            ignore_keyframe_requests: false,
            av_marks: false,
            obs_like: false,
            feed: None,
        }
    }

    /// Shapes the offer and the media like OBS Studio ([`PublisherOptions::obs_like`]).
    pub fn like_obs(mut self) -> Self {
        self.obs_like = true;
        self.ignore_keyframe_requests = true;
        self
    }

    /// Sets the WHIP bearer token (no effect for WebSocket signaling: put it in the URL).
    pub fn with_token(mut self, token: &str) -> Self {
        if let Signaling::Whip { token: t, .. } = &mut self.signaling {
            *t = Some(token.to_owned());
        }
        self
    }

    /// Sets the video codec.
    pub fn with_video(mut self, video: VideoCodec) -> Self {
        self.video = video;
        self
    }

    /// Sets the video size and frame rate.
    pub fn with_format(mut self, width: u32, height: u32, fps: u32) -> Self {
        self.width = width;
        self.height = height;
        self.fps = fps;
        self
    }

    /// Enables or disables the audio track.
    pub fn with_audio(mut self, audio: bool) -> Self {
        self.audio = audio;
        self
    }

    /// Enables or disables the capture-time barcode ([`PublisherOptions::timecode`]).
    pub fn with_timecode(mut self, timecode: bool) -> Self {
        self.timecode = timecode;
        self
    }

    /// Flashes and beeps once a second, together ([`PublisherOptions::av_marks`]).
    pub fn with_av_marks(mut self) -> Self {
        self.av_marks = true;
        self
    }

    /// The video's simulcast `rid`s (a [`Feed`] with layers; OBS's when
    /// [`PublisherOptions::obs_like`]), or none.
    fn simulcast_rids(&self) -> &'static [&'static str] {
        let rids = if self.obs_like {
            &OBS_SIMULCAST_RIDS
        } else {
            &SIMULCAST_RIDS
        };
        match &self.feed {
            Some(f) if !f.layers.is_empty() => &rids[..(1 + f.layers.len()).min(3)],
            _ => &[],
        }
    }
}

/// The MID header extension (RFC 8843 §15.1).
const SDES_MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
/// The RtpStreamId header extension (RFC 8852 §3.1).
const SDES_RTP_STREAM_ID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";

/// A connected publisher. Media flows until [`Publisher::stop`] (or drop).
pub struct Publisher {
    pc: Option<Arc<dyn PeerConnection>>,
    signaling: Signaling,
    session_url: Option<String>,
    http: reqwest::Client,
    ws: Option<WsHandle>,
    pipeline: Option<gst::Pipeline>,
    bus_stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Arc<Stats>,
    state_rx: watch::Receiver<RTCPeerConnectionState>,
    video_payload_type: u8,
    audio_payload_type: Option<u8>,
    offer_sent_at: std::time::Instant,
}

#[derive(Default)]
struct Stats {
    packets_sent: AtomicU64,
    video_packets_sent: AtomicU64,
    audio_packets_sent: AtomicU64,
    dropped: AtomicU64,
    write_errors: AtomicU64,
    keyframe_requests: AtomicU64,
    media_error: Mutex<Option<String>>,
    /// While set, generated packets are dropped instead of sent (RTP "stops").
    paused: AtomicBool,
    /// While set, generated packets queue instead of being sent, and all go at once when it
    /// is cleared: what a publisher process that was stopped (SIGSTOP) and continued
    /// sends, or a link that buffered through an outage, with their original timestamps.
    held: AtomicBool,
    /// This many upcoming video packets get a random payload (RTP "goes wild").
    corrupt: AtomicU64,
    /// Video packets before this instant are not sent (audio flows first).
    video_from: Mutex<Option<std::time::Instant>>,
    /// The next video forwarder (the top simulcast layer's: the first started) loses the
    /// first slice of its first keyframes ([`StartLoss`]), as OBS does.
    lose_first_slice: AtomicBool,
    /// The reason of the server's `ended` message (WebSocket signalling), once received.
    server_ended: Mutex<Option<String>>,
}

impl Publisher {
    /// Negotiates, waits until the peer connection is `Connected`, then starts media.
    /// Fails if the signaling fails (the error message contains the HTTP status code and the
    /// response body, or the WebSocket `error` message) or if not connected within 10 s.
    pub async fn start(opts: PublisherOptions) -> anyhow::Result<Publisher> {
        gst::init().context("gst::init")?;

        let (state_tx, state_rx) = watch::channel(RTCPeerConnectionState::New);
        let (gathering_tx, gathering_rx) = watch::channel(RTCIceGatheringState::New);
        let (cand_tx, cand_rx) = mpsc::unbounded_channel::<RTCIceCandidateInit>();
        let handler = Arc::new(PubHandler {
            state_tx,
            gathering_tx,
            cand_tx,
        });

        let video_codec = video_rtp_codec(opts.video);
        let audio_codec = opus_rtp_codec();
        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(
            RTCRtpCodecParameters {
                rtp_codec: video_codec.clone(),
                payload_type: match opts.video {
                    VideoCodec::H264 => H264_PT,
                    VideoCodec::Vp8 => VP8_PT,
                },
            },
            RtpCodecKind::Video,
        )?;
        if opts.audio {
            media_engine.register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: audio_codec.clone(),
                    payload_type: OPUS_PT,
                },
                RtpCodecKind::Audio,
            )?;
        }
        let rids = opts.simulcast_rids();
        if !rids.is_empty() {
            for uri in [SDES_MID_URI, SDES_RTP_STREAM_ID_URI] {
                media_engine.register_header_extension(
                    RTCRtpHeaderExtensionCapability { uri: uri.into() },
                    RtpCodecKind::Video,
                    None,
                )?;
            }
        }
        // NACK generator/responder, RTCP reports, TWCC; then, application-most, a forwarder
        // that hands inbound PLI/FIR to the local track (otherwise interceptors swallow them).
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
            .with(Slot::from(14_000), KeyframeRequestForwarder::default());

        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build()) // no ICE servers
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec!["127.0.0.1:0".to_string()])
            .build()
            .await
            .context("building the peer connection")?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);

        let stats = Arc::new(Stats::default());
        match negotiate(
            &pc,
            &opts,
            state_rx.clone(),
            gathering_rx,
            cand_rx,
            video_codec,
            audio_codec,
            stats.clone(),
        )
        .await
        {
            Ok(n) => {
                let mut publisher = Publisher {
                    pc: Some(pc),
                    signaling: opts.signaling.clone(),
                    session_url: n.session_url,
                    http: n.http,
                    ws: n.ws,
                    pipeline: None,
                    bus_stop: Arc::new(AtomicBool::new(false)),
                    tasks: n.tasks,
                    stats,
                    state_rx,
                    video_payload_type: n.video.payload_type,
                    audio_payload_type: n.audio.as_ref().map(|a| a.payload_type),
                    offer_sent_at: n.offer_sent_at,
                };
                // On error, `publisher` is dropped, which tears everything down.
                publisher.start_media(&opts, n.video, n.audio).await?;
                Ok(publisher)
            }
            Err(e) => {
                let _ = pc.close().await;
                Err(e)
            }
        }
    }

    /// Stops (true) or resumes (false) sending media without closing anything.
    pub fn pause_media(&self, paused: bool) {
        self.stats.paused.store(paused, Ordering::Relaxed);
    }

    /// Holds (true) or releases (false) media: held packets are sent in one burst on release
    /// ([`Stats::held`]).
    pub fn hold_media(&self, held: bool) {
        self.stats.held.store(held, Ordering::Relaxed);
    }

    /// Replaces the payload of the next `n` video packets with random bytes.
    pub fn corrupt_video_packets(&self, n: u64) {
        self.stats.corrupt.store(n, Ordering::Relaxed);
    }

    /// Changes the generated resolution mid-stream (the encoder emits a new SPS).
    pub fn set_resolution(&self, width: u32, height: u32) -> anyhow::Result<()> {
        let pipeline = self.pipeline.as_ref().context("no pipeline")?;
        let caps = pipeline.by_name("vcaps").context("no vcaps element")?;
        let current: gst::Caps = caps.property("caps");
        let mut s = current.structure(0).context("empty caps")?.to_owned();
        s.set("width", width as i32);
        s.set("height", height as i32);
        caps.set_property("caps", gst::Caps::builder_full().structure(s).build());
        Ok(())
    }

    /// When the offer went out (WHIP `POST` / WebSocket `offer` message).
    /// The reason the server gave in its WebSocket `ended` message, if one came.
    pub fn server_ended(&self) -> Option<String> {
        self.stats.server_ended.lock().expect("stats lock").clone()
    }

    pub fn offer_sent_at(&self) -> std::time::Instant {
        self.offer_sent_at
    }

    /// WHIP: absolute session URL from the `Location` header. WS: `None`.
    pub fn session_url(&self) -> Option<&str> {
        self.session_url.as_deref()
    }

    /// RTP packets handed to the peer connection so far (video + audio).
    pub fn packets_sent(&self) -> u64 {
        self.stats.packets_sent.load(Ordering::Relaxed)
    }

    /// Video RTP packets handed to the peer connection so far.
    pub fn video_packets_sent(&self) -> u64 {
        self.stats.video_packets_sent.load(Ordering::Relaxed)
    }

    /// Audio RTP packets handed to the peer connection so far.
    pub fn audio_packets_sent(&self) -> u64 {
        self.stats.audio_packets_sent.load(Ordering::Relaxed)
    }

    /// Keyframe requests (RTCP PLI or FIR) received from the server. Each one forces a
    /// keyframe on the encoder.
    pub fn keyframe_requests(&self) -> u64 {
        self.stats.keyframe_requests.load(Ordering::Relaxed)
    }

    /// Packets dropped between GStreamer and the peer connection (channel full) plus
    /// `write_rtp` failures. Should stay 0.
    pub fn packets_lost_locally(&self) -> u64 {
        self.stats.dropped.load(Ordering::Relaxed) + self.stats.write_errors.load(Ordering::Relaxed)
    }

    /// First GStreamer error seen on the media pipeline, if any.
    pub fn media_error(&self) -> Option<String> {
        self.stats.media_error.lock().ok().and_then(|e| e.clone())
    }

    /// Current peer connection state.
    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.state_rx.borrow()
    }

    /// Negotiated (video, audio) payload types.
    pub fn payload_types(&self) -> (u8, Option<u8>) {
        (self.video_payload_type, self.audio_payload_type)
    }

    /// Waits until at least `n` packets were sent; false on timeout.
    pub async fn wait_packets(&self, n: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.packets_sent() < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops media, then WHIP: sends `DELETE` to the session URL (with the bearer token) and
    /// returns its status code; WS: closes the socket and returns 200. Then closes the PC.
    pub async fn stop(mut self) -> anyhow::Result<u16> {
        self.stop_media().await;

        let result = match self.signaling.clone() {
            Signaling::Whip { token, .. } => match self.session_url.clone() {
                Some(url) => {
                    let mut req = self.http.delete(&url);
                    if let Some(token) = token {
                        req = req.bearer_auth(token);
                    }
                    req.send()
                        .await
                        .map(|resp| resp.status().as_u16())
                        .map_err(|e| anyhow!("WHIP DELETE {url} failed: {e}"))
                }
                None => Err(anyhow!("no WHIP session URL")),
            },
            Signaling::Ws { .. } => {
                if let Some(ws) = self.ws.take() {
                    let _ = ws.out_tx.send(WsOut::Close);
                    let mut task = ws.task;
                    if tokio::time::timeout(Duration::from_secs(2), &mut task)
                        .await
                        .is_err()
                    {
                        task.abort();
                    }
                }
                Ok(200)
            }
        };

        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(pc) = self.pc.take() {
            let _ = pc.close().await;
        }
        result
    }

    async fn start_media(
        &mut self,
        opts: &PublisherOptions,
        video: SendTrack,
        audio: Option<SendTrack>,
    ) -> anyhow::Result<()> {
        let (vtx, vrx) = mpsc::channel::<Bytes>(1024);
        let (atx, arx) = mpsc::channel::<Bytes>(1024);
        if opts.obs_like
            && let Ok(mut from) = self.stats.video_from.lock()
        {
            *from = Some(std::time::Instant::now() + OBS_AUDIO_LEAD);
            self.stats.lose_first_slice.store(true, Ordering::Relaxed);
        }
        if let Some(feed) = &opts.feed {
            return self
                .start_fed_media(
                    feed,
                    opts.simulcast_rids(),
                    video,
                    audio,
                    (vtx, vrx),
                    (atx, arx),
                )
                .await;
        }
        let launch = pipeline_description(opts);
        let stats = self.stats.clone();
        let with_audio = audio.is_some();
        let timecode = opts.timecode;
        let av_marks = opts.av_marks.then_some(opts.fps.max(1));
        let (pipeline, encoder) = tokio::task::spawn_blocking(move || {
            let built = build_pipeline(&launch, vtx, with_audio.then_some(atx), &stats)?;
            // Before the barcode probe, so a barcode (if both are on) stays readable.
            if let Some(fps) = av_marks {
                install_av_mark_probes(&built.0, fps, with_audio)?;
            }
            if timecode {
                install_timecode_probe(&built.0)?;
            }
            anyhow::Ok(built)
        })
        .await??;

        // Keyframe requests → GstForceKeyUnit upstream event on the encoder.
        let stats = self.stats.clone();
        let vtrack = video.track.clone();
        let honour = !opts.ignore_keyframe_requests;
        self.tasks.push(tokio::spawn(async move {
            while let Some(event) = vtrack.poll().await {
                let TrackLocalEvent::OnRtcpPacket(packets) = event else {
                    continue;
                };
                if packets.iter().any(is_keyframe_request) {
                    stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    if let Some(pad) = encoder.static_pad("src").filter(|_| honour) {
                        let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
                            .all_headers(true)
                            .build();
                        pad.send_event(ev);
                    }
                }
            }
        }));

        self.tasks
            .push(spawn_forwarder(vrx, video, self.stats.clone(), true));
        if let Some(audio) = audio {
            self.tasks
                .push(spawn_forwarder(arx, audio, self.stats.clone(), false));
        }

        // Bus watcher: records the first error (and prints errors/warnings).
        if let Some(bus) = pipeline.bus() {
            let stop = self.bus_stop.clone();
            let stats = self.stats.clone();
            std::thread::Builder::new()
                .name("publisher-bus".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(msg) = bus.timed_pop_filtered(
                            gst::ClockTime::from_mseconds(100),
                            &[gst::MessageType::Error, gst::MessageType::Warning],
                        ) else {
                            continue;
                        };
                        match msg.view() {
                            gst::MessageView::Error(e) => {
                                let text = format!("{} ({:?})", e.error(), e.debug());
                                eprintln!("publisher: GStreamer error: {text}");
                                if let Ok(mut slot) = stats.media_error.lock() {
                                    slot.get_or_insert(text);
                                }
                            }
                            gst::MessageView::Warning(w) => {
                                eprintln!("publisher: GStreamer warning: {}", w.error());
                            }
                            _ => {}
                        }
                    }
                })
                .context("spawning the bus thread")?;
        }

        let p = pipeline.clone();
        self.pipeline = Some(pipeline);
        tokio::task::spawn_blocking(move || p.set_state(gst::State::Playing))
            .await?
            .map_err(|e| anyhow!("pipeline -> Playing: {e}"))?;
        Ok(())
    }

    /// [`PublisherOptions::feed`]: the shared broadcasts into this publisher's forwarders
    /// (a bridge task per kind, dropping and counting what the forwarder cannot take, as the
    /// appsink callbacks do), keyframe requests counted only.
    async fn start_fed_media(
        &mut self,
        feed: &Feed,
        rids: &[&'static str],
        video: SendTrack,
        audio: Option<SendTrack>,
        (vtx, vrx): (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>),
        (atx, arx): (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>),
    ) -> anyhow::Result<()> {
        let bridge =
            |mut rx: broadcast::Receiver<Bytes>, tx: mpsc::Sender<Bytes>, stats: Arc<Stats>| {
                tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(b) => match tx.try_send(b) {
                                Ok(()) => {}
                                Err(mpsc::error::TrySendError::Full(_)) => {
                                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(mpsc::error::TrySendError::Closed(_)) => break,
                            },
                            Err(broadcast::error::RecvError::Lagged(n)) => {
                                stats.dropped.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(broadcast::error::RecvError::Closed) => break,
                        }
                    }
                })
            };
        let stats = self.stats.clone();
        let vtrack = video.track.clone();
        self.tasks.push(tokio::spawn(async move {
            while let Some(event) = vtrack.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(packets) = event
                    && packets.iter().any(is_keyframe_request)
                {
                    stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        if feed.layers.is_empty() {
            self.tasks
                .push(bridge(feed.video.subscribe(), vtx, self.stats.clone()));
            self.tasks
                .push(spawn_forwarder(vrx, video, self.stats.clone(), true));
        } else {
            // Simulcast: each layer its own channel and forwarder (its SSRC, its rid).
            let layers = video.simulcast_layers(rids).await?;
            let sources = std::iter::once(&feed.video).chain(&feed.layers);
            for (layer, source) in layers.into_iter().zip(sources) {
                let (tx, rx) = mpsc::channel::<Bytes>(1024);
                self.tasks
                    .push(bridge(source.subscribe(), tx, self.stats.clone()));
                self.tasks
                    .push(spawn_forwarder(rx, layer, self.stats.clone(), true));
            }
            drop((vtx, vrx));
        }
        if let Some(audio) = audio {
            self.tasks
                .push(bridge(feed.audio.subscribe(), atx, self.stats.clone()));
            self.tasks
                .push(spawn_forwarder(arx, audio, self.stats.clone(), false));
        }
        Ok(())
    }

    async fn stop_media(&mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            let _ = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null)).await;
        }
        self.bus_stop.store(true, Ordering::Relaxed);
        // The forwarders end by themselves once the appsinks (senders) are gone; abort anyway.
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        if let Some(pipeline) = self.pipeline.take() {
            let _ = pipeline.set_state(gst::State::Null);
        }
        self.bus_stop.store(true, Ordering::Relaxed);
        if let Some(ws) = self.ws.take() {
            // Dropping the socket closes the TCP connection (no close frame).
            ws.task.abort();
        }
        if let Some(pc) = self.pc.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Negotiation

#[derive(Clone)]
struct SendTrack {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    transceiver: Arc<dyn RtpTransceiver>,
    ssrc: u32,
    /// Simulcast: the lower layers' SSRCs, in [`SIMULCAST_RIDS`] order after `ssrc`'s.
    layer_ssrcs: Vec<u32>,
    payload_type: u8,
    /// Header extensions (negotiated id, value) every packet carries: simulcast's MID and
    /// RtpStreamId, set per layer by [`SendTrack::simulcast_layers`].
    extensions: Vec<(u8, Bytes)>,
}

struct Negotiated {
    session_url: Option<String>,
    http: reqwest::Client,
    ws: Option<WsHandle>,
    tasks: Vec<JoinHandle<()>>,
    video: SendTrack,
    audio: Option<SendTrack>,
    offer_sent_at: std::time::Instant,
}

/// A send-only transceiver for one track; with `rids`, one encoding (and SSRC) per simulcast
/// layer, which makes webrtc-rs offer `a=rid:<rid> send` and `a=simulcast:send h;m;l`.
async fn add_send_track(
    pc: &Arc<dyn PeerConnection>,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    rids: &[&str],
) -> anyhow::Result<SendTrack> {
    let name = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    let ssrcs: Vec<u32> = (0..rids.len().max(1))
        .map(|_| rand::random::<u32>())
        .collect();
    let codings = ssrcs
        .iter()
        .enumerate()
        .map(|(i, ssrc)| RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(*ssrc),
                rid: rids.get(i).map(|r| (*r).to_owned()).unwrap_or_default(),
                ..Default::default()
            },
            codec: codec.clone(),
            ..Default::default()
        })
        .collect();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "whipcast-publisher".to_owned(),
        format!("publisher-{name}"),
        name.to_owned(),
        kind,
        codings,
    )));
    let transceiver = pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                streams: vec!["whipcast-publisher".to_owned()],
                send_encodings: vec![],
            }),
        )
        .await
        .with_context(|| format!("adding the {name} transceiver"))?;
    let sender = transceiver
        .sender()
        .await?
        .ok_or_else(|| anyhow!("{name} transceiver has no sender"))?;
    Ok(SendTrack {
        track,
        sender,
        transceiver,
        ssrc: ssrcs[0],
        layer_ssrcs: ssrcs[1..].to_vec(),
        payload_type: 0,
        extensions: Vec::new(),
    })
}

impl SendTrack {
    /// Simulcast, once negotiated: one track per layer of `rids` (the offer's, top first),
    /// each with its SSRC and its MID and RtpStreamId header extensions (the ids the answer
    /// gave).
    async fn simulcast_layers(&self, rids: &[&'static str]) -> anyhow::Result<Vec<SendTrack>> {
        let params = self.sender.get_parameters().await?;
        let id = |uri: &str| {
            params
                .rtp_parameters
                .header_extensions
                .iter()
                .find(|e| e.uri == uri)
                .and_then(|e| u8::try_from(e.id).ok())
                .ok_or_else(|| anyhow!("the answer did not accept the header extension {uri}"))
        };
        let (mid_id, rid_id) = (id(SDES_MID_URI)?, id(SDES_RTP_STREAM_ID_URI)?);
        let mid = self
            .transceiver
            .mid()
            .await?
            .ok_or_else(|| anyhow!("the video transceiver has no mid"))?;
        Ok(std::iter::once(self.ssrc)
            .chain(self.layer_ssrcs.iter().copied())
            .zip(rids.iter().copied())
            .map(|(ssrc, rid)| SendTrack {
                ssrc,
                layer_ssrcs: Vec::new(),
                extensions: vec![
                    (mid_id, Bytes::from(mid.clone().into_bytes())),
                    (rid_id, Bytes::from_static(rid.as_bytes())),
                ],
                ..self.clone()
            })
            .collect())
    }
}

/// Payload type the answer negotiated for this sender's codec.
async fn negotiated_payload_type(sender: &Arc<dyn RtpSender>, mime: &str) -> anyhow::Result<u8> {
    let params = sender.get_parameters().await?;
    let codecs = &params.rtp_parameters.codecs;
    codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .or_else(|| codecs.first())
        .map(|c| c.payload_type)
        .ok_or_else(|| anyhow!("no codec negotiated for {mime}"))
}

#[allow(clippy::too_many_arguments)] // one call site; each is a different part of the set-up
async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    opts: &PublisherOptions,
    mut state_rx: watch::Receiver<RTCPeerConnectionState>,
    mut gathering_rx: watch::Receiver<RTCIceGatheringState>,
    cand_rx: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    video_codec: RTCRtpCodec,
    audio_codec: RTCRtpCodec,
    stats: Arc<Stats>,
) -> anyhow::Result<Negotiated> {
    let video_mime = video_codec.mime_type.clone();
    // OBS puts the audio section first.
    let mut audio = if opts.audio && opts.obs_like {
        Some(add_send_track(pc, RtpCodecKind::Audio, audio_codec.clone(), &[]).await?)
    } else {
        None
    };
    let mut video =
        add_send_track(pc, RtpCodecKind::Video, video_codec, opts.simulcast_rids()).await?;
    if opts.audio && !opts.obs_like {
        audio = Some(add_send_track(pc, RtpCodecKind::Audio, audio_codec, &[]).await?);
    }

    let offer = pc.create_offer(None).await.context("create_offer")?;
    pc.set_local_description(offer)
        .await
        .context("set_local_description(offer)")?;

    let trickle = matches!(opts.signaling, Signaling::Ws { .. }) && opts.trickle;
    if !trickle {
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            gathering_rx.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| anyhow!("ICE gathering did not complete in {CONNECT_TIMEOUT:?}"))?
        .map_err(|_| anyhow!("peer connection handler dropped"))?;
    }
    let offer_sdp = loopback_only_sdp(
        &pc.local_description()
            .await
            .ok_or_else(|| anyhow!("no local description"))?
            .sdp,
    );
    let offer_sdp = if opts.obs_like {
        obs_shaped_sdp(&offer_sdp, video.ssrc)
    } else {
        offer_sdp
    };

    let http = reqwest::Client::builder()
        .no_proxy() // loopback only: never go through an environment proxy
        .timeout(CONNECT_TIMEOUT)
        .build()?;
    let mut tasks = Vec::new();
    let mut ws_handle = None;
    let mut session_url = None;
    let offer_sent_at: std::time::Instant;

    match &opts.signaling {
        Signaling::Whip { url, token } => {
            let mut req = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/sdp")
                .body(offer_sdp);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            offer_sent_at = std::time::Instant::now();
            let resp = req
                .send()
                .await
                .map_err(|e| anyhow!("WHIP POST {url} failed: {e}"))?;
            let status = resp.status();
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.text().await.unwrap_or_default();
            if status != reqwest::StatusCode::CREATED {
                bail!(
                    "WHIP POST {url} returned {} (expected 201): {body}",
                    status.as_u16()
                );
            }
            let location =
                location.ok_or_else(|| anyhow!("WHIP 201 response without a Location header"))?;
            // Resolve a relative Location against the endpoint URL (the contract says absolute).
            let absolute = reqwest::Url::parse(url)
                .and_then(|base| base.join(&location))
                .map(|u| u.to_string())
                .unwrap_or(location);
            session_url = Some(absolute);
            let answer = RTCSessionDescription::answer(loopback_only_sdp(&body))
                .context("parsing the WHIP answer")?;
            pc.set_remote_description(answer)
                .await
                .context("set_remote_description(answer)")?;
        }
        Signaling::Ws { url } => {
            let (socket, _) = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await
            .map_err(|_| anyhow!("WebSocket connect to {url} timed out"))?
            .map_err(|e| anyhow!("WebSocket connect to {url} failed: {e}"))?;
            let (out_tx, out_rx) = mpsc::unbounded_channel::<WsOut>();
            let (in_tx, mut in_rx) = mpsc::unbounded_channel::<WsIn>();
            let task = tokio::spawn(ws_task(socket, out_rx, in_tx));
            let ws = WsHandle { out_tx, task };

            let offer_msg = serde_json::json!({"type": "offer", "sdp": offer_sdp});
            offer_sent_at = std::time::Instant::now();
            let _ = ws.out_tx.send(WsOut::Text(offer_msg.to_string()));
            if trickle {
                let out_tx = ws.out_tx.clone();
                let mut cand_rx = cand_rx;
                tasks.push(tokio::spawn(async move {
                    while let Some(c) = cand_rx.recv().await {
                        let msg = serde_json::json!({
                            "type": "candidate",
                            "candidate": {
                                "candidate": c.candidate,
                                "sdpMid": c.sdp_mid,
                                "sdpMLineIndex": c.sdp_mline_index,
                            }
                        });
                        if out_tx.send(WsOut::Text(msg.to_string())).is_err() {
                            break;
                        }
                    }
                }));
            }
            ws_handle = Some(ws);

            let mut early_candidates = Vec::new();
            let answer_sdp = tokio::time::timeout(CONNECT_TIMEOUT, async {
                loop {
                    match in_rx.recv().await {
                        Some(WsIn::Answer(sdp)) => return Ok(sdp),
                        Some(WsIn::Candidate(c)) => early_candidates.push(c),
                        Some(WsIn::Error(m)) => bail!("WebSocket signaling error: {m}"),
                        Some(WsIn::Ended(why)) => bail!("ended before the answer: {why}"),
                        Some(WsIn::Closed(why)) => {
                            bail!("WebSocket closed before the answer: {why}")
                        }
                        None => bail!("WebSocket task ended before the answer"),
                    }
                }
            })
            .await
            .map_err(|_| anyhow!("no answer on the WebSocket within {CONNECT_TIMEOUT:?}"))??;
            let answer = RTCSessionDescription::answer(loopback_only_sdp(&answer_sdp))
                .context("parsing the WebSocket answer")?;
            pc.set_remote_description(answer)
                .await
                .context("set_remote_description(answer)")?;
            for c in early_candidates {
                apply_remote_candidate(pc, c).await;
            }
            // Remote candidates that trickle in later.
            let pc2 = pc.clone();
            let stats2 = stats.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(msg) = in_rx.recv().await {
                    match msg {
                        WsIn::Candidate(c) => apply_remote_candidate(&pc2, c).await,
                        WsIn::Error(m) => eprintln!("publisher: WebSocket error message: {m}"),
                        WsIn::Answer(_) => eprintln!("publisher: unexpected second answer"),
                        WsIn::Ended(reason) => {
                            *stats2.server_ended.lock().expect("stats lock") = Some(reason);
                        }
                        WsIn::Closed(_) => break,
                    }
                }
            }));
        }
    }

    // Wait for Connected.
    let state = tokio::time::timeout(
        CONNECT_TIMEOUT,
        state_rx.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        }),
    )
    .await
    .map_err(|_| {
        for t in &tasks {
            t.abort();
        }
        anyhow!("peer connection not connected within {CONNECT_TIMEOUT:?}")
    })?
    .map(|s| *s)
    .map_err(|_| anyhow!("peer connection handler dropped"))?;
    if state != RTCPeerConnectionState::Connected {
        for t in &tasks {
            t.abort();
        }
        if let Some(ws) = ws_handle {
            ws.task.abort();
        }
        bail!("peer connection {state} before it connected");
    }

    video.payload_type = negotiated_payload_type(&video.sender, &video_mime).await?;
    if let Some(a) = audio.as_mut() {
        a.payload_type = negotiated_payload_type(&a.sender, MIME_TYPE_OPUS).await?;
    }

    Ok(Negotiated {
        session_url,
        http,
        ws: ws_handle,
        tasks,
        video,
        audio,
        offer_sent_at,
    })
}

async fn apply_remote_candidate(pc: &Arc<dyn PeerConnection>, c: RTCIceCandidateInit) {
    if !candidate_is_loopback(&c.candidate) {
        return; // loopback-only machine: never try to reach another address
    }
    if let Err(e) = pc.add_ice_candidate(c).await {
        eprintln!("publisher: add_ice_candidate failed: {e}");
    }
}

/// Whether an ICE candidate string (`candidate:...` or `a=candidate:...`) has a loopback
/// connection address. An end-of-candidates marker (empty) counts as loopback.
pub fn candidate_is_loopback(candidate: &str) -> bool {
    let c = candidate.trim();
    if c.is_empty() {
        return true;
    }
    let c = c.strip_prefix("a=").unwrap_or(c);
    match c.split_whitespace().nth(4) {
        Some(addr) => addr
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false),
        None => false,
    }
}

/// Rewrites a webrtc-rs offer into the shape of OBS Studio's (see
/// [`PublisherOptions::obs_like`]): `o=rtc`, `a=group:LS` and `a=ice-options:ice2,trickle`,
/// ICE credentials, fingerprint and `a=setup` moved to session level, no candidates. With
/// simulcast, OBS declares its first layer's SSRC (`video_ssrc`) in the video section
/// beside the `a=rid` lines (libdatachannel `addSSRC`), which webrtc-rs does not.
pub fn obs_shaped_sdp(sdp: &str, video_ssrc: u32) -> String {
    let lines: Vec<&str> = sdp.lines().map(|l| l.trim_end_matches('\r')).collect();
    let hoisted = ["a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:", "a=setup:"];
    let mut session: Vec<String> = Vec::new();
    let mut media: Vec<String> = Vec::new();
    let mut moved: Vec<String> = Vec::new();
    let mut in_media = false;
    for line in &lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            in_media = true;
        }
        let is_hoisted = hoisted.iter().any(|h| line.starts_with(h));
        if line.starts_with("a=candidate:")
            || line.starts_with("a=end-of-candidates")
            || line.starts_with("a=ice-options:")
        {
            continue;
        }
        if in_media {
            if is_hoisted {
                if !moved
                    .iter()
                    .any(|m| m.split(':').next() == line.split(':').next())
                {
                    moved.push((*line).to_string());
                }
            } else {
                media.push((*line).to_string());
            }
        } else if let Some(rest) = line.strip_prefix("o=") {
            let tail: Vec<&str> = rest.splitn(2, ' ').collect();
            session.push(format!("o=rtc {}", tail.get(1).unwrap_or(&"")));
        } else {
            session.push((*line).to_string());
            if let Some(mids) = line.strip_prefix("a=group:BUNDLE ") {
                session.push(format!("a=group:LS {mids}"));
            }
        }
    }
    // The video section: from its `m=` line to the next one.
    let video = media
        .iter()
        .position(|l| l.starts_with("m=video"))
        .map(|at| {
            let end = media[at + 1..]
                .iter()
                .position(|l| l.starts_with("m="))
                .map_or(media.len(), |n| at + 1 + n);
            at..end
        });
    if let Some(section) = video
        && !media[section.clone()]
            .iter()
            .any(|l| l.starts_with("a=ssrc:"))
        && let Some(at) = media[section.clone()]
            .iter()
            .position(|l| l.starts_with("a=simulcast:"))
            .map(|n| section.start + n)
    {
        media.splice(
            at..at,
            [
                format!("a=ssrc:{video_ssrc} cname:whipcast-publisher"),
                format!("a=ssrc:{video_ssrc} msid:whipcast-publisher publisher-video"),
            ],
        );
    }
    session.push("a=ice-options:ice2,trickle".to_string());
    session.extend(moved);
    session.extend(media);
    let mut out = session.join("\r\n");
    out.push_str("\r\n");
    out
}

/// Drops every `a=candidate` line whose address is not loopback.
pub fn loopback_only_sdp(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed.starts_with("a=candidate:") && !candidate_is_loopback(trimmed) {
            continue;
        }
        out.push_str(line);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// WebSocket signaling

enum WsOut {
    Text(String),
    Close,
}

enum WsIn {
    Answer(String),
    Candidate(RTCIceCandidateInit),
    Error(String),
    /// The server's `{"type":"ended","reason":…}`.
    Ended(String),
    Closed(String),
}

struct WsHandle {
    out_tx: mpsc::UnboundedSender<WsOut>,
    task: JoinHandle<()>,
}

async fn ws_task<S>(
    socket: tokio_tungstenite::WebSocketStream<S>,
    mut out_rx: mpsc::UnboundedReceiver<WsOut>,
    in_tx: mpsc::UnboundedSender<WsIn>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    loop {
        tokio::select! {
            out = out_rx.recv() => match out {
                Some(WsOut::Text(text)) => {
                    if let Err(e) = sink.send(Message::Text(text.into())).await {
                        let _ = in_tx.send(WsIn::Closed(format!("send failed: {e}")));
                        return;
                    }
                }
                Some(WsOut::Close) | None => {
                    let _ = sink.send(Message::Close(None)).await;
                    // Wait (briefly) for the server's close frame so the close is clean.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Some(Ok(msg)) = stream.next().await {
                            if matches!(msg, Message::Close(_)) {
                                break;
                            }
                        }
                    })
                    .await;
                    let _ = sink.close().await;
                    return;
                }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    if let Some(m) = parse_ws_message(text.as_str()) {
                        let _ = in_tx.send(m);
                    }
                }
                // tungstenite queues the Pong itself; it goes out with the next write/flush.
                Some(Ok(Message::Ping(_))) => {
                    let _ = sink.flush().await;
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = in_tx.send(WsIn::Closed(format!("close frame {frame:?}")));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    let _ = in_tx.send(WsIn::Closed(format!("read error: {e}")));
                    return;
                }
                None => {
                    let _ = in_tx.send(WsIn::Closed("stream ended".into()));
                    return;
                }
            },
        }
    }
}

fn parse_ws_message(text: &str) -> Option<WsIn> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    match v.get("type")?.as_str()? {
        "answer" => Some(WsIn::Answer(v.get("sdp")?.as_str()?.to_owned())),
        "candidate" => {
            let c = v.get("candidate")?;
            // Accept both `{"candidate":{...}}` and a bare candidate string.
            let init = if let Some(s) = c.as_str() {
                RTCIceCandidateInit {
                    candidate: s.to_owned(),
                    ..Default::default()
                }
            } else {
                RTCIceCandidateInit {
                    candidate: c.get("candidate")?.as_str()?.to_owned(),
                    sdp_mid: c.get("sdpMid").and_then(|m| m.as_str()).map(str::to_owned),
                    sdp_mline_index: c
                        .get("sdpMLineIndex")
                        .and_then(|m| m.as_u64())
                        .and_then(|m| u16::try_from(m).ok()),
                    ..Default::default()
                }
            };
            Some(WsIn::Candidate(init))
        }
        "ended" => Some(WsIn::Ended(
            v.get("reason")
                .and_then(|m| m.as_str())
                .unwrap_or_default()
                .to_owned(),
        )),
        "error" => Some(WsIn::Error(
            v.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or(text)
                .to_owned(),
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Peer connection event handler (hand-expanded `#[async_trait]`: the crate does not depend on
// the async-trait macro crate; the trait's methods return boxed futures).

type HandlerFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

struct PubHandler {
    state_tx: watch::Sender<RTCPeerConnectionState>,
    gathering_tx: watch::Sender<RTCIceGatheringState>,
    cand_tx: mpsc::UnboundedSender<RTCIceCandidateInit>,
}

impl PeerConnectionEventHandler for PubHandler {
    fn on_ice_candidate<'life0, 'async_trait>(
        &'life0 self,
        event: RTCPeerConnectionIceEvent,
    ) -> HandlerFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            if let Ok(mut init) = event.candidate.to_json()
                && candidate_is_loopback(&init.candidate)
            {
                init.sdp_mid = Some("0".to_owned());
                init.sdp_mline_index = Some(0);
                let _ = self.cand_tx.send(init);
            }
        })
    }

    fn on_ice_gathering_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceGatheringState,
    ) -> HandlerFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let _ = self.gathering_tx.send(state);
        })
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> HandlerFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let _ = self.state_tx.send(state);
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Interceptor: deliver inbound PLI/FIR to the application (copied from the webrtc 0.21
// `rtcp-processing` example). Without it the default interceptors consume all inbound RTCP.

#[derive(Default)]
struct KeyframeRequestForwarder {
    read_queue: std::collections::VecDeque<TaggedPacket>,
    write_queue: std::collections::VecDeque<TaggedPacket>,
}

#[allow(clippy::borrowed_box)]
fn is_keyframe_request(packet: &Box<dyn rtc::rtcp::Packet>) -> bool {
    let any = packet.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_keyframe_request(p))
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = IPacket::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

// ---------------------------------------------------------------------------------------------
// Codecs and media

fn video_rtp_codec(video: VideoCodec) -> RTCRtpCodec {
    let feedback = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    let rtcp_feedback = vec![
        feedback("nack", ""),
        feedback("nack", "pli"),
        feedback("ccm", "fir"),
    ];
    match video {
        VideoCodec::H264 => RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .to_owned(),
            rtcp_feedback,
        },
        VideoCodec::Vp8 => RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback,
        },
    }
}

fn opus_rtp_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The `gst-launch` description of the media pipeline (a fixed template; test code).
pub fn pipeline_description(opts: &PublisherOptions) -> String {
    let PublisherOptions {
        width,
        height,
        fps,
        bitrate_kbps,
        ..
    } = *opts;
    let fps = fps.max(1);
    let gop = fps * 2;
    // OBS encodes High profile whatever its fmtp says (42e01f: constrained baseline).
    let profile = if opts.obs_like {
        "high"
    } else {
        "constrained-baseline"
    };
    // A/V marks: a black picture (the probe paints the white frames) and a 1 kHz sine the
    // probe silences outside the beeps, as S16LE at 48 kHz so it can work per sample and
    // audioresample has nothing to do (the beep onsets stay sample-exact).
    let pattern = if opts.av_marks {
        "pattern=black"
    } else {
        "pattern=smpte horizontal-speed=2"
    };
    let audio_source = if opts.av_marks {
        "audiotestsrc is-live=true wave=sine freq=1000 samplesperbuffer=480 \
         ! capsfilter name=acaps caps=audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=2"
    } else {
        "audiotestsrc is-live=true wave=sine freq=440"
    };
    let source = format!(
        "videotestsrc is-live=true {pattern} \
         ! capsfilter name=vcaps caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1"
    );
    let video = match opts.video {
        VideoCodec::H264 => format!(
            "{source} ! {}",
            h264_chain("venc", bitrate_kbps, gop, profile, "vsink")
        ),
        VideoCodec::Vp8 => format!(
            "{source} ! vp8enc name=venc deadline=1 cpu-used=8 lag-in-frames=0 end-usage=cbr \
             keyframe-max-dist={gop} target-bitrate={} \
             ! rtpvp8pay pt={VP8_PT} mtu=1200 picture-id-mode=15-bit \
             ! appsink name=vsink sync=false",
            bitrate_kbps.saturating_mul(1000)
        ),
    };
    if opts.audio {
        format!(
            "{video}  {audio_source} ! audioconvert ! audioresample \
             ! audio/x-raw,rate=48000,channels=2 ! opusenc bitrate=64000 \
             ! rtpopuspay pt={OPUS_PT} mtu=1200 ! appsink name=asink sync=false"
        )
    } else {
        video
    }
}

/// x264 (zerolatency, ultrafast, no B-frames, a keyframe every `gop` frames), RTP, appsink.
fn h264_chain(encoder: &str, bitrate_kbps: u32, gop: u32, profile: &str, sink: &str) -> String {
    format!(
        "x264enc name={encoder} tune=zerolatency speed-preset=ultrafast \
         bitrate={bitrate_kbps} key-int-max={gop} bframes=0 \
         ! video/x-h264,profile={profile} \
         ! rtph264pay pt={H264_PT} mtu=1200 config-interval=-1 aggregate-mode=zero-latency \
         ! appsink name={sink} sync=false"
    )
}

/// [`pipeline_description`] with H.264 simulcast: the picture is encoded three times, as a
/// browser does with `scaleResolutionDownBy` 1, 2 and 4 — full size to `vsink`, half size at
/// a quarter of the bitrate to `vsink_m`, quarter size at a sixteenth to `vsink_l` (the
/// lower layers' appsinks, [`SIMULCAST_RIDS`] order). The three encoders get the same frames
/// and the same GOP length, so their keyframes are the same pictures.
pub fn simulcast_pipeline_description(opts: &PublisherOptions) -> String {
    let single = pipeline_description(&PublisherOptions {
        video: VideoCodec::H264,
        ..opts.clone()
    });
    let gop = opts.fps.max(1) * 2;
    let profile = "constrained-baseline";
    let mut layers = String::new();
    for (scale, sink) in [(2, "vsink_m"), (4, "vsink_l")] {
        // Even sizes (4:2:0).
        let (w, h) = ((opts.width / scale) & !1, (opts.height / scale) & !1);
        let bitrate = (opts.bitrate_kbps / (scale * scale)).max(50);
        layers.push_str(&format!(
            "  vt. ! queue ! videoscale ! video/x-raw,width={w},height={h} ! {}",
            h264_chain(&format!("venc_{sink}"), bitrate, gop, profile, sink)
        ));
    }
    // The top layer's encoder gets its frames through a tee like the others.
    single.replacen(
        " ! x264enc name=venc ",
        " ! tee name=vt  vt. ! queue ! x264enc name=venc ",
        1,
    ) + &layers
}

/// Builds the pipeline (not started) and wires the appsinks to the channels.
/// Returns the pipeline and the video encoder (target of force-key-unit events).
fn build_pipeline(
    launch: &str,
    video_tx: mpsc::Sender<Bytes>,
    audio_tx: Option<mpsc::Sender<Bytes>>,
    stats: &Arc<Stats>,
) -> anyhow::Result<(gst::Pipeline, gst::Element)> {
    let pipeline = gst::parse::launch(launch)
        .with_context(|| format!("gst parse::launch({launch})"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| anyhow!("launch description is not a pipeline"))?;
    let encoder = pipeline
        .by_name("venc")
        .ok_or_else(|| anyhow!("no venc element"))?;
    connect_appsink(&pipeline, "vsink", video_tx, stats.clone())?;
    if let Some(audio_tx) = audio_tx {
        connect_appsink(&pipeline, "asink", audio_tx, stats.clone())?;
    }
    Ok((pipeline, encoder))
}

fn connect_appsink(
    pipeline: &gst::Pipeline,
    name: &str,
    tx: mpsc::Sender<Bytes>,
    stats: Arc<Stats>,
) -> anyhow::Result<()> {
    on_appsink_packets(pipeline, name, move |packet| {
        // Never block the streaming thread: drop (and count) when the channel is full.
        match tx.try_send(packet) {
            Ok(()) => Ok(gst::FlowSuccess::Ok),
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                Ok(gst::FlowSuccess::Ok)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(gst::FlowError::Flushing),
        }
    })
}

/// Hands every buffer appsink `name` of `pipeline` receives (an RTP packet) to `each`, on
/// the streaming thread.
fn on_appsink_packets(
    pipeline: &gst::Pipeline,
    name: &str,
    each: impl Fn(Bytes) -> Result<gst::FlowSuccess, gst::FlowError> + Send + 'static,
) -> anyhow::Result<()> {
    let sink = pipeline
        .by_name(name)
        .ok_or_else(|| anyhow!("no {name} element"))?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| anyhow!("{name} is not an appsink"))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(buffer) = sample.buffer() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                each(Bytes::copy_from_slice(map.as_slice()))
            })
            .build(),
    );
    Ok(())
}

/// Unmarshals RTP from the appsink, rewrites PT/SSRC to the negotiated values, writes it.
fn spawn_forwarder(
    mut rx: mpsc::Receiver<Bytes>,
    send: SendTrack,
    stats: Arc<Stats>,
    is_video: bool,
) -> JoinHandle<()> {
    let mut start_loss =
        (is_video && stats.lose_first_slice.swap(false, Ordering::Relaxed)).then(StartLoss::new);
    tokio::spawn(async move {
        let mut reported = false;
        let mut held: std::collections::VecDeque<rtc::rtp::packet::Packet> =
            std::collections::VecDeque::new();
        while let Some(bytes) = rx.recv().await {
            let mut buf = bytes.clone();
            let mut packet = match rtc::rtp::packet::Packet::unmarshal(&mut buf) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("publisher: bad RTP from GStreamer: {e}");
                    continue;
                }
            };
            if stats.paused.load(Ordering::Relaxed) {
                continue;
            }
            if is_video
                && stats
                    .video_from
                    .lock()
                    .ok()
                    .and_then(|g| *g)
                    .is_some_and(|t| std::time::Instant::now() < t)
            {
                continue;
            }
            if start_loss
                .as_mut()
                .is_some_and(|l| l.drops(&packet.payload))
            {
                continue;
            }
            if is_video
                && stats
                    .corrupt
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let garbage: Vec<u8> = (0..packet.payload.len().max(1))
                    .map(|_| rand::random::<u8>())
                    .collect();
                packet.payload = Bytes::from(garbage);
            }
            packet.header.payload_type = send.payload_type;
            packet.header.ssrc = send.ssrc;
            // Only negotiated header extensions may be sent; GStreamer adds none here.
            packet.header.extension = false;
            packet.header.extensions.clear();
            for (id, value) in &send.extensions {
                if let Err(e) = packet.header.set_extension(*id, value.clone()) {
                    eprintln!("publisher: header extension {id}: {e}");
                }
            }
            if stats.held.load(Ordering::Relaxed) {
                // Bounded: about a minute of 1.5 Mbit/s video.
                if held.len() < 8192 {
                    held.push_back(packet);
                }
                continue;
            }
            held.push_back(packet);
            while let Some(packet) = held.pop_front() {
                match send.track.write_rtp(packet).await {
                    Ok(()) => {
                        stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                        if is_video {
                            stats.video_packets_sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            stats.audio_packets_sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        stats.write_errors.fetch_add(1, Ordering::Relaxed);
                        if !reported {
                            reported = true;
                            eprintln!("publisher: write_rtp failed: {e}");
                        }
                    }
                }
            }
        }
    })
}

/// The start of a publisher's first keyframes lost, as OBS loses its first RTP packets
/// (obs-studio#9614; with x264's sliced threads a keyframe is several slices): every video
/// packet before the first IDR slice is dropped (parameter sets and SEI pass), then that
/// slice's packets; the same for the next keyframe's first slice; then nothing. Two
/// keyframes, so the one a simulcast broadcast starts its pipeline at (the first after its
/// layers are planned) arrives without its first slice whichever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StartLoss {
    /// Keyframes still to lose their first slice.
    keyframes: u32,
    /// Dropping the rest of an IDR slice's fragments (FU-A).
    in_slice: bool,
    /// A first slice was dropped: before it, predicted slices are dropped too.
    started: bool,
    /// The last slice seen was an IDR slice (the next IDR slice is of the same keyframe).
    last_idr: bool,
}

impl StartLoss {
    fn new() -> StartLoss {
        StartLoss {
            keyframes: 2,
            in_slice: false,
            started: false,
            last_idr: false,
        }
    }

    /// Whether to drop the packet with this H.264 payload (RFC 6184 §5.2: the NAL unit
    /// type of a single NAL unit packet, STAP-A 24, FU-A 28 with the FU header after it).
    fn drops(&mut self, payload: &[u8]) -> bool {
        const IDR: u8 = 5;
        const NON_IDR: u8 = 1;
        const FU_A: u8 = 28;
        let Some(nal) = payload.first().map(|b| b & 0x1f) else {
            return false;
        };
        // For a fragment: its start and end bits and the fragmented unit's type.
        let fu = (nal == FU_A)
            .then(|| payload.get(1).copied())
            .flatten()
            .map(|h| (h & 0x80 != 0, h & 0x40 != 0, h & 0x1f));
        if self.in_slice {
            if let Some((false, end, _)) = fu {
                self.in_slice = !end;
                return true;
            }
            self.in_slice = false;
        }
        // A slice's first packet: the slice's type, and whether it is also its last.
        let slice_start = match fu {
            Some((true, end, t)) if t == IDR || t == NON_IDR => Some((t, end)),
            None if nal == IDR || nal == NON_IDR => Some((nal, true)),
            _ => None,
        };
        let Some((kind, end)) = slice_start else {
            // Parameter sets and SEI pass; before the first loss, fragments of slices whose
            // start was not seen are dropped.
            return !self.started && fu.is_some();
        };
        let first_of_keyframe = kind == IDR && !self.last_idr;
        self.last_idr = kind == IDR;
        if first_of_keyframe && self.keyframes > 0 {
            self.keyframes -= 1;
            self.started = true;
            self.in_slice = !end;
            return true;
        }
        !self.started
    }
}

// ---------------------------------------------------------------------------------------------
// Capture-time barcode (glass-to-glass latency). The decoder is tests/browser/timecode.mjs;
// keep the two in step.
//
// The top third of the frame is a grid of TIMECODE_COLS × TIMECODE_ROWS blocks (640x360: 40x24
// px each; still 20x12 px in a 320x180 rendition). Row 0 is a calibration row (white, black,
// white, …) that gives the decoder its black and white levels. Rows 1–4 carry 64 bits, most
// significant first, row by row, left to right, white = 1: 48 bits of wall-clock
// milliseconds since the Unix epoch, then CRC-16/CCITT-FALSE of those 6 bytes. The chroma
// under the grid is neutral, so the blocks are pure grey. The rest of the picture stays the
// moving videotestsrc pattern (realistic P-frames).

/// Columns of the barcode grid.
pub const TIMECODE_COLS: usize = 16;
/// Rows of the barcode grid (one calibration row + four data rows).
pub const TIMECODE_ROWS: usize = 5;
/// The grid covers the top `TIMECODE_ROWS / TIMECODE_ROW_DIVISOR` of the frame height.
pub const TIMECODE_ROW_DIVISOR: usize = 15;
/// Luma of a 0 bit (video-range black).
pub const TIMECODE_BLACK: u8 = 16;
/// Luma of a 1 bit (video-range white).
pub const TIMECODE_WHITE: u8 = 235;

/// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor).
pub fn crc16_ccitt(data: &[u8]) -> u16 {
    let mut crc = 0xFFFFu16;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The 64 data bits for `ms` (48 bits of time, 16 bits of CRC), most significant first.
pub fn timecode_bits(ms: u64) -> [bool; 64] {
    let mut bytes = [0u8; 8];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    let crc = crc16_ccitt(&bytes[..6]);
    bytes[6..].copy_from_slice(&crc.to_be_bytes());
    let mut bits = [false; 64];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = bytes[i / 8] & (0x80 >> (i % 8)) != 0;
    }
    bits
}

/// Paints the barcode of `ms` into a luma plane (`stride` bytes per row) of a
/// `width`x`height` picture.
pub fn paint_timecode(luma: &mut [u8], stride: usize, width: usize, height: usize, ms: u64) {
    let bits = timecode_bits(ms);
    for row in 0..TIMECODE_ROWS {
        let (y0, y1) = (
            row * height / TIMECODE_ROW_DIVISOR,
            (row + 1) * height / TIMECODE_ROW_DIVISOR,
        );
        for col in 0..TIMECODE_COLS {
            let white = if row == 0 {
                col % 2 == 0
            } else {
                bits[(row - 1) * TIMECODE_COLS + col]
            };
            let v = if white {
                TIMECODE_WHITE
            } else {
                TIMECODE_BLACK
            };
            let (x0, x1) = (
                col * width / TIMECODE_COLS,
                (col + 1) * width / TIMECODE_COLS,
            );
            for y in y0..y1 {
                if let Some(line) = luma.get_mut(y * stride + x0..y * stride + x1) {
                    line.fill(v);
                }
            }
        }
    }
}

/// A `width`x`height` luma plane (no padding) showing the barcode of `ms` over mid grey: the
/// reference frame for checking a decoder.
pub fn timecode_reference_luma(width: usize, height: usize, ms: u64) -> Vec<u8> {
    let mut luma = vec![128u8; width * height];
    paint_timecode(&mut luma, width, width, height, ms);
    luma
}

/// Wall-clock milliseconds since the Unix epoch (the clock the browser's `Date.now()` reads).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Stamps each raw frame leaving `vcaps` (right after the live source produced it, before
/// the encoder) with the current wall-clock time.
fn install_timecode_probe(pipeline: &gst::Pipeline) -> anyhow::Result<()> {
    let pad = pipeline
        .by_name("vcaps")
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| anyhow!("no vcaps src pad"))?;
    pad.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
        let Some(info_caps) = pad
            .current_caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        if info_caps.format() != gst_video::VideoFormat::I420 {
            return gst::PadProbeReturn::Ok;
        }
        if let Some(buffer) = info.buffer_mut() {
            let ms = unix_ms();
            let (w, h) = (info_caps.width() as usize, info_caps.height() as usize);
            if let Ok(mut frame) =
                gst_video::VideoFrameRef::from_buffer_ref_writable(buffer.make_mut(), &info_caps)
            {
                let strides: Vec<usize> = gst_video::prelude::VideoFrameExt::plane_stride(&frame)
                    .iter()
                    .map(|s| (*s).max(0) as usize)
                    .collect();
                if let Ok(y) = frame.plane_data_mut(0) {
                    paint_timecode(y, strides[0], w, h, ms);
                }
                // Neutral chroma under the grid (4:2:0: half width, half height).
                let rows = (TIMECODE_ROWS * h / TIMECODE_ROW_DIVISOR).div_ceil(2);
                for plane in 1..3u32 {
                    let stride = strides[plane as usize];
                    if let Ok(data) = frame.plane_data_mut(plane) {
                        for y in 0..rows {
                            if let Some(line) = data.get_mut(y * stride..y * stride + w.div_ceil(2))
                            {
                                line.fill(128);
                            }
                        }
                    }
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A/V sync marks. The reader is tests/av_sync.rs.
//
// Both marks are computed from the raw buffers' PTS, which the live test sources take from
// the pipeline's running time (one clock for both branches): what is marked at PTS t is
// what a camera and a microphone would have captured together at t.

/// How long each beep lasts, from its whole second on.
pub const AV_MARK_BEEP: Duration = Duration::from_millis(100);
/// Luma of the flash frame (video-range white); the rest of the picture is 16 (black).
pub const AV_MARK_WHITE: u8 = 235;

/// Whether the frame at `pts_ns` is the flash: the frame whose PTS is a whole second
/// (frame index a multiple of `fps`; rounded, as videotestsrc's PTS are truncated
/// `n × 1 s / fps`).
pub fn av_mark_is_flash(pts_ns: u64, fps: u32) -> bool {
    let fps = u64::from(fps.max(1));
    let index = (u128::from(pts_ns) * u128::from(fps) + 500_000_000) / 1_000_000_000;
    index % u128::from(fps) == 0
}

/// Whether sample number `sample` (from running time 0, at `rate` Hz) is in a beep.
pub fn av_mark_is_beep(sample: u64, rate: u32) -> bool {
    let rate = u64::from(rate.max(1));
    let beep = AV_MARK_BEEP.as_nanos() as u64 * rate / 1_000_000_000;
    sample % rate < beep
}

/// Paints the flash frame white (leaves every other frame as videotestsrc made it, black),
/// on the raw frames leaving `vcaps`; silences the sine leaving `acaps` outside the beeps.
fn install_av_mark_probes(pipeline: &gst::Pipeline, fps: u32, audio: bool) -> anyhow::Result<()> {
    let vpad = pipeline
        .by_name("vcaps")
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| anyhow!("no vcaps src pad"))?;
    vpad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(vinfo) = pad
            .current_caps()
            .and_then(|c| gst_video::VideoInfo::from_caps(&c).ok())
        else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        if vinfo.format() != gst_video::VideoFormat::I420 || !av_mark_is_flash(pts.nseconds(), fps)
        {
            return gst::PadProbeReturn::Ok;
        }
        if let Ok(mut frame) =
            gst_video::VideoFrameRef::from_buffer_ref_writable(buffer.make_mut(), &vinfo)
        {
            // Padding included: the whole luma plane white; the chroma of black and white
            // alike is neutral (128), as videotestsrc already wrote it.
            if let Ok(y) = frame.plane_data_mut(0) {
                y.fill(AV_MARK_WHITE);
            }
        }
        gst::PadProbeReturn::Ok
    });
    if !audio {
        return Ok(());
    }
    let apad = pipeline
        .by_name("acaps")
        .and_then(|e| e.static_pad("src"))
        .ok_or_else(|| anyhow!("no acaps src pad"))?;
    apad.add_probe(gst::PadProbeType::BUFFER, |pad, info| {
        // acaps fixes S16LE interleaved; rate and channels as negotiated.
        let Some((rate, channels)) = pad.current_caps().and_then(|c| {
            let s = c.structure(0)?;
            Some((s.get::<i32>("rate").ok()?, s.get::<i32>("channels").ok()?))
        }) else {
            return gst::PadProbeReturn::Ok;
        };
        let (rate, frame_bytes) = (rate.max(1) as u32, 2 * channels.max(1) as usize);
        let Some(buffer) = info.buffer_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        // The buffer's first sample number, from its PTS (audiotestsrc's PTS are the
        // truncated `n × 1 s / rate`: round back to n), so each sample is judged on its own
        // and a beep starts on the exact sample of its whole second, mid-buffer or not.
        let first =
            ((u128::from(pts.nseconds()) * u128::from(rate) + 500_000_000) / 1_000_000_000) as u64;
        if let Ok(mut map) = buffer.make_mut().map_writable() {
            for (i, frame) in map.as_mut_slice().chunks_mut(frame_bytes).enumerate() {
                if !av_mark_is_beep(first + i as u64, rate) {
                    frame.fill(0);
                }
            }
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}
