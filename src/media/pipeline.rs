//! One GStreamer pipeline per live stream, driven from async code without blocking it.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::audio_cut::AudioCutter;
use super::bins::{self, Branch, MuxTiming};
use super::lipsync::{self, Change, LipSync, Track};
use super::{
    AUDIO_RENDITION, MediaError, MediaEvent, MediaSpec, Origin, RenditionInfo, RenditionKind,
    RtpPacket, SOURCE_RENDITION, SenderReport, StateError,
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
    audio_src: Option<gst_app::AppSrc>,
    /// The silence source when the publisher sends no audio.
    audio_silence: Option<gst::Element>,
    /// Sender-report inputs of the video and audio jitter buffers.
    video_rtcp: gst_app::AppSrc,
    audio_rtcp: Option<gst_app::AppSrc>,
    /// Running time 0 ([`MediaSpec::epoch`]).
    epoch: Instant,
    events: mpsc::Receiver<MediaEvent>,
    bus_task: tokio::task::JoinHandle<()>,
    stopped: bool,
}

/// Maps running time to wall-clock time once per pipeline, so `EXT-X-PROGRAM-DATE-TIME` is
/// consistent across renditions (HLS2 §6.2.4).
#[derive(Clone, Copy)]
struct ClockAnchor {
    running: gst::ClockTime,
    wallclock: SystemTime,
}

struct Shared {
    spec: MediaSpec,
    timing: MuxTiming,
    /// One output frame interval of the video rungs.
    frame_interval: Option<gst::ClockTime>,
    events: mpsc::Sender<MediaEvent>,
    anchor: OnceLock<ClockAnchor>,
    rungs_built: Mutex<bool>,
}

impl Pipeline {
    /// Builds the pipeline for `spec` and sets it playing.
    pub async fn start(spec: MediaSpec) -> Result<Pipeline, MediaError> {
        let (tx, rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
        let timing = MuxTiming {
            segment: spec.segment_duration,
            part: spec.part_duration,
        };
        let frame_interval = Some(gst::ClockTime::SECOND / u64::from(spec.ladder.video.fps.max(1)));
        let shared = Arc::new(Shared {
            frame_interval,
            timing,
            spec,
            events: tx,
            anchor: OnceLock::new(),
            rungs_built: Mutex::new(false),
        });
        let pipeline = gst::Pipeline::with_name(&format!("stream-{}", shared.spec.stream));
        let ingest = bins::video_ingest(&pipeline, shared.spec.video, &shared.spec.ladder)?;
        watch_keyframe_requests(&ingest.appsrc, &shared.events);

        let audio = bins::audio(
            &pipeline,
            shared.spec.audio.map(|a| a.payload_type),
            &shared.spec.ladder,
            shared.timing,
        )?;
        connect_appsink(&audio.branch, AUDIO_RENDITION, Origin::Audio, &shared);
        let audio_rtcp = match &audio.rtcp {
            Some((src, jitter)) => {
                align_by_sender_reports(jitter, &ingest.jitter);
                Some(src.clone())
            }
            None => None,
        };

        if let Some(h264_tee) = &ingest.h264_tee {
            let branch = bins::source_rung(&pipeline, h264_tee, shared.timing)?;
            connect_appsink(&branch, SOURCE_RENDITION, Origin::Source, &shared);
        }
        if ingest.raw_tee.is_none() {
            // Nothing to plan: the rendition set is known now. The channel is new and
            // empty, so this cannot fail for want of room.
            let _ = shared
                .events
                .try_send(MediaEvent::Renditions(fixed_renditions(&shared.spec)));
        }

        // The rungs depend on the source resolution, known only once the decoder has
        // output caps: build them from the first caps event at the tee (none to build for a
        // passthrough-only ladder, which decodes nothing).
        if let Some(raw_tee) = &ingest.raw_tee {
            let tee_sink = raw_tee
                .static_pad("sink")
                .ok_or(MediaError::Missing("the tee's sink pad"))?;
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
            audio_src: audio.appsrc,
            audio_silence: audio.silence,
            video_rtcp: ingest.rtcp,
            audio_rtcp,
            epoch: shared.spec.epoch,
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
        push(&self.video_src, self.epoch, packet).map(|()| true)
    }

    /// Pushes one Opus RTP packet; ignored if the stream has no audio input.
    pub fn push_audio(&self, packet: RtpPacket) -> Result<(), MediaError> {
        match &self.audio_src {
            Some(src) => push(src, self.epoch, packet),
            None => Ok(()),
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

/// Aligns audio and video by the publisher's clock (lipsync.rs): each jitter buffer
/// answers a sender report with `handle-sync`, which says what running time it gives the
/// report's RTP timestamp; the stream that plays early gets a `ts-offset`.
fn align_by_sender_reports(audio: &gst::Element, video: &gst::Element) {
    let state = Arc::new(Mutex::new(LipSync::default()));
    let jitters = [audio.downgrade(), video.downgrade()];
    for (track, jitter) in [(Track::Audio, audio), (Track::Video, video)] {
        let state = Arc::clone(&state);
        let jitters = jitters.clone();
        jitter.connect("handle-sync", false, move |values| {
            let s = values.get(1)?.get::<gst::Structure>().ok()?;
            let (running, sender) = report_times(&s)?;
            let change = state.lock().ok()?.on_report(track, running, sender);
            match change {
                Some(Change::Offsets(offsets)) => {
                    info!(
                        audio_ms = offsets[0] / 1_000_000,
                        video_ms = offsets[1] / 1_000_000,
                        "aligning audio and video by the publisher's sender reports"
                    );
                    for (jitter, offset) in jitters.iter().zip(offsets) {
                        if let Some(j) = jitter.upgrade() {
                            j.set_property("ts-offset", offset);
                        }
                    }
                }
                Some(Change::Implausible(delta)) => {
                    warn!(
                        apart_ms = (delta / 1_000_000) as i64,
                        "sender reports put audio and video implausibly far apart; not aligned"
                    );
                }
                None => {}
            }
            None
        });
    }
}

/// From a jitter buffer's `handle-sync` structure: the running time (ns, before its
/// `ts-offset`) of the report's RTP timestamp, and the sender's clock at it (ns).
fn report_times(s: &gst::StructureRef) -> Option<(i128, i128)> {
    // u64::MAX is GST_CLOCK_TIME_NONE / "no base yet" (seen: a `base-time` of NONE before
    // the jitter buffer has timed its first packet).
    let base_rtp = s
        .get::<u64>("base-rtptime")
        .ok()
        .filter(|t| *t != u64::MAX)?;
    // The jitter buffer reports its base time plus its (signed) skew estimate as a u64: with
    // a base near running time 0 (ours: the first video packet) and a negative skew it wraps
    // around (seen: 2^64 − a few ms). Read it as the signed value it is.
    let base_time = s.get::<u64>("base-time").ok().filter(|t| *t != u64::MAX)? as i64;
    let rate = s.get::<u32>("clock-rate").ok().filter(|r| *r > 0)?;
    // u64::MAX: the jitter buffer found the report's RTP time implausible.
    let sr_rtp = s
        .get::<u64>("sr-ext-rtptime")
        .ok()
        .filter(|t| *t != u64::MAX)?;
    let buffer = s.get::<gst::Buffer>("sr-buffer").ok()?;
    let map = buffer.map_readable().ok()?;
    let ntp = lipsync::sender_report_ntp(map.as_slice())?;
    let since_base = (i128::from(sr_rtp) - i128::from(base_rtp)) * 1_000_000_000 / i128::from(rate);
    Some((i128::from(base_time) + since_base, lipsync::ntp_to_ns(ntp)))
}

/// Every bus `Error` is fatal to this stream; warnings are logged; EOS ends the drain.
async fn watch_bus(bus: gst::Bus, events: mpsc::Sender<MediaEvent>) {
    let mut stream = bus.stream();
    while let Some(msg) = stream.next().await {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let element = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_else(|| "<unknown>".into());
                let e = MediaError::Element {
                    element,
                    message: err.error().to_string(),
                    debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
                };
                let _ = events.send(MediaEvent::Error(e)).await;
                return;
            }
            gst::MessageView::Warning(w) => {
                let element = msg.src().map(|s| s.path_string().to_string());
                warn!(element, warning = %w.error(), "pipeline warning");
            }
            gst::MessageView::Eos(_) => {
                let _ = events.send(MediaEvent::Eos).await;
                return;
            }
            _ => {}
        }
    }
}

/// Upstream force-key-unit events (from the depayloader on loss, the decoder on corrupt
/// input) reaching the appsrc become [`MediaEvent::KeyframeRequest`] → RTCP PLI.
fn watch_keyframe_requests(appsrc: &gst_app::AppSrc, events: &mpsc::Sender<MediaEvent>) {
    let Some(pad) = appsrc.static_pad("src") else {
        return;
    };
    let events = events.clone();
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_pad, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data
            && ev
                .structure()
                .is_some_and(|s| s.name() == "GstForceKeyUnit")
        {
            // Dropping a request when the channel is full is fine: one is pending.
            let _ = events.try_send(MediaEvent::KeyframeRequest);
        }
        gst::PadProbeReturn::Ok
    });
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
    for rung in &plan {
        let branch = bins::video_rung(pipeline, tee, rung, &shared.spec.ladder, shared.timing)?;
        connect_appsink(&branch, &rung.name, Origin::Rung, shared);
    }
    *built = true;
    let mut names = fixed_renditions(&shared.spec);
    names.extend(plan.into_iter().map(|r| r.name));
    // On a streaming thread: waiting for room is allowed (as for fragments).
    shared
        .events
        .blocking_send(MediaEvent::Renditions(names))
        .map_err(|_| MediaError::Missing("the broadcast task"))?;
    Ok(true)
}

/// The renditions that do not depend on the source size: audio, and the passthrough rung
/// for H.264 when it is on.
fn fixed_renditions(spec: &MediaSpec) -> Vec<String> {
    let mut names = vec![AUDIO_RENDITION.to_string()];
    if spec.video.codec == super::VideoCodec::H264 && spec.ladder.source.enabled {
        names.push(SOURCE_RENDITION.to_string());
    }
    names
}

fn rendition_info(name: &str, caps: &gst::Caps, shared: &Shared) -> RenditionInfo {
    // RFC 6381 hex digits are case-insensitive; lower case matches Apple's examples.
    let codecs = gstreamer_pbutils::codec_utils_caps_get_mime_codec(caps)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    let s = caps.structure(0);
    let is_audio = s.is_some_and(|s| s.name().starts_with("audio/"));
    let ladder = &shared.spec.ladder;
    if is_audio {
        return RenditionInfo {
            name: name.to_string(),
            kind: RenditionKind::Audio {
                channels: s.and_then(|s| s.get::<i32>("channels").ok()).unwrap_or(2) as u32,
                rate: s.and_then(|s| s.get::<i32>("rate").ok()).unwrap_or(48_000) as u32,
                language: ladder.audio.language.clone(),
            },
            codecs,
            bitrate: u64::from(ladder.audio.bitrate_kbps) * 1000,
        };
    }
    let width = s.and_then(|s| s.get::<i32>("width").ok()).unwrap_or(0) as u32;
    let height = s.and_then(|s| s.get::<i32>("height").ok()).unwrap_or(0) as u32;
    let fps = s
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| f64::from(f.numer()) / f64::from(f.denom()))
        .unwrap_or(f64::from(ladder.video.fps));
    let bitrate = ladder
        .rungs
        .iter()
        .find(|r| r.name == name)
        .map(|r| u64::from(r.bitrate_kbps) * 1000)
        .unwrap_or(0);
    RenditionInfo {
        name: name.to_string(),
        kind: RenditionKind::Video { width, height, fps },
        codecs,
        bitrate,
    }
}

/// The appsink callback: split cmafmux output into init segment and fragments, and hand
/// them to the broadcast task. Runs on a streaming thread (blocking send is allowed there).
fn connect_appsink(branch: &Branch, name: &str, origin: Origin, shared: &Arc<Shared>) {
    let shared = Arc::clone(shared);
    let name = name.to_string();
    let caps_pad = branch.caps_source.static_pad("src");
    // With parts on, the audio rendition's segment starts are ours (audio_cut.rs).
    let mut audio_cutter = match shared.timing.part {
        Some(part) if origin == Origin::Audio => {
            Some(AudioCutter::new(shared.timing.segment, part))
        }
        _ => None,
    };
    let split_first = shared.timing.part.is_some() && origin == Origin::Rung;
    let mut seen_chunk = false;
    branch.appsink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(list) = sample.buffer_list() else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let mut idx = 0;
                let send = |ev: MediaEvent| {
                    shared
                        .events
                        .blocking_send(ev)
                        .map_err(|_| gst::FlowError::Flushing)
                };
                if let Some(first) = list.get(0)
                    && first
                        .flags()
                        .contains(gst::BufferFlags::DISCONT | gst::BufferFlags::HEADER)
                {
                    let data = map_bytes(&[first]);
                    let caps = caps_pad.as_ref().and_then(|p| p.current_caps());
                    let Some(caps) = caps else {
                        warn!(rendition = %name, "no caps for init segment");
                        return Err(gst::FlowError::NotNegotiated);
                    };
                    let info = rendition_info(&name, &caps, &shared);
                    debug!(rendition = %name, codecs = %info.codecs, "init segment");
                    send(MediaEvent::Init { info, data })?;
                    idx = 1;
                }
                if idx >= list.len() {
                    return Ok(gst::FlowSuccess::Ok);
                }
                let Some(head) = list.get(idx) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                let segment = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>().cloned());
                let pts = head.pts().unwrap_or(gst::ClockTime::ZERO);
                let running = segment.and_then(|s| s.to_running_time(pts)).unwrap_or(pts);
                let anchor = *shared.anchor.get_or_init(|| anchor_for(sink, running));
                let wallclock = if running >= anchor.running {
                    anchor.wallclock + Duration::from_nanos((running - anchor.running).nseconds())
                } else {
                    anchor.wallclock - Duration::from_nanos((anchor.running - running).nseconds())
                };
                let duration = head.duration().unwrap_or(gst::ClockTime::ZERO);
                // Server lag: from the arrival of the part's last frame (appsrc stamps
                // arrival running time; the last frame starts one frame interval before
                // the part ends) to now, when the part is handed to the store.
                let lag = match (sink.clock(), sink.base_time(), &shared.frame_interval) {
                    (Some(clock), Some(base), Some(frame)) if origin.is_video() => {
                        let now_rt = clock.time().checked_sub(base);
                        let last_frame = (running + duration).checked_sub(*frame);
                        match (now_rt, last_frame) {
                            (Some(n), Some(l)) => {
                                n.checked_sub(l).map(|d| Duration::from_nanos(d.nseconds()))
                            }
                            _ => None,
                        }
                    }
                    _ => None,
                };
                // cmafmux 0.14.5 marks chunks in the buffer flags: a fragment's first chunk
                // starts with a HEADER buffer without DELTA_UNIT; continuation chunks have
                // HEADER|DELTA_UNIT.
                let (starts_segment, next_starts_segment) = match audio_cutter.as_mut() {
                    Some(c) => {
                        let cut = c.chunk(
                            Duration::from_nanos(running.nseconds()),
                            Duration::from_nanos(duration.nseconds()),
                        );
                        (cut.starts_segment, Some(cut.next_starts_segment))
                    }
                    None => {
                        let starts = !head.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        // A transcoded rung's first segment is one part (bins.rs
                        // split_first_fragment): the chunk after the very first starts one.
                        let first = split_first && !std::mem::replace(&mut seen_chunk, true);
                        (starts, first.then_some(true))
                    }
                };
                let bufs: Vec<&gst::BufferRef> =
                    (idx..list.len()).filter_map(|i| list.get(i)).collect();
                send(MediaEvent::Fragment {
                    origin,
                    rendition: name.clone(),
                    pts: Duration::from_nanos(running.nseconds()),
                    duration: Duration::from_nanos(duration.nseconds()),
                    wallclock,
                    starts_segment,
                    next_starts_segment,
                    lag,
                    data: map_bytes(&bufs),
                })?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn anchor_for(sink: &gst_app::AppSink, running: gst::ClockTime) -> ClockAnchor {
    let now = SystemTime::now();
    // running time of "now" = clock time − base time; the fragment started that long ago.
    let now_running = match (sink.clock(), sink.base_time()) {
        (Some(clock), Some(base)) => clock.time().checked_sub(base),
        _ => None,
    };
    let wallclock = match now_running {
        Some(nr) if nr >= running => now - Duration::from_nanos((nr - running).nseconds()),
        _ => now,
    };
    ClockAnchor { running, wallclock }
}

fn map_bytes(buffers: &[&gst::BufferRef]) -> Bytes {
    let total: usize = buffers.iter().map(|b| b.size()).sum();
    let mut out = BytesMut::with_capacity(total);
    for b in buffers {
        if let Ok(map) = b.map_readable() {
            out.extend_from_slice(map.as_slice());
        }
    }
    out.freeze()
}
