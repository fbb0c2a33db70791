//! The audio bin: the publisher's Opus RTP (or generated silence) → AAC-LC stereo 48 kHz
//! with contiguous timestamps → cmafmux → appsink.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::MediaError;
use super::elements::{
    DROP_BUFFER, add, caps_filter, jitterbuffer, link, livesync, make, queue, rtcp_input,
    rtp_appsrc, unflag_repeats,
};
use super::ladder::Ladder;
use super::mux::{Branch, MuxTiming, appsink, cmafmux};

/// Name of the audio RTP `appsrc`.
pub(crate) const AUDIO_SRC: &str = "audio_src";
/// Name of the audio sender-report `appsrc`.
pub(crate) const AUDIO_RTCP: &str = "audio_rtcp";

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
            let src = rtp_appsrc(AUDIO_SRC, &caps);
            head.push(src.clone().upcast());
            let jbuf = jitterbuffer("audio_jitter")?;
            jitter = Some(jbuf.clone());
            head.push(jbuf);
            head.push(make("rtpopusdepay", "audio_depay")?);
            let dec = make("opusdec", "audio_decoder")?;
            // Packet-loss concealment instead of gaps.
            dec.set_property("plc", true);
            head.push(dec);
            // Silence on the clock through a stall; the concealment of a whole stall,
            // which arrives at once when packets come back, is behind it and dropped
            // (elements.rs `livesync`).
            let sync = livesync("audio_livesync")?;
            unflag_repeats(&sync, |_, _| gst::PadProbeReturn::Ok);
            head.push(sync);
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
        .property_from_str("aac-coder", ladder.audio.aac_coder.nick())
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
        Some(j) => Some((rtcp_input(pipeline, &j, AUDIO_RTCP)?, j)),
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

/// FFmpeg's AAC encoder (avenc_aac) starts with 1024 samples of priming: AAC frame *k*
/// decodes to the input of frame *k − 1*. Its output carries the input's timestamps, and
/// cmafmux writes no edit list to say so, so every player would hear the audio 21.3 ms
/// (1024 / 48 000 s) after the video captured with it (measured with tests/av_sync.rs). The
/// timestamps are moved back by the priming instead. The first frame, priming only, is
/// dropped where that would put it before running time 0; elsewhere it keeps a timestamp
/// 1024 samples before the first input's (measured in audio/bin_tests.rs).
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
            return DROP_BUFFER;
        };
        let b = buffer.make_mut();
        b.set_pts(moved);
        if let Some(dts) = b.dts() {
            b.set_dts(dts.saturating_sub(delay));
        }
        gst::PadProbeReturn::Ok
    });
}

#[cfg(test)]
mod bin_tests;
