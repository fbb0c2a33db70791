//! Typed element builders, one function per branch. `pipelines/*.sh` holds the equivalent
//! `gst-launch-1.0` line of each for humans to reproduce and benchmark.

use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
#[cfg(test)]
use gstreamer_video as gst_video;

use super::ladder::{Ladder, PlannedRung};
use super::{MediaError, VideoCodec, VideoInput};

/// Elements whose absence makes whipcast useless; checked once at start.
pub(crate) const REQUIRED_ELEMENTS: &[&str] = &[
    "appsrc",
    "appsink",
    "rtpjitterbuffer",
    "rtph264depay",
    "rtpvp8depay",
    "rtpvp9depay",
    "rtpopusdepay",
    "h264parse",
    "avdec_h264",
    "vp8dec",
    "vp9dec",
    "opusdec",
    "videoconvert",
    "videoscale",
    "videorate",
    "x264enc",
    "audioconvert",
    "audioresample",
    "audiorate",
    "audiotestsrc",
    "avenc_aac",
    "cmafmux",
    "tee",
    "queue",
];

/// Jitter-buffer latency: enough to reorder and recover a NACKed packet on a decent link,
/// small enough not to matter against segment durations.
const JITTER_LATENCY_MS: u32 = 150;

pub(crate) fn make(factory: &str, name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("{factory} ({name})"),
            source,
        })
}

pub(crate) fn link(elements: &[&gst::Element]) -> Result<(), MediaError> {
    gst::Element::link_many(elements.iter().copied()).map_err(|source| MediaError::Build {
        what: "link".into(),
        source,
    })
}

fn add(bin: &gst::Pipeline, elements: &[&gst::Element]) -> Result<(), MediaError> {
    bin.add_many(elements.iter().copied())
        .map_err(|source| MediaError::Build {
            what: "add".into(),
            source,
        })
}

fn caps_filter(name: &str, caps: gst::Caps) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make("capsfilter")
        .name(name)
        .property("caps", caps)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("capsfilter {name}"),
            source,
        })
}

fn rtp_appsrc(name: &str, caps: &gst::Caps) -> gst_app::AppSrc {
    gst_app::AppSrc::builder()
        .name(name)
        .caps(caps)
        .is_live(true)
        .format(gst::Format::Time)
        // Buffers carry their network arrival time (pipeline.rs `push`), not the time they
        // were pushed.
        .do_timestamp(false)
        // Bounded: ~2 s of 5 Mbit/s video. If the pipeline stalls, `push_buffer` fails
        // rather than growing memory; the broadcast ends that stream only.
        .max_bytes(2 * 1024 * 1024)
        .block(false)
        .build()
}

/// The RTCP input of a jitter buffer: an appsrc for the publisher's sender reports, linked
/// to the buffer's `sink_rtcp` pad. The buffer answers each with a `handle-sync` signal
/// that maps the report onto its output timeline (lipsync.rs).
fn rtcp_input(
    pipeline: &gst::Pipeline,
    jbuf: &gst::Element,
    name: &str,
) -> Result<gst_app::AppSrc, MediaError> {
    let src = gst_app::AppSrc::builder()
        .name(name)
        .caps(&gst::Caps::new_empty_simple("application/x-rtcp"))
        .is_live(true)
        .format(gst::Format::Time)
        .max_bytes(64 * 1024)
        .block(false)
        .build();
    add(pipeline, &[src.upcast_ref()])?;
    let sink = jbuf
        .request_pad_simple("sink_rtcp")
        .ok_or(MediaError::Missing("the jitter buffer's sink_rtcp pad"))?;
    let srcpad = src
        .static_pad("src")
        .ok_or(MediaError::Missing("the appsrc's src pad"))?;
    srcpad.link(&sink).map_err(|source| MediaError::Link {
        what: format!("{name} → sink_rtcp"),
        source,
    })?;
    Ok(src)
}

fn jitterbuffer(name: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make("rtpjitterbuffer")
        .name(name)
        .property("latency", JITTER_LATENCY_MS)
        .property("do-lost", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "rtpjitterbuffer".into(),
            source,
        })
}

/// The video ingest chain, from `appsrc` up to (not including) the tee feeding the rungs.
/// Returns `(appsrc, depayloaded H.264 tee for passthrough if H.264, raw video tail)`.
pub(crate) struct VideoIngest {
    pub appsrc: gst_app::AppSrc,
    /// The publisher's sender reports for the video stream.
    pub rtcp: gst_app::AppSrc,
    /// The jitter buffer (its `ts-offset` aligns video with audio).
    pub jitter: gst::Element,
    /// Parsed H.264 (`stream-format=avc, alignment=au`), for the passthrough rung.
    pub h264_tee: Option<gst::Element>,
    /// Raw I420 video at the ladder frame rate; request pads from it per rung. `None` for a
    /// passthrough-only ladder: nothing to transcode, so nothing is decoded.
    pub raw_tee: Option<gst::Element>,
}

pub(crate) fn video_ingest(
    pipeline: &gst::Pipeline,
    input: VideoInput,
    ladder: &Ladder,
) -> Result<VideoIngest, MediaError> {
    let encoding = match input.codec {
        VideoCodec::H264 => "H264",
        VideoCodec::Vp8 => "VP8",
        VideoCodec::Vp9 => "VP9",
    };
    let caps = gst::Caps::builder("application/x-rtp")
        .field("media", "video")
        .field("clock-rate", 90_000i32)
        .field("encoding-name", encoding)
        .field("payload", i32::from(input.payload_type))
        .build();
    let appsrc = rtp_appsrc("video_src", &caps);
    let jbuf = jitterbuffer("video_jitter")?;
    let (depay, decoder) = match input.codec {
        VideoCodec::H264 => ("rtph264depay", "avdec_h264"),
        VideoCodec::Vp8 => ("rtpvp8depay", "vp8dec"),
        VideoCodec::Vp9 => ("rtpvp9depay", "vp9dec"),
    };
    let depay = make(depay, "video_depay")?;
    // Ask upstream (→ PLI) for a keyframe whenever a packet is lost.
    if depay.has_property("request-keyframe") {
        depay.set_property("request-keyframe", true);
    }
    add(pipeline, &[appsrc.upcast_ref(), &jbuf, &depay])?;
    link(&[appsrc.upcast_ref(), &jbuf, &depay])?;
    let rtcp = rtcp_input(pipeline, &jbuf, "video_rtcp")?;

    // H.264 with the passthrough rung: parsed once, then a tee for the source rung (and the
    // decoder, if any rung transcodes).
    let h264_tee = if input.codec == VideoCodec::H264 && ladder.source.enabled {
        let parse = make("h264parse", "video_parse")?;
        let caps = caps_filter(
            "video_parse_caps",
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .build(),
        )?;
        let tee = make("tee", "h264_tee")?;
        add(pipeline, &[&parse, &caps, &tee])?;
        link(&[&depay, &parse, &caps, &tee])?;
        Some(tee)
    } else {
        None
    };
    // A passthrough-only ladder has nothing to transcode: remux only, no decoder (measured,
    // 720p30: 0.060–0.065 instead of 0.093–0.105 cores; BENCHMARKS.md "Passthrough-only").
    if ladder.rungs.is_empty()
        && let Some(tee) = h264_tee
    {
        return Ok(VideoIngest {
            appsrc,
            rtcp,
            jitter: jbuf,
            h264_tee: Some(tee),
            raw_tee: None,
        });
    }

    let decoder = make(decoder, "video_decoder")?;
    // Decoders ask upstream for a sync point on corrupt input; we turn that into a PLI.
    if decoder.has_property("automatic-request-sync-points") {
        decoder.set_property("automatic-request-sync-points", true);
    }
    // A publisher sending garbage must cost a keyframe request, not the stream: never turn
    // decode errors into a fatal bus error (GstVideoDecoder default: 10 in a row).
    if decoder.has_property("max-errors") {
        decoder.set_property("max-errors", -1i32);
    }
    let convert = make("videoconvert", "video_convert")?;
    let rate = make("videorate", "video_rate")?;
    // WebRTC frame rates vary; every rung gets the same constant rate so keyframe
    // intervals are exact and identical in every rendition.
    let rate_caps = caps_filter(
        "video_rate_caps",
        gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("framerate", gst::Fraction::new(ladder.video.fps as i32, 1))
            .build(),
    )?;
    let raw_tee = gst::ElementFactory::make("tee")
        .name("video_tee")
        .property("allow-not-linked", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "tee".into(),
            source,
        })?;
    if let Some(pad) = rate_caps.static_pad("src") {
        snap_to_frame_grid(&pad, ladder.video.fps);
    }
    add(pipeline, &[&decoder, &convert, &rate, &rate_caps, &raw_tee])?;
    match &h264_tee {
        Some(tee) => {
            let q = queue("video_decode_queue")?;
            add(pipeline, &[&q])?;
            link(&[tee, &q, &decoder])?;
        }
        None => link(&[&depay, &decoder])?,
    }
    link(&[&decoder, &convert, &rate, &rate_caps, &raw_tee])?;
    Ok(VideoIngest {
        appsrc,
        rtcp,
        jitter: jbuf,
        h264_tee,
        raw_tee: Some(raw_tee),
    })
}

/// Frame `n` of a constant `fps` stream starting at 0: its timestamp and duration in ns, as
/// videorate computes them when it never re-bases (`n · 10⁹ / fps`, truncated).
fn frame_slot(n: u64, fps: u32) -> (u64, u64) {
    let at = |n: u64| (u128::from(n) * 1_000_000_000 / u128::from(fps)) as u64;
    (at(n), at(n + 1) - at(n))
}

/// The frame of the `fps` grid nearest to `pts_ns`: its timestamp and duration.
fn nearest_frame(pts_ns: u64, fps: u32) -> (u64, u64) {
    let n = (u128::from(pts_ns) * u128::from(fps) + 500_000_000) / 1_000_000_000;
    frame_slot(n as u64, fps)
}

/// Puts every frame leaving videorate back on one exact grid from running time 0.
///
/// videorate re-bases its output on every caps change (a publisher changing resolution,
/// which browsers do as their bandwidth estimate grows): the base moves by
/// `count · 10⁹ / fps` truncated and the count restarts, so from then on a frame lands 1 ns
/// early whenever the two truncations add up (measured, GStreamer 1.22: a frame due at
/// 20.000000000 s stamped 19.999999999 s). cmafmux then keeps that frame in the chunk
/// before the boundary, which becomes one frame longer than PART-TARGET (RFC 8216bis
/// §4.4.4.9 forbids a part above it), the next one frame shorter. The grid's origin is
/// running time 0, the first video packet (`MediaSpec::epoch`), where videorate starts.
fn snap_to_frame_grid(pad: &gst::Pad, fps: u32) {
    if fps == 0 {
        return;
    }
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        let (at, duration) = nearest_frame(pts.nseconds(), fps);
        if at != pts.nseconds()
            || buffer.duration() != Some(gst::ClockTime::from_nseconds(duration))
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::from_nseconds(at));
            b.set_duration(gst::ClockTime::from_nseconds(duration));
        }
        gst::PadProbeReturn::Ok
    });
}

fn queue(name: &str) -> Result<gst::Element, MediaError> {
    // Each branch runs on its own thread; 1 s of buffering absorbs encoder jitter.
    gst::ElementFactory::make("queue")
        .name(name)
        .property("max-size-buffers", 0u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", gst::ClockTime::SECOND)
        .build()
        .map_err(|source| MediaError::Build {
            what: "queue".into(),
            source,
        })
}

/// FFmpeg's AAC encoder (avenc_aac) starts with 1024 samples of priming: AAC frame *k*
/// decodes to the input of frame *k − 1*. Its output carries the input's timestamps, and
/// cmafmux writes no edit list to say so, so every player would hear the audio 21.3 ms
/// (1024 / 48 000 s) after the video captured with it (measured with tests/av_sync.rs). The
/// timestamps are moved back by the priming instead; the first frame, priming only, is
/// dropped.
fn remove_encoder_delay(enc: &gst::Element) {
    const PRIMING_SAMPLES: u64 = 1024;
    let delay = gst::ClockTime::SECOND.mul_div_floor(PRIMING_SAMPLES, 48_000);
    let (Some(delay), Some(pad)) = (delay, enc.static_pad("src")) else {
        return;
    };
    pad.add_probe(gst::PadProbeType::BUFFER, move |_pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(pts) = buffer.pts() else {
            return gst::PadProbeReturn::Ok;
        };
        let Some(moved) = pts.checked_sub(delay) else {
            return gst::PadProbeReturn::Drop;
        };
        let b = buffer.make_mut();
        b.set_pts(moved);
        if let Some(dts) = b.dts() {
            b.set_dts(dts.saturating_sub(delay));
        }
        gst::PadProbeReturn::Ok
    });
}

/// Muxer timing: fragment (= segment) duration and, for LL-HLS, chunk (= part) duration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MuxTiming {
    pub segment: Duration,
    pub part: Option<Duration>,
}

/// Cuts the muxer's first fragment after one part: `split-at-running-time` for the running
/// time of the first buffer reaching `pad` (the muxer's input) plus one part.
///
/// Why: a media playlist is served only once it lists a whole segment (hls.js rejects a
/// parts-only playlist with LEVEL_EMPTY_ERROR), so with full-length first segments a
/// viewer waits a whole segment after the first keyframe. A one-part first segment makes the
/// stream playable ~one part after the first keyframe (BENCHMARKS.md "Latency": publish →
/// first playable). HLS2 §4.4.3.1 only bounds segment durations from above
/// (EXT-X-TARGETDURATION), so a short first segment is allowed. Every later fragment starts
/// where the previous ended, so boundaries stay on `first + n × segment`: the same in every
/// video rung, which all see the same first frame; the split is a whole number of parts from
/// the first buffer, as cmafmux needs (measured with cmafmux 0.14.5: a split off the chunk
/// grid makes it skip the next fragment boundary). cmafmux sends its force-key-unit for
/// the second fragment start after this request is in, so x264enc puts the IDR there.
fn split_first_fragment(mux: &gst::Element, pad: &gst::Pad, after: Duration) {
    let mux = mux.downgrade();
    let after = gst::ClockTime::from_nseconds(after.as_nanos() as u64);
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
            return gst::PadProbeReturn::Ok;
        };
        // The muxer starts at the first keyframe (the passthrough rung may see delta
        // frames before its first IDR).
        if buffer.flags().contains(gst::BufferFlags::DELTA_UNIT) {
            return gst::PadProbeReturn::Ok;
        }
        let running = pad.sticky_event::<gst::event::Segment>(0).and_then(|ev| {
            ev.segment()
                .downcast_ref::<gst::format::Time>()
                .and_then(|seg| seg.to_running_time(buffer.pts()))
        });
        if let (Some(mux), Some(running)) = (mux.upgrade(), running) {
            mux.emit_by_name::<()>("split-at-running-time", &[&(running + after)]);
        }
        gst::PadProbeReturn::Remove
    });
}

fn cmafmux(name: &str, timing: MuxTiming, force_keyunit: bool) -> Result<gst::Element, MediaError> {
    let clock = |d: Duration| gst::ClockTime::from_nseconds(d.as_nanos() as u64);
    let mut b = gst::ElementFactory::make("cmafmux")
        .name(name)
        .property("fragment-duration", clock(timing.segment));
    if let Some(part) = timing.part {
        // The chunk duration must divide the fragment duration exactly (validated in
        // config): otherwise cmafmux 0.14.5 skips fragment boundaries (measured).
        b = b.property("chunk-duration", clock(part));
    }
    b
        // cmafmux sends force-key-unit events upstream at each fragment boundary (by running
        // time), so x264enc puts an IDR at the same timestamp in every rung.
        .property("send-force-keyunit", force_keyunit)
        .build()
        .map_err(|source| MediaError::Build {
            what: format!("cmafmux {name}"),
            source,
        })
}

fn appsink(name: &str) -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name(name)
        .buffer_list(true)
        // Live output: never wait on the clock, never drop (fragments are precious).
        .sync(false)
        .build()
}

/// The last element before the muxer: its caps give CODECS, width, height and fps.
pub(crate) struct Branch {
    pub appsink: gst_app::AppSink,
    pub caps_source: gst::Element,
}

/// One transcoded rung: `queue ! videoscale ! capsfilter ! x264enc ! capsfilter ! h264parse !
/// cmafmux ! appsink`, linked from a new request pad of `tee`.
pub(crate) fn video_rung(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    rung: &PlannedRung,
    ladder: &Ladder,
    timing: MuxTiming,
) -> Result<Branch, MediaError> {
    let n = &rung.name;
    let q = queue(&format!("{n}_queue"))?;
    let scale = make("videoscale", &format!("{n}_scale"))?;
    let raw_caps = caps_filter(
        &format!("{n}_raw_caps"),
        gst::Caps::builder("video/x-raw")
            // Without I420 here x264enc negotiates Y444 and encodes High 4:4:4, which no
            // HLS player decodes (measured with GStreamer 1.22).
            .field("format", "I420")
            .field("width", rung.width as i32)
            .field("height", rung.height as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .build(),
    )?;
    let fps = ladder.video.fps;
    let keyint = fps * (timing.segment.as_millis() as u32).div_ceil(1000).max(1);
    let enc = gst::ElementFactory::make("x264enc")
        .name(format!("{n}_x264enc"))
        .property("bitrate", rung.bitrate_kbps)
        .property("bframes", 0u32)
        .property("key-int-max", keyint)
        .property_from_str("tune", "zerolatency")
        .property_from_str("speed-preset", &ladder.video.preset)
        // No scene-cut keyframes: keyframes only where cmafmux forces them, so segment
        // boundaries are identical in every rung (HLS2 §6.2.4).
        .property("option-string", "scenecut=0")
        .build()
        .map_err(|source| MediaError::Build {
            what: "x264enc".into(),
            source,
        })?;
    let h264_caps = caps_filter(
        &format!("{n}_h264_caps"),
        gst::Caps::builder("video/x-h264")
            .field("profile", ladder.video.profile.as_str())
            .build(),
    )?;
    let parse = make("h264parse", &format!("{n}_parse"))?;
    let mux = cmafmux(&format!("{n}_mux"), timing, true)?;
    if let (Some(part), Some(pad)) = (timing.part, parse.static_pad("src")) {
        split_first_fragment(&mux, &pad, part);
    }
    let sink = appsink(&format!("{n}_sink"));
    branch_from_tee(
        pipeline,
        tee,
        &[
            &q,
            &scale,
            &raw_caps,
            &enc,
            &h264_caps,
            &parse,
            &mux,
            sink.upcast_ref(),
        ],
    )?;
    Ok(Branch {
        appsink: sink,
        caps_source: parse,
    })
}

/// The passthrough rung: the publisher's H.264, remuxed; segments cut on its keyframes.
pub(crate) fn source_rung(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    timing: MuxTiming,
) -> Result<Branch, MediaError> {
    let q = queue("source_queue")?;
    // cmafmux requires DTS on video ("Require DTS for video streams"). The depayloaded stream has PTS only;
    // WebRTC H.264 has no B-frames (OBS forces bf=0, browsers never use them), so DTS = PTS.
    // A buffer with no PTS either (seen after the process stalled for 3 s: the jitter buffer
    // let an untimed buffer through) is dropped: cmafmux answers it with a flow error that
    // ends the broadcast ("Require DTS for video streams"). The next keyframe heals the
    // stream; the decoder branch asks the publisher for one on the resulting corruption.
    if let Some(pad) = q.static_pad("sink") {
        pad.add_probe(gst::PadProbeType::BUFFER, |_pad, info| {
            if let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data
                && buffer.dts().is_none()
            {
                let Some(pts) = buffer.pts() else {
                    return gst::PadProbeReturn::Drop;
                };
                buffer.make_mut().set_dts(pts);
            }
            gst::PadProbeReturn::Ok
        });
    }
    let mux = cmafmux("source_mux", timing, false)?;
    // The first segment ends at the publisher's first keyframe one part or more after its
    // first one; broadcast.rs asks for that keyframe (keyframes.rs with_first_segment).
    if let (Some(part), Some(pad)) = (timing.part, q.static_pad("src")) {
        split_first_fragment(&mux, &pad, part);
    }
    let sink = appsink("source_sink");
    branch_from_tee(pipeline, tee, &[&q, &mux, sink.upcast_ref()])?;
    Ok(Branch {
        appsink: sink,
        caps_source: q,
    })
}

/// Adds `chain` to the pipeline, links it in order, brings it to the pipeline's state (it
/// may be added while the pipeline is already playing) and links `tee` to its first element
/// through a new request pad.
fn branch_from_tee(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    chain: &[&gst::Element],
) -> Result<(), MediaError> {
    let first = chain
        .first()
        .ok_or(MediaError::Missing("a branch's first element"))?;
    add(pipeline, chain)?;
    link(chain)?;
    for e in chain.iter().rev() {
        e.sync_state_with_parent()
            .map_err(|source| MediaError::Build {
                what: format!("sync state {}", e.name()),
                source,
            })?;
    }
    let src = tee
        .request_pad_simple("src_%u")
        .ok_or(MediaError::Missing("a src pad of the tee"))?;
    let sink = first
        .static_pad("sink")
        .ok_or(MediaError::Missing("the branch queue's sink pad"))?;
    src.link(&sink).map_err(|source| MediaError::Link {
        what: format!("tee → {}", first.name()),
        source,
    })?;
    Ok(())
}

/// Audio: Opus RTP → AAC-LC stereo 48 kHz, or generated silence when the publisher sends
/// no audio (Safari refuses video-only streams from such gateways: srs#3619).
pub(crate) struct AudioBranch {
    pub appsrc: Option<gst_app::AppSrc>,
    /// The silence source when the publisher sends no audio (ended with an EOS event).
    pub silence: Option<gst::Element>,
    /// Sender reports and jitter buffer of the publisher's audio, if it sends any.
    pub rtcp: Option<(gst_app::AppSrc, gst::Element)>,
    pub branch: Branch,
}

pub(crate) fn audio(
    pipeline: &gst::Pipeline,
    payload_type: Option<u8>,
    ladder: &Ladder,
    timing: MuxTiming,
) -> Result<AudioBranch, MediaError> {
    let mut head: Vec<gst::Element> = Vec::new();
    let mut jitter: Option<gst::Element> = None;
    let mut silence = None;
    let appsrc = match payload_type {
        Some(pt) => {
            let caps = gst::Caps::builder("application/x-rtp")
                .field("media", "audio")
                .field("clock-rate", 48_000i32)
                .field("encoding-name", "OPUS")
                .field("payload", i32::from(pt))
                .build();
            let src = rtp_appsrc("audio_src", &caps);
            head.push(src.clone().upcast());
            let jbuf = jitterbuffer("audio_jitter")?;
            jitter = Some(jbuf.clone());
            head.push(jbuf);
            head.push(make("rtpopusdepay", "audio_depay")?);
            let dec = make("opusdec", "audio_decoder")?;
            // Packet-loss concealment instead of gaps.
            dec.set_property("plc", true);
            head.push(dec);
            Some(src)
        }
        None => {
            let src = gst::ElementFactory::make("audiotestsrc")
                .name("audio_silence")
                .property("is-live", true)
                .property_from_str("wave", "silence")
                .build()
                .map_err(|source| MediaError::Build {
                    what: "audiotestsrc".into(),
                    source,
                })?;
            head.push(src.clone());
            silence = Some(src);
            None
        }
    };
    let convert = make("audioconvert", "audio_convert")?;
    let resample = make("audioresample", "audio_resample")?;
    let raw_caps = caps_filter(
        "audio_raw_caps",
        gst::Caps::builder("audio/x-raw")
            .field("rate", 48_000i32)
            .field("channels", 2i32)
            .build(),
    )?;
    // A contiguous stream into the encoder: samples inserted (silence) or dropped where the
    // decoded Opus has gaps or overlaps (loss the decoder could not conceal, a publisher's
    // clock that jumps), so each AAC frame is exactly 1024 samples after the previous one
    // within a broadcast and audio never shrinks or repeats a timestamp. Nothing is made up
    // before the first real sample.
    let rate = gst::ElementFactory::make("audiorate")
        .name("audio_rate")
        .property("skip-to-first", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "audiorate".into(),
            source,
        })?;
    let enc = gst::ElementFactory::make("avenc_aac")
        .name("audio_aacenc")
        .property("bitrate", (ladder.audio.bitrate_kbps * 1000) as i32)
        // Output timestamps counted in samples from the first, not re-derived per frame from
        // the input's (which carry the network's jitter).
        .property("perfect-timestamp", true)
        .build()
        .map_err(|source| MediaError::Build {
            what: "avenc_aac".into(),
            source,
        })?;
    remove_encoder_delay(&enc);
    let q = queue("audio_queue")?;
    let mux = cmafmux("audio_mux", timing, false)?;
    // No first-fragment split here: with parts on, audio segments are cut by
    // audio_cut.rs, not by this muxer's fragments.
    let sink = appsink("audio_sink");
    let mut all: Vec<&gst::Element> = head.iter().collect();
    all.extend([
        &convert,
        &resample,
        &raw_caps,
        &rate,
        &enc,
        &q,
        &mux,
        sink.upcast_ref(),
    ]);
    add(pipeline, &all)?;
    link(&all)?;
    let rtcp = match jitter {
        Some(j) => Some((rtcp_input(pipeline, &j, "audio_rtcp")?, j)),
        None => None,
    };
    Ok(AudioBranch {
        appsrc,
        silence,
        rtcp,
        branch: Branch {
            appsink: sink,
            caps_source: enc,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_snap_to_the_grid_from_zero() {
        assert_eq!(frame_slot(0, 30), (0, 33_333_333));
        assert_eq!(frame_slot(1, 30), (33_333_333, 33_333_333));
        assert_eq!(frame_slot(2, 30), (66_666_666, 33_333_334));
        assert_eq!(
            nearest_frame(19_999_999_999, 30),
            (20_000_000_000, 33_333_333)
        );
        assert_eq!(
            nearest_frame(20_033_333_332, 30),
            (20_033_333_333, 33_333_333)
        );
        assert_eq!(nearest_frame(66_666_667, 30), (66_666_666, 33_333_334));
        // Six frames make a 200 ms part exactly, wherever the part starts.
        for start in [0u64, 474, 600, 601, 602] {
            let (a, _) = frame_slot(start, 30);
            let (b, _) = frame_slot(start + 6, 30);
            assert_eq!(b - a, 200_000_000, "from frame {start}");
        }
    }

    /// The real videorate, fed frames whose size changes every 10 frames (as a browser's
    /// encoder does): without the probe some output timestamps fall 1 ns before the grid
    /// (GStreamer 1.22); with it every one is on it.
    #[test]
    fn videorate_output_stays_on_the_grid_across_caps_changes() {
        gst::init().expect("gstreamer");
        let run = |snap: bool| -> Vec<(u64, u64)> {
            let pipeline = gst::Pipeline::new();
            let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
            let rate = make("videorate", "rate").expect("videorate");
            let caps = caps_filter(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .expect("capsfilter");
            let sink = gst_app::AppSink::builder().sync(false).build();
            pipeline
                .add_many([src.upcast_ref(), &rate, &caps, sink.upcast_ref()])
                .expect("add");
            gst::Element::link_many([src.upcast_ref(), &rate, &caps, sink.upcast_ref()])
                .expect("link");
            if snap {
                snap_to_frame_grid(&caps.static_pad("src").expect("src pad"), 30);
            }
            pipeline.set_state(gst::State::Playing).expect("play");
            // Irregular input timestamps (network arrival), sizes changing every 10 frames.
            for i in 0u64..120 {
                let (w, h) = if (i / 10) % 2 == 0 {
                    (64, 36)
                } else {
                    (96, 54)
                };
                let caps = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h)
                    .fps(gst::Fraction::new(30, 1))
                    .build()
                    .expect("info")
                    .to_caps()
                    .expect("caps");
                src.set_caps(Some(&caps));
                let size = (w * h * 3 / 2) as usize;
                let mut buffer = gst::Buffer::with_size(size).expect("buffer");
                let jitter = (i * 7_919_000) % 9_000_000;
                buffer
                    .get_mut()
                    .expect("writable")
                    .set_pts(gst::ClockTime::from_nseconds(i * 33_333_333 + jitter));
                src.push_buffer(buffer).expect("push");
            }
            src.end_of_stream().expect("eos");
            let mut out = Vec::new();
            while let Ok(sample) = sink.pull_sample() {
                let b = sample.buffer().expect("buffer");
                out.push((
                    b.pts().expect("pts").nseconds(),
                    b.duration().expect("duration").nseconds(),
                ));
            }
            pipeline.set_state(gst::State::Null).expect("stop");
            out
        };
        let off_grid = |frames: &[(u64, u64)]| {
            frames
                .iter()
                .filter(|(pts, _)| nearest_frame(*pts, 30).0 != *pts)
                .count()
        };
        let raw = run(false);
        assert!(raw.len() > 100, "{} frames", raw.len());
        assert!(
            off_grid(&raw) > 0,
            "videorate kept the grid by itself: the probe would be unneeded"
        );
        let snapped = run(true);
        assert_eq!(off_grid(&snapped), 0, "{snapped:?}");
        for w in snapped.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "contiguous: {w:?}");
        }
    }
}
