//! The per-stream task: the one place where a publisher's peer, its pipeline and its HLS
//! output meet. It owns all three; others reach it only through bounded [`Command`]s.
//!
//! Whatever ends it (DELETE, socket closed, ICE failure, RTP silence, a pipeline error),
//! the same exit path runs: drain the muxers, write `EXT-X-ENDLIST`, close the peer. A
//! failure here ends this stream only.

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::StreamKey;
use crate::hls::{At, Chunk, Continuity, HlsStore, IngestSummary};
use crate::keyframes::Steering;
use crate::media::MediaError;
use crate::media::{
    AudioInput, Ladder, LayerInput, MediaEvent, MediaSpec, Pipeline, RtpPacket, SimulcastInput,
    VideoCodec, VideoInput, h264_keyframe_start, h264_sps_size,
};
use crate::output::{BroadcastOutputs, Outputs};
use crate::peer::{
    Candidate, IncomingTrack, KeyframeRequester, PeerError, PeerEvent, PeerSession, TrackKind,
};
use crate::simulcast::Layers;

/// Now, as the HLS store takes time (`hls::At`): the store never reads a clock, its
/// writers do — the broadcast task for what it publishes, the ingest registry for a
/// broadcast's start and for the end of one that panicked.
pub(crate) fn now() -> At {
    At {
        instant: Instant::now(),
        wall: SystemTime::now(),
    }
}

/// How long closing the peer (DTLS close alert, ICE agent) may take.
const PEER_CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest a broadcast's exit path takes once asked to stop: the pipeline's drain and
/// stop, the store's ENDLIST and the outputs' last objects (queued, never awaited), the
/// peer's close, plus one second for the task to see the command.
pub const STOP_TIMEOUT: Duration = crate::media::FINISH_TIMEOUT
    .saturating_add(PEER_CLOSE_TIMEOUT)
    .saturating_add(Duration::from_secs(1));

/// Until the first segment, ask for a keyframe this often (the decoder cannot start
/// without one, and a publisher may have sent its only IDR before we were listening).
const STARTUP_PLI_INTERVAL: Duration = Duration::from_secs(1);

/// Why a broadcast ended (logged, and sent to a WebSocket publisher as `ended`).
#[derive(Debug, thiserror::Error)]
pub enum EndReason {
    /// The publisher asked (WHIP DELETE, WebSocket `stop` or close) or the server shuts down.
    #[error("unpublished")]
    Unpublished,
    /// The ingest registry dropped the session's command channel.
    #[error("ingest gone")]
    IngestGone,
    /// The peer connection failed or closed.
    #[error("peer {0}")]
    PeerClosed(String),
    /// The peer's event channel closed.
    #[error("peer gone")]
    PeerGone,
    /// The publisher's video track ended.
    #[error("video track ended")]
    VideoEnded,
    /// No video track started within `ice.connect_timeout`.
    #[error("no video within {0:?}")]
    NoVideo(Duration),
    /// No video RTP for `ice.media_timeout`.
    #[error("no video RTP for {0:?}")]
    MediaTimeout(Duration),
    /// The pipeline produced no segment for this long.
    #[error("pipeline stalled: no segment for {0:?}")]
    Stalled(Duration),
    /// The pipeline ended by itself.
    #[error("pipeline ended")]
    PipelineEnded,
    /// The pipeline failed (to start, or while running).
    #[error("pipeline failed")]
    Media(#[from] MediaError),
    /// Media arrived, but the stream name could not be claimed: another session of the
    /// same name went live first, the server reached `server.max_streams`, or it is
    /// shutting down.
    #[error("not published: {0}")]
    NotClaimed(String),
    /// Another node of the cluster holds the stream name now (this node's claim expired
    /// or Redis lost it, and the other's fencing token is higher).
    #[error("the cluster gave the stream name to another node")]
    ClaimLost,
    /// The broadcast task panicked (a bug); its name was released and ENDLIST written.
    #[error("broadcast task failed: {0}")]
    Panicked(String),
}

/// Requests to a broadcast task.
#[derive(Debug)]
pub enum Command {
    /// End the broadcast; reply when ENDLIST is written.
    Stop(oneshot::Sender<()>),
    /// Add a trickled remote candidate.
    AddCandidate(Candidate, oneshot::Sender<Result<(), PeerError>>),
    /// The cluster gave the stream name to another node: end here.
    ClaimLost,
}

/// Everything a broadcast owns.
pub struct BroadcastParams {
    /// Stream name.
    pub stream: StreamKey,
    /// The connected (or connecting) peer.
    pub peer: PeerSession,
    /// Its events.
    pub events: mpsc::Receiver<PeerEvent>,
    /// Commands from the HTTP side.
    pub commands: mpsc::Receiver<Command>,
    /// Opus payload type from the offer; `None` means the publisher sends no audio.
    pub audio_payload_type: Option<u8>,
    /// The video's simulcast layers (`rid`s, RFC 8853) the offer named; empty without
    /// simulcast.
    pub simulcast: Vec<String>,
    /// Ladder in force.
    pub ladder: Ladder,
    /// The capture height the publisher declared, if any (plans the ladder).
    pub height_hint: Option<u32>,
    /// Where segments go.
    pub store: HlsStore,
    /// Time allowed to connect and deliver video.
    pub connect_timeout: Duration,
    /// Video RTP silence that ends the stream.
    pub media_timeout: Duration,
    /// Server candidates for a WebSocket client.
    pub candidates: Option<mpsc::Sender<Candidate>>,
    /// Claims the stream name; taken and called once, when the first video arrives.
    pub claim: Option<Claim>,
    /// How the publisher came in (`/api/streams`).
    pub ingest: IngestSummary,
    /// Where the recording / object-storage outputs of the broadcast start once claimed.
    pub outputs: Outputs,
    /// The publisher asked for a recording (`?record=1`).
    pub record: bool,
}

/// Claims the stream name for this session, or says why not. Claimed, it may say where
/// the stream's numbering stood on another node of the cluster, to continue it.
pub type Claim = Box<dyn FnOnce() -> ClaimFuture + Send + Sync>;

/// What [`Claim`] returns.
pub type ClaimFuture =
    std::pin::Pin<Box<dyn Future<Output = Result<Option<Continuity>, String>> + Send>>;

/// Runs a broadcast to its end; returns why it ended.
pub async fn run(mut p: BroadcastParams) -> EndReason {
    let started = Instant::now();
    let mut video: Option<IncomingTrack> = None;
    let mut audio: Option<IncomingTrack> = None;
    let mut pipeline: Option<Pipeline> = None;
    // Every video layer's PLI sender: a keyframe is asked of all layers at once, so their
    // keyframes, and with them their segments, stay aligned.
    let mut pli = Plis::default();
    // Simulcast: the layers until they are planned (simulcast.rs), then the layers besides
    // the top one (`video`). Each layer, the top one too, starts at its first keyframe
    // after `gate` (the plan, when every layer was asked for one): the same picture.
    let mut waiting: Option<Layers> = None;
    let mut pending: Vec<IncomingTrack> = Vec::new();
    let mut layers: Vec<LiveLayer> = Vec::new();
    let mut gate: Option<Instant> = None;
    let mut top_started = false;
    let (mut turn_pending, mut turn_layers) = (0usize, 0usize);
    let mut stop_reply: Option<oneshot::Sender<()>> = None;
    let mut last_video = Instant::now();
    let mut segments_out = 0u64;
    let mut malformed = 0u64;
    let mut last_fragment = Instant::now();
    // H.264 keyframes are tracked for the GOP metric; with the passthrough rung on, their
    // cadence is also steered (PLI per segment, see keyframes.rs).
    let mut keyframes: Option<(Steering, bool)> = None;
    let mut last_key_ts: Option<u32> = None;
    // A pipeline that takes RTP but emits nothing is stuck (a muxer refusing input can
    // stall every branch without an error): end the stream rather than hang it.
    let stall_limit = p.store.config().segment_duration * 5 + Duration::from_secs(5);
    // The session holds its name, and the store and outputs know it, from its first video.
    let mut claim = p.claim.take();
    let mut outputs: Option<BroadcastOutputs> = None;
    let mut tick = tokio::time::interval(STARTUP_PLI_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    let reason: EndReason = loop {
        tokio::select! {
            cmd = p.commands.recv() => match cmd {
                Some(Command::Stop(reply)) => {
                    stop_reply = Some(reply);
                    break EndReason::Unpublished;
                }
                Some(Command::AddCandidate(c, reply)) => {
                    let _ = reply.send(p.peer.add_candidate(c).await);
                }
                Some(Command::ClaimLost) => break EndReason::ClaimLost,
                None => break EndReason::IngestGone,
            },
            ev = p.events.recv() => match ev {
                Some(PeerEvent::Connected) => info!(after_ms = started.elapsed().as_millis() as u64, "publisher connected"),
                Some(PeerEvent::Closed(why)) => break EndReason::PeerClosed(why),
                Some(PeerEvent::SenderReport(sr)) => {
                    let is = |t: &Option<IncomingTrack>| t.as_ref().is_some_and(|t| t.ssrc == sr.ssrc);
                    if let Some(pl) = &pipeline
                        && (is(&video) || is(&audio))
                    {
                        pl.push_sender_report(is(&video), sr);
                    }
                }
                Some(PeerEvent::LocalCandidate(c)) => {
                    if let Some(tx) = &p.candidates {
                        let _ = tx.try_send(c);
                    }
                }
                Some(PeerEvent::Track(t)) => match t.kind {
                    TrackKind::Video(codec) if video.is_none() => {
                        // The name is claimed, and the store and outputs started, once: on
                        // the first video (the first simulcast layer to come).
                        if let Some(claim) = claim.take() {
                            let elsewhere = match claim().await {
                                Ok(e) => e,
                                Err(why) => break EndReason::NotClaimed(why),
                            };
                            let epoch = p.store.begin_after(p.stream.as_str(), p.ingest.clone(), now(), elsewhere);
                            tracing::Span::current().record("epoch", epoch.as_str());
                            outputs = Some(p.outputs.start(
                                &p.stream,
                                &epoch,
                                p.store.discontinuity_sequence(p.stream.as_str()),
                                p.record,
                            ));
                        }
                        last_video = Instant::now();
                        // A simulcast layer waits for the plan (simulcast.rs).
                        if let Some(rid) = t.rid.clone().filter(|_| !p.simulcast.is_empty()) {
                            let layers = waiting.get_or_insert_with(|| Layers::new(&p.simulcast, codec == VideoCodec::H264));
                            if !layers.offered(&rid) {
                                warn!(rid, "ignoring a simulcast layer the offer did not name");
                                continue;
                            }
                            // No keyframe request of its own: a layer starts with a keyframe
                            // (its SPS says its size), and one asked of this layer alone
                            // would make the publisher drop the request asked of every
                            // layer at the plan (Chromium: one per 300 ms per layer).
                            info!(rid, ssrc = t.ssrc, "simulcast layer arrived");
                            pending.push(t);
                            continue;
                        }
                        match start_pipeline(&p, &t, codec, None, t.first_arrival).await {
                            Ok((pl, k)) => (pipeline, keyframes) = (Some(pl), k),
                            Err(e) => break e,
                        }
                        pli = Plis(t.keyframes.iter().cloned().collect());
                        last_fragment = Instant::now();
                        pli.request();
                        video = Some(t);
                    }
                    TrackKind::Audio if audio.is_none() => audio = Some(t),
                    _ => warn!("ignoring an extra track"),
                },
                None => break EndReason::PeerGone,
            },
            pkt = recv(&mut video) => match pkt {
                Some(pkt) => {
                    last_video = Instant::now();
                    if !top_started && let Some(g) = gate {
                        if pkt.arrival < g || !h264_keyframe_start(&pkt.payload) {
                            continue;
                        }
                        top_started = true;
                    }
                    if let Some((steering, _)) = keyframes.as_mut() {
                        steering.on_media(last_video);
                    }
                    if let Some((steering, _)) = keyframes.as_mut()
                        && h264_keyframe_start(&pkt.payload)
                    {
                        // One call per frame: packets of one frame share the RTP timestamp.
                        let ts = Some(pkt.timestamp);
                        if ts != last_key_ts {
                            last_key_ts = ts;
                            steering.on_keyframe(last_video);
                            p.store.set_keyframes(p.stream.as_str(), steering.stats());
                        }
                    }
                    match pipeline.as_ref().map(|pl| pl.push_video(pkt)) {
                        Some(Err(e)) => break e.into(),
                        Some(Ok(false)) => {
                            malformed += 1;
                            if malformed.is_power_of_two() {
                                warn!(malformed, "dropping malformed video RTP");
                            }
                            pli.request();
                        }
                        _ => {}
                    }
                }
                None => break EndReason::VideoEnded,
            },
            (i, pkt) = recv_any(&mut pending, &mut turn_pending, |t| &mut t.packets) => match pkt {
                Some(pkt) => {
                    let at = Instant::now();
                    last_video = at;
                    if let (Some(w), Some(rid)) = (waiting.as_mut(), pending[i].rid.as_deref()) {
                        let h264 = pending[i].kind == TrackKind::Video(VideoCodec::H264);
                        let size = if h264 { h264_sps_size(&pkt.payload) } else { None };
                        w.on_packet(rid, pkt.payload.len(), size, at);
                    }
                    if waiting.as_ref().is_some_and(|w| w.ready(at)) {
                        match start_simulcast(&p, waiting.take(), &mut pending).await {
                            Ok(Some(started)) => {
                                pipeline = Some(started.pipeline);
                                keyframes = started.keyframes;
                                pli = Plis(std::iter::once(&started.top).chain(&started.layers).filter_map(|t| t.keyframes.clone()).collect());
                                if started.aligned {
                                    gate = Some(at);
                                }
                                layers = started.layers.into_iter().enumerate().map(|(index, track)| LiveLayer { index, track, started: false }).collect();
                                video = Some(started.top);
                                last_fragment = Instant::now();
                                pli.request();
                            }
                            Ok(None) => {}
                            Err(e) => break e,
                        }
                    }
                }
                None => {
                    debug!(rid = pending[i].rid.as_deref().unwrap_or(""), "simulcast layer ended before the plan");
                    pending.remove(i);
                }
            },
            (i, pkt) = recv_any(&mut layers, &mut turn_layers, |l| &mut l.track.packets) => match pkt {
                Some(pkt) => {
                    let layer = &mut layers[i];
                    if !layer.started {
                        if gate.is_none_or(|g| pkt.arrival < g) || !h264_keyframe_start(&pkt.payload) {
                            continue;
                        }
                        layer.started = true;
                    }
                    match pipeline.as_ref().map(|pl| pl.push_layer(layer.index, pkt)) {
                        Some(Err(e)) => break e.into(),
                        Some(Ok(false)) => pli.request(),
                        _ => {}
                    }
                }
                None => {
                    info!(rid = layers[i].track.rid.as_deref().unwrap_or(""), "simulcast layer ended");
                    layers.remove(i);
                }
            },
            pkt = recv(&mut audio) => match pkt {
                // Audio before the pipeline exists is dropped: its arrival timestamps
                // would be stale by the time it could be pushed.
                Some(pkt) => {
                    if let Some(Err(e)) = pipeline.as_ref().map(|pl| pl.push_audio(pkt)) {
                        break e.into();
                    }
                }
                None => audio = None,
            },
            ev = next_media(&mut pipeline) => match ev {
                Some(MediaEvent::Error(e)) => break e.into(),
                Some(MediaEvent::Eos) | None => break EndReason::PipelineEnded,
                Some(MediaEvent::KeyframeRequest) => {
                    debug!("pipeline asked for a keyframe");
                    pli.request();
                }
                Some(ev) => {
                    let n = store_event(&p.store, &p.stream, &mut outputs, ev);
                    if n > 0 {
                        segments_out += n;
                        last_fragment = Instant::now();
                    }
                }
            },
            _ = wake(keyframes.as_ref()) => {
                if let Some((steering, true)) = keyframes.as_mut()
                    && steering.poll(Instant::now())
                {
                    debug!("keyframe requested on the segment cadence");
                    pli.request();
                }
                if let Some((steering, _)) = &keyframes {
                    p.store.set_keyframes(p.stream.as_str(), steering.stats());
                }
            }
            _ = tick.tick() => {
                // Simulcast layers waiting for their plan are video (simulcast.rs bounds
                // the wait).
                if pipeline.is_none() && pending.is_empty() && started.elapsed() > p.connect_timeout {
                    break EndReason::NoVideo(p.connect_timeout);
                }
                // Layers waiting for the plan are asked for keyframes too: their SPS
                // says their size.
                for t in &pending {
                    if let Some(k) = &t.keyframes {
                        k.request();
                    }
                }
                if pipeline.is_some() && last_video.elapsed() > p.media_timeout {
                    break EndReason::MediaTimeout(p.media_timeout);
                }
                if pipeline.is_some() && last_fragment.elapsed() > stall_limit {
                    break EndReason::Stalled(stall_limit);
                }
                if segments_out == 0 {
                    pli.request();
                }
            }
        }
    };

    // One exit path: flush what the muxers hold, then ENDLIST, then close the peer.
    if let Some(mut pl) = pipeline.take() {
        let store = p.store.clone();
        let stream = p.stream.clone();
        let outputs = &mut outputs;
        pl.finish(|ev| {
            store_event(&store, &stream, outputs, ev);
        })
        .await;
    }
    // A session that never claimed its name leaves the store alone: the name may be
    // another session's.
    if let Some(mut o) = outputs {
        p.store.end(p.stream.as_str(), now());
        o.end();
    }
    if tokio::time::timeout(PEER_CLOSE_TIMEOUT, p.peer.close())
        .await
        .is_err()
    {
        warn!("peer did not close in time");
    }
    if let Some(r) = stop_reply {
        let _ = r.send(());
    }
    reason
}

/// Publishes an init segment or fragment (to the store, then to the outputs); returns 1 for
/// a video fragment.
fn store_event(
    store: &HlsStore,
    stream: &StreamKey,
    outputs: &mut Option<BroadcastOutputs>,
    ev: MediaEvent,
) -> u64 {
    let Some(outputs) = outputs.as_mut() else {
        return 0;
    };
    match ev {
        MediaEvent::Init { info, data } => {
            outputs.init(&info, &data);
            if let Err(e) = store.init(stream.as_str(), info, data, now()) {
                warn!(error = %e, "init segment not stored");
            }
            0
        }
        MediaEvent::Renditions(names) => {
            outputs.expect(&names);
            store.expect(stream.as_str(), names);
            0
        }
        MediaEvent::Alignment(report) => {
            // align.rs logs each event as it happens; this is the running count.
            debug!(?report, "simulcast alignment trouble so far");
            store.set_simulcast_alignment(stream.as_str(), report);
            0
        }
        MediaEvent::Fragment {
            rendition,
            origin,
            duration,
            wallclock,
            gap,
            starts_segment,
            next_starts_segment,
            segment,
            lag,
            data,
            ..
        } => {
            let chunk = Chunk {
                starts_segment,
                next_starts_segment,
                segment,
                duration,
                wallclock,
                gap,
                lag,
                data: data.clone(),
            };
            match store.publish(stream.as_str(), &rendition, chunk, now()) {
                Ok(seq) => {
                    outputs.chunk(&rendition, seq, starts_segment, duration, wallclock, &data);
                    debug!(%rendition, seq, ms = duration.as_millis() as u64, starts_segment, "published");
                    u64::from(origin.is_video())
                }
                Err(e) => {
                    warn!(error = %e, "fragment not stored");
                    0
                }
            }
        }
        _ => 0,
    }
}

/// The PLI senders of every video layer: a keyframe request goes to all of them.
#[derive(Debug, Default)]
struct Plis(Vec<KeyframeRequester>);

impl Plis {
    fn request(&self) {
        for k in &self.0 {
            k.request();
        }
    }
}

/// A simulcast layer besides the top one, once planned.
struct LiveLayer {
    /// Its number for [`Pipeline::push_layer`].
    index: usize,
    track: IncomingTrack,
    /// Whether its first keyframe after the plan came (nothing is pushed before).
    started: bool,
}

/// What [`start_simulcast`] started.
struct SimulcastStart {
    pipeline: Pipeline,
    keyframes: Option<(Steering, bool)>,
    /// The top layer.
    top: IncomingTrack,
    /// The other layers, in [`SimulcastInput::layers`] order.
    layers: Vec<IncomingTrack>,
    /// Whether the layers are renditions (H.264) whose starts must be aligned.
    aligned: bool,
}

/// Builds and starts the pipeline for video track `t` (for simulcast, the top layer; the
/// others are `simulcast`'s), running time 0 at `epoch`; with the keyframe steering for
/// H.264.
async fn start_pipeline(
    p: &BroadcastParams,
    t: &IncomingTrack,
    codec: VideoCodec,
    simulcast: Option<SimulcastInput>,
    epoch: Instant,
) -> Result<(Pipeline, Option<(Steering, bool)>), EndReason> {
    let mut ladder = p.ladder.clone();
    let mut height_hint = p.height_hint;
    if let Some(s) = &simulcast {
        // The layers are the ladder, the top one as its passthrough rung, and only the
        // rungs no layer covers are transcoded, from the top layer (simulcast.rs
        // `uncovered`): planned for their own heights, none of which is above the top
        // layer's.
        ladder.source.enabled = true;
        ladder.rungs = s.transcoded.clone();
        height_hint = s.transcoded.iter().map(|r| r.height).max().or(height_hint);
    }
    let spec = MediaSpec {
        stream: p.stream.to_string(),
        epoch,
        video: VideoInput {
            codec,
            payload_type: t.payload_type,
        },
        audio: p
            .audio_payload_type
            .map(|payload_type| AudioInput { payload_type }),
        ladder: ladder.clone(),
        height_hint,
        segment_duration: p.store.config().segment_duration,
        part_duration: p.store.ll().map(|ll| ll.part_duration),
        simulcast,
    };
    let pipeline = Pipeline::start(spec).await?;
    // H.264 keyframes are tracked for the GOP metric; with the passthrough rung on, their
    // cadence is also steered (PLI per segment, see keyframes.rs).
    let keyframes = (codec == VideoCodec::H264).then(|| {
        let mut steering = Steering::new(p.store.config().segment_duration, ladder.video.fps);
        // LL-HLS: the source rung's first segment is one part (media/mux.rs).
        if let Some(ll) = p.store.ll() {
            steering = steering.with_first_segment(ll.part_duration);
        }
        (steering, ladder.source.enabled)
    });
    Ok((pipeline, keyframes))
}

/// Plans the simulcast layers seen (`waiting`, simulcast.rs) and starts the pipeline: the
/// top layer as its video, the other planned H.264 layers as renditions of their own. The
/// layers left out are dropped from `pending` (their queues close). `Ok(None)`: nothing to
/// plan yet.
async fn start_simulcast(
    p: &BroadcastParams,
    waiting: Option<Layers>,
    pending: &mut Vec<IncomingTrack>,
) -> Result<Option<SimulcastStart>, EndReason> {
    let Some(plan) = waiting.as_ref().and_then(Layers::plan) else {
        return Ok(None);
    };
    let mut planned = Vec::new();
    for layer in &plan.layers {
        if let Some(i) = pending
            .iter()
            .position(|t| t.rid.as_deref() == Some(layer.rid.as_str()))
        {
            planned.push((layer.clone(), pending.swap_remove(i)));
        }
    }
    pending.clear();
    let mut planned = planned.into_iter();
    let Some((top_plan, top)) = planned.next() else {
        return Ok(None);
    };
    let TrackKind::Video(codec) = top.kind else {
        return Ok(None);
    };
    let (inputs, layers): (Vec<LayerInput>, Vec<IncomingTrack>) = planned
        .map(|(l, t)| {
            (
                LayerInput {
                    rendition: l.rendition,
                    payload_type: t.payload_type,
                },
                t,
            )
        })
        .unzip();
    let aligned = codec == VideoCodec::H264;
    let mut plan = plan;
    // VP8/VP9: the top layer is decoded and the whole ladder transcoded, as without
    // simulcast.
    let transcoded = if aligned {
        crate::simulcast::uncovered(&p.ladder.rungs, &plan)
    } else {
        Vec::new()
    };
    plan.transcoded = transcoded.iter().map(|r| r.name.clone()).collect();
    info!(
        top = top_plan.rid,
        layers = ?plan.layers.iter().map(|l| format!("{}:{}", l.rid, l.rendition)).collect::<Vec<_>>(),
        left_out = ?plan.left_out,
        transcoded = ?plan.transcoded,
        "simulcast planned"
    );
    p.store.set_simulcast(p.stream.as_str(), plan);
    let simulcast = aligned.then(|| SimulcastInput {
        top: top_plan.rendition.clone(),
        layers: inputs,
        transcoded,
    });
    let (pipeline, keyframes) = start_pipeline(p, &top, codec, simulcast, Instant::now()).await?;
    Ok(Some(SimulcastStart {
        pipeline,
        keyframes,
        top,
        layers: if aligned { layers } else { Vec::new() },
        aligned,
    }))
}

/// The next packet of any of `items` (their queues, by `rx`), taking turns so that no
/// layer starves the others; with the item's index. Pending forever when there are none.
async fn recv_any<T>(
    items: &mut [T],
    turn: &mut usize,
    rx: impl Fn(&mut T) -> &mut mpsc::Receiver<RtpPacket>,
) -> (usize, Option<RtpPacket>) {
    if items.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        let n = items.len();
        for k in 0..n {
            let i = (*turn + k) % n;
            if let std::task::Poll::Ready(pkt) = rx(&mut items[i]).poll_recv(cx) {
                *turn = i + 1;
                return std::task::Poll::Ready((i, pkt));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

async fn recv(track: &mut Option<IncomingTrack>) -> Option<RtpPacket> {
    match track {
        Some(t) => t.packets.recv().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until the steering has something to do (forever when not steering).
async fn wake(k: Option<&(Steering, bool)>) {
    match k.and_then(|(s, steer)| steer.then(|| s.next_wake()).flatten()) {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn next_media(p: &mut Option<Pipeline>) -> Option<MediaEvent> {
    match p {
        Some(p) => p.next_event().await,
        None => std::future::pending().await,
    }
}
