//! One GStreamer pipeline per live stream, driven from async code without blocking it: its
//! lifecycle (build, play, push RTP, drain, stop) and the ladder rungs it adds once the
//! decoder has told it the source size.

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::bus::{watch_bus, watch_keyframe_requests};
use super::fragments::{ClockAnchor, connect_appsink};
use super::gaps::Gaps;
use super::graph;
use super::lipsync;
use super::mux::MuxTiming;
use super::sender_reports::align_by_sender_reports;
use super::stale::StaleFilter;
use super::{
    AUDIO_RENDITION, MediaError, MediaEvent, MediaSpec, Origin, RtpPacket, SenderReport, StateError,
};

/// Fragments and events waiting for the broadcast task. When full, the appsink's streaming
/// thread blocks (back-pressure into the pipeline) rather than dropping a fragment: losing
/// a published segment is worse than a late one. 64 covers several segments of every rung.
const EVENT_CHANNEL_CAPACITY: usize = 64;

/// How long a state change may take before the stream is declared frozen.
const STATE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the muxers get to flush their last fragment after the publisher leaves.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(4);

/// The longest [`Pipeline::finish`] takes: the drain, then the change to `Null`.
pub const FINISH_TIMEOUT: Duration = DRAIN_TIMEOUT.saturating_add(STATE_TIMEOUT);

/// A running pipeline. Dropping it without [`Pipeline::stop`] still tears it down
/// (synchronously, on whatever thread drops it), so prefer `stop`.
pub struct Pipeline {
    pipeline: gst::Pipeline,
    codec: super::VideoCodec,
    failed: bool,
    video_src: gst_app::AppSrc,
    /// The other simulcast layers' RTP inputs, each with its stale-RTP filter.
    layer_srcs: Vec<(gst_app::AppSrc, Mutex<StaleFilter>)>,
    audio_src: Option<gst_app::AppSrc>,
    /// The silence source when the publisher sends no audio.
    audio_silence: Option<gst::Element>,
    /// Sender-report inputs of the video and audio jitter buffers.
    video_rtcp: gst_app::AppSrc,
    audio_rtcp: Option<gst_app::AppSrc>,
    /// Running time 0 ([`MediaSpec::epoch`]).
    epoch: Instant,
    /// Held-back RTP that arrives too late to be live is dropped (stale.rs).
    video_stale: Mutex<StaleFilter>,
    audio_stale: Mutex<StaleFilter>,
    /// The broadcast's video silences (gaps.rs), shared with the appsink callbacks.
    gaps: Arc<Mutex<Gaps>>,
    events: mpsc::Receiver<MediaEvent>,
    bus_task: tokio::task::JoinHandle<()>,
    stopped: bool,
}

/// What the streaming threads' callbacks share with the pipeline.
pub(super) struct Shared {
    pub(super) spec: MediaSpec,
    pub(super) timing: MuxTiming,
    /// One output frame interval of the video rungs.
    pub(super) frame_interval: Option<gst::ClockTime>,
    /// The video jitter buffers' `ts-offset` in force (ns; sender_reports.rs): video running
    /// time is arrival time plus this.
    pub(super) video_offset: Arc<AtomicI64>,
    pub(super) events: mpsc::Sender<MediaEvent>,
    pub(super) anchor: OnceLock<ClockAnchor>,
    /// Video silences and the segment grid: which segments are gaps (gaps.rs).
    pub(super) gaps: Arc<Mutex<Gaps>>,
    /// Simulcast: the keyframe alignment the transcoded rungs join (align.rs).
    pub(super) align: Option<Arc<super::align::Align>>,
    rungs_built: Mutex<bool>,
}

impl Pipeline {
    /// Builds the pipeline for `spec` and sets it playing.
    pub async fn start(spec: MediaSpec) -> Result<Pipeline, MediaError> {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let graph::Graph {
            pipeline,
            ingest,
            audio,
            source,
            layers,
            align,
        } = graph::build(&spec)?;
        let frame_interval = Some(gst::ClockTime::SECOND / u64::from(spec.ladder.video.fps.max(1)));
        let timing = graph::timing(&spec);
        let new_gaps = || {
            Arc::new(Mutex::new(Gaps::new(
                timing.segment,
                timing.part.unwrap_or(timing.segment),
            )))
        };
        let shared = Arc::new(Shared {
            frame_interval,
            video_offset: Arc::new(AtomicI64::new(0)),
            gaps: new_gaps(),
            timing,
            spec,
            events: tx,
            anchor: OnceLock::new(),
            align,
            rungs_built: Mutex::new(false),
        });
        watch_keyframe_requests(&ingest.appsrc, &shared.events);
        connect_appsink(&audio.branch, AUDIO_RENDITION, Origin::Audio, &shared);
        let layer_jitters: Vec<gst::Element> =
            layers.iter().map(|(i, _)| i.jitter.clone()).collect();
        let audio_rtcp = match &audio.rtcp {
            Some((src, jitter)) => {
                align_by_sender_reports(
                    jitter,
                    &ingest.jitter,
                    &layer_jitters,
                    &shared.video_offset,
                );
                Some(src.clone())
            }
            None => None,
        };
        if let Some(branch) = &source {
            connect_appsink(
                branch,
                shared.spec.source_rendition(),
                Origin::Source,
                &shared,
            );
        }
        let layer_names = shared.spec.simulcast.iter().flat_map(|s| &s.layers);
        // A layer the publisher pauses is not marked as gaps in its own rendition: its
        // playlist goes on with repeats of its last keyframe (a still picture). Measured with
        // hls.js 1.7 playing the paused 180p layer for 8 s (tests/simulcast.rs): with that
        // time listed as EXT-X-GAP in 180p only, it stalled twice, raised fragGap and
        // switched level, 4.77 s of playback in 8 s; with the still picture, 7.91 s.
        for ((input, branch), layer) in layers.iter().zip(layer_names) {
            connect_appsink(branch, &layer.rendition, Origin::Source, &shared);
            watch_keyframe_requests(&input.appsrc, &shared.events);
        }
        if ingest.raw_tee.is_none() {
            // Nothing to plan: the rendition set is known now. The channel is new and
            // empty, so this cannot fail for want of room.
            let _ = shared
                .events
                .try_send(MediaEvent::Renditions(graph::fixed_renditions(
                    &shared.spec,
                )));
        }
        // The rungs depend on the source resolution, known only once the decoder has
        // output caps: build them from the first caps event at the tee (none to build for a
        // passthrough-only ladder, which decodes nothing).
        if let Some(raw_tee) = &ingest.raw_tee {
            let tee_sink = raw_tee
                .static_pad("sink")
                .ok_or(MediaError::Missing("the tee's sink pad"))?;
            // Simulcast: the rungs transcoded from the top layer get their keyframes where
            // the layers have theirs.
            if let (Some(align), Some(raw), Some(frame)) =
                (&shared.align, tee_sink.peer(), shared.frame_interval)
            {
                let top = ingest.decoder.as_ref().and_then(|d| d.static_pad("sink"));
                align.force_keys(&raw, top.as_ref(), Duration::from_nanos(frame.nseconds()));
            }
            let shared = Arc::clone(&shared);
            let pipeline_weak = pipeline.downgrade();
            let tee = raw_tee.clone();
            tee_sink.add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_pad, info| {
                let Some(gst::PadProbeData::Event(ev)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                let gst::EventView::Caps(c) = ev.view() else {
                    return gst::PadProbeReturn::Ok;
                };
                let Some(pipeline) = pipeline_weak.upgrade() else {
                    return gst::PadProbeReturn::Remove;
                };
                let caps = c.caps_owned();
                match build_rungs(&pipeline, &tee, &caps, &shared) {
                    Ok(true) => gst::PadProbeReturn::Ok,
                    Ok(false) => gst::PadProbeReturn::Ok,
                    Err(e) => {
                        // Through the bus, like every other fatal error: the bus watch
                        // waits for room in the channel, where a `try_send` from this
                        // streaming thread could lose the error to a full channel.
                        let msg = gst::message::Error::builder(
                            gst::CoreError::Negotiation,
                            &crate::error_chain(&e),
                        )
                        .src(&tee)
                        .build();
                        let _ = pipeline.post_message(msg);
                        gst::PadProbeReturn::Remove
                    }
                }
            });
        }

        let bus = pipeline
            .bus()
            .ok_or(MediaError::Missing("the pipeline's bus"))?;
        let bus_task = tokio::spawn(watch_bus(bus, shared.events.clone()));

        // Running time 0 is the first video packet's arrival, which is in the past by now
        // (the pipeline took a while to build): so each packet's arrival can be its
        // timestamp, even for those that queued while we were building.
        let clock = gst::SystemClock::obtain();
        pipeline.use_clock(Some(&clock));
        pipeline.set_start_time(gst::ClockTime::NONE);
        let since_epoch =
            gst::ClockTime::from_nseconds(shared.spec.epoch.elapsed().as_nanos() as u64);
        pipeline.set_base_time(clock.time().saturating_sub(since_epoch));
        let t0 = std::time::Instant::now();
        if let Err(e) = set_state(&pipeline, gst::State::Playing).await {
            // Nothing may outlive a failed start: the bus watch, or a pipeline left in a
            // state other than `Null` (dropping one there leaks its streaming threads).
            bus_task.abort();
            if let Err(e) = set_state(&pipeline, gst::State::Null).await {
                warn!(error = %crate::error_chain(&e), "pipeline that failed to start did not stop either");
            }
            return Err(e);
        }
        debug!(ms = t0.elapsed().as_millis() as u64, "pipeline playing");
        Ok(Pipeline {
            codec: shared.spec.video.codec,
            failed: false,
            pipeline,
            video_src: ingest.appsrc,
            layer_srcs: layers
                .into_iter()
                .map(|(input, _)| (input.appsrc, Mutex::new(StaleFilter::new(90_000))))
                .collect(),
            audio_src: audio.appsrc,
            audio_silence: audio.silence,
            video_rtcp: ingest.rtcp,
            audio_rtcp,
            epoch: shared.spec.epoch,
            video_stale: Mutex::new(StaleFilter::new(90_000)),
            audio_stale: Mutex::new(StaleFilter::new(48_000)),
            gaps: Arc::clone(&shared.gaps),
            events: rx,
            bus_task,
            stopped: false,
        })
    }

    /// Pushes one video RTP packet. Never blocks. Returns `Ok(false)` when the packet was
    /// dropped as malformed (the caller should request a keyframe).
    pub fn push_video(&self, packet: RtpPacket) -> Result<bool, MediaError> {
        if self.codec == super::VideoCodec::H264 && !super::rtp::h264_plausible(&packet.payload) {
            return Ok(false);
        }
        let Some(since) = packet.arrival.checked_duration_since(self.epoch) else {
            return Ok(true);
        };
        if !admit(&self.video_stale, &packet, since, "video") {
            return Ok(true);
        }
        if let Ok(mut gaps) = self.gaps.lock() {
            gaps.packet(since);
        }
        push(&self.video_src, self.epoch, packet).map(|()| true)
    }

    /// Pushes one RTP packet of simulcast layer `index` (of [`SimulcastInput::layers`](
    /// super::SimulcastInput)). Never blocks. `Ok(false)` as for [`Pipeline::push_video`].
    pub fn push_layer(&self, index: usize, packet: RtpPacket) -> Result<bool, MediaError> {
        let Some((src, stale)) = self.layer_srcs.get(index) else {
            return Ok(true);
        };
        if !super::rtp::h264_plausible(&packet.payload) {
            return Ok(false);
        }
        match packet.arrival.checked_duration_since(self.epoch) {
            Some(since) if admit(stale, &packet, since, "video layer") => {
                push(src, self.epoch, packet).map(|()| true)
            }
            _ => Ok(true),
        }
    }

    /// Pushes one Opus RTP packet; ignored if the stream has no audio input.
    pub fn push_audio(&self, packet: RtpPacket) -> Result<(), MediaError> {
        let Some(src) = &self.audio_src else {
            return Ok(());
        };
        match packet.arrival.checked_duration_since(self.epoch) {
            Some(since) if admit(&self.audio_stale, &packet, since, "audio") => {
                push(src, self.epoch, packet)
            }
            _ => Ok(()),
        }
    }

    /// Hands the publisher's sender report for its video (`video`) or audio stream to that
    /// stream's jitter buffer, which maps it onto its timeline for the A/V alignment.
    pub fn push_sender_report(&self, video: bool, sr: SenderReport) {
        let src = if video {
            Some(&self.video_rtcp)
        } else {
            self.audio_rtcp.as_ref()
        };
        if let Some(src) = src {
            let packet = lipsync::sender_report_packet(sr.ssrc, sr.ntp, sr.rtp);
            // A full queue (the jitter buffer is stuck) loses this report; the next comes
            // within seconds.
            let _ = src.push_buffer(gst::Buffer::from_slice(packet));
        }
    }

    /// The next fragment or event; `None` once the pipeline is gone.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        let ev = self.events.recv().await;
        if matches!(ev, Some(MediaEvent::Error(_))) {
            self.failed = true;
        }
        ev
    }

    /// Ends the stream: EOS so every muxer flushes its last fragment (handed to `on_event`
    /// until [`MediaEvent::Eos`]), then `Null`. Takes at most [`FINISH_TIMEOUT`].
    pub async fn finish(&mut self, mut on_event: impl FnMut(MediaEvent)) {
        if self.failed {
            // After an error the bus watch is gone and no EOS will come: do not wait for it.
            self.stop().await;
            return;
        }
        let _ = self.video_src.end_of_stream();
        for (src, _) in &self.layer_srcs {
            let _ = src.end_of_stream();
        }
        if let Some(a) = &self.audio_src {
            let _ = a.end_of_stream();
        } else {
            // The silence source is not an appsrc: end it with an EOS event.
            if let Some(src) = &self.audio_silence {
                src.send_event(gst::event::Eos::new());
            }
        }
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(MediaEvent::Eos)) | Ok(None) | Err(_) => break,
                Ok(Some(ev)) => on_event(ev),
            }
        }
        self.stop().await;
    }

    /// Stops the pipeline (state `Null`, off the async runtime).
    pub async fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // Nobody reads the events any more: close the channel first, so an appsink thread
        // blocked in `blocking_send` on a full channel returns (with an error it ignores)
        // instead of holding its streaming thread, and with it the change to `Null`.
        self.events.close();
        while self.events.try_recv().is_ok() {}
        if let Err(e) = set_state(&self.pipeline, gst::State::Null).await {
            warn!(error = %crate::error_chain(&e), "pipeline did not stop cleanly");
        }
        self.bus_task.abort();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.pipeline.set_state(gst::State::Null);
            self.bus_task.abort();
        }
    }
}

/// Whether `packet`, which arrived `since` running time 0, is live (stale.rs); logs the
/// first drop of each run of 2ⁿ.
fn admit(filter: &Mutex<StaleFilter>, packet: &RtpPacket, since: Duration, kind: &str) -> bool {
    let Ok(mut f) = filter.lock() else {
        return true;
    };
    let ok = f.admit(packet.timestamp, since);
    if !ok && f.dropped().is_power_of_two() {
        info!(
            kind,
            dropped = f.dropped(),
            "dropping RTP that arrived too late to be live"
        );
    }
    ok
}

/// Pushes a packet stamped with its arrival (running time since `epoch`): the jitter buffer
/// maps RTP time onto arrival time, so audio and video share the pipeline clock. A packet
/// that arrived before the epoch (audio before the first video packet) has no running time
/// and is dropped.
fn push(src: &gst_app::AppSrc, epoch: Instant, packet: RtpPacket) -> Result<(), MediaError> {
    let Some(since) = packet.arrival.checked_duration_since(epoch) else {
        return Ok(());
    };
    let ts = gst::ClockTime::from_nseconds(since.as_nanos() as u64);
    let mut buffer = gst::Buffer::from_slice(packet.data);
    if let Some(b) = buffer.get_mut() {
        b.set_dts(ts);
        b.set_pts(ts);
    }
    src.push_buffer(buffer)
        .map(|_| ())
        .map_err(|source| MediaError::Flow {
            element: src.name().to_string(),
            source,
        })
}

/// State changes can block (a stuck element), so they run on the blocking pool with a
/// timeout (model: livekit/egress `SetState` → `ErrPipelineFrozen`). A live pipeline's
/// sinks only complete their change once data arrives, so `Async` is success: waiting for
/// it here would hold back the very RTP that completes it.
async fn set_state(pipeline: &gst::Pipeline, state: gst::State) -> Result<(), MediaError> {
    let p = pipeline.clone();
    let job = tokio::task::spawn_blocking(move || p.set_state(state).map(|_| ()));
    let name = match state {
        gst::State::Null => "NULL",
        gst::State::Ready => "READY",
        gst::State::Paused => "PAUSED",
        gst::State::Playing => "PLAYING",
        _ => "VOID_PENDING",
    };
    let failed = |source: StateError| MediaError::State {
        state: name,
        source,
    };
    match tokio::time::timeout(STATE_TIMEOUT, job).await {
        Ok(Ok(r)) => r.map_err(|e| failed(e.into())),
        Ok(Err(join)) => Err(failed(StateError::Task(join))),
        Err(_) => Err(failed(StateError::TimedOut)),
    }
}

/// Builds the ladder once, from the first raw caps; later caps (a resolution change
/// mid-stream) go through the existing rungs, whose scalers adapt.
fn build_rungs(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    caps: &gst::Caps,
    shared: &Arc<Shared>,
) -> Result<bool, MediaError> {
    let mut built = shared
        .rungs_built
        .lock()
        .map_err(|_| MediaError::Missing("the rung lock (poisoned)"))?;
    let s = caps
        .structure(0)
        .ok_or(MediaError::Missing("a caps structure"))?;
    let (w, h) = (
        s.get::<i32>("width").unwrap_or(0),
        s.get::<i32>("height").unwrap_or(0),
    );
    if *built {
        info!(
            width = w,
            height = h,
            "source resolution changed; rungs keep their size"
        );
        return Ok(false);
    }
    let plan = shared
        .spec
        .ladder
        .plan(w.max(0) as u32, h.max(0) as u32, shared.spec.height_hint);
    info!(width = w, height = h, hint = ?shared.spec.height_hint, rungs = ?plan.iter().map(|r| format!("{}:{}x{}", r.name, r.width, r.height)).collect::<Vec<_>>(), "building ladder");
    // Runs on the tee's streaming thread, which holds the caps event: no frame reaches a
    // new branch before its appsink callback is set.
    let branches = graph::add_rungs(
        pipeline,
        tee,
        &plan,
        &shared.spec.ladder,
        shared.timing,
        shared.align.as_ref(),
    )?;
    for (rung, branch) in plan.iter().zip(&branches) {
        connect_appsink(branch, &rung.name, Origin::Rung, shared);
    }
    *built = true;
    let mut names = graph::fixed_renditions(&shared.spec);
    names.extend(plan.into_iter().map(|r| r.name));
    // On a streaming thread: waiting for room is allowed (as for fragments).
    shared
        .events
        .blocking_send(MediaEvent::Renditions(names))
        .map_err(|_| MediaError::Missing("the broadcast task"))?;
    Ok(true)
}
