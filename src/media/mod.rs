//! Media: RTP in, CMAF fragments out. The only module that names GStreamer.
//!
//! One [`Pipeline`] per live stream: `appsrc` (RTP) → jitter buffer → depayload → decode →
//! `tee` → one branch per ladder rung (scale → rate → `x264enc` → `cmafmux` → `appsink`),
//! plus Opus → AAC (or silence when the publisher sends no audio) → `cmafmux` → `appsink`.
//! What leaves this module is our own vocabulary: [`MediaEvent`], [`RenditionInfo`].
//! [`print_pipelines`] prints that pipeline as `gst-launch-1.0` text, from the same builders.
//!
//! Never blocks the async runtime: appsink callbacks run on GStreamer's streaming threads
//! and hand fragments over a bounded channel; state changes run in `spawn_blocking`.
//!
//! # Layout
//!
//! * Bins, typed builders: `elements.rs` (shared constructors), `ingest.rs` (RTP → raw
//!   video tee), `rung.rs` (transcoded and passthrough rungs), `audio.rs` (Opus → AAC),
//!   `mux.rs` (cmafmux and appsink); `graph.rs` puts them together for a [`MediaSpec`].
//! * The running pipeline: `pipeline.rs` (lifecycle), `bus.rs` (bus watch, keyframe
//!   requests), `fragments.rs` (appsink → [`MediaEvent`]), `sender_reports.rs` (A/V
//!   alignment applied to the jitter buffers).
//! * `print-pipelines`: `describe.rs` (walks the built graph) and `launch_text.rs` (one
//!   element as gst-launch text).
//! * Pure parts: `ladder.rs`, `lipsync.rs`, `audio_cut.rs`, `rtp.rs`, `stale.rs` (RTP that
//!   arrives too late to be live), `gaps.rs` (which segments a publisher's stall makes gaps),
//!   `whole.rs` (frames that lost their first slice, kept out of the passthrough rung and
//!   the decoder).
//!
//! # A stalled publisher
//!
//! Time stays the wall clock's: running time is packet arrival, RTP held back and delivered
//! late is dropped before the jitter buffer (`stale.rs`), and `livesync` repeats the last
//! frame or silence on the clock while nothing comes (`elements.rs`), so every rendition
//! keeps its cadence and its segment numbers in step. The segments of a stall are published
//! as gaps (`gaps.rs`; HLS2 §4.4.4.7 `EXT-X-GAP`, §4.4.4.9 `GAP=YES`), not followed by an
//! `EXT-X-DISCONTINUITY` (§4.4.4.3): with gaps the playlists keep advancing by a part per
//! part target and a segment per segment duration through the stall (§6.2.1), so blocking
//! reloads are answered instead of timing out into 503s, program date-times and media
//! timestamps stay one timeline (no re-sync), and the numbering is identical in every
//! rendition by construction. hls.js (1.5 on, measured with 1.7.4 in tests/timeline.rs)
//! does not load GAP segments or parts (non-fatal `fragGap`), stalls when its buffer reaches
//! the gap, and jumps over it once media after it is buffered: forward, never back. A
//! discontinuity would have frozen the playlists for the whole stall and made hls.js
//! re-sync timestamps at the next segment. Safari honours `EXT-X-GAP` (Apple's LL-HLS
//! spec defines it). Clients that do not know the tag (ffmpeg 5.1 is one) load gap
//! segments like any other: they hold the repeated frames and silence, so they decode.
//! A stall longer than `ice.media_timeout` ends the broadcast with `EXT-X-ENDLIST`.

mod align;
mod audio;
mod audio_cut;
mod bus;
mod describe;
mod elements;
mod fragments;
mod gaps;
mod graph;
mod ingest;
mod ladder;
mod launch_text;
mod lipsync;
mod mux;
mod pipeline;
mod rtp;
mod rung;
mod sender_reports;
mod sps;
mod stale;
#[cfg(test)]
mod test_support;
mod whole;

pub use rtp::h264_keyframe_start;
pub use sps::h264_sps_size;

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

pub use describe::{DescribeError, Ports, PrintOptions, print_pipelines};
pub use ladder::{Ladder, PlannedRung, Rung};
pub use pipeline::{FINISH_TIMEOUT, Pipeline};

/// The default ladder, embedded so `make run` needs no files.
pub const DEFAULT_LADDER: &str = include_str!("../../pipelines/ladder.toml");

/// Initialises GStreamer and registers the statically linked `cmafmux`.
pub fn init() -> Result<(), MediaError> {
    gstreamer::init().map_err(|e| MediaError::Init(e.to_string()))?;
    gstfmp4::plugin_register_static().map_err(|e| MediaError::Init(e.to_string()))?;
    gstlivesync::plugin_register_static().map_err(|e| MediaError::Init(e.to_string()))?;
    for factory in elements::REQUIRED_ELEMENTS {
        if gstreamer::ElementFactory::find(factory).is_none() {
            return Err(MediaError::Init(format!(
                "GStreamer element `{factory}` is missing: run deploy/install-deps.sh"
            )));
        }
    }
    Ok(())
}

/// The GStreamer version in use, for logs.
pub fn version() -> String {
    gstreamer::version_string().to_string()
}

/// One marshalled RTP packet (header + payload) and when it arrived from the network.
///
/// The arrival instant travels with the packet because the time it reaches the pipeline is
/// not its arrival: packets wait in the peer's queue while the pipeline is being built (and
/// audio may flow long before video). Stamped at push time, a backlog would enter the jitter
/// buffer as a burst of identical timestamps, which became AAC frames with shrinking and
/// repeated timestamps at the start of the broadcast.
#[derive(Debug, Clone)]
pub struct RtpPacket {
    /// When the packet was read from the transport.
    pub arrival: Instant,
    /// RTP timestamp (RFC 3550 §5.1), as the peer module parsed it.
    pub timestamp: u32,
    /// The payload, as the peer module parsed it (a view into `data`'s bytes or their own).
    pub payload: Bytes,
    /// The marshalled packet, what the pipeline's depayloaders read.
    pub data: Bytes,
}

/// An RTCP sender report (RFC 3550 §6.4.1): the publisher's wall clock (NTP format) at one
/// RTP timestamp of its stream. Audio and video carry different RTP clocks with random
/// offsets; these reports are the only thing that says which audio sample was captured with
/// which video frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    /// The stream's SSRC.
    pub ssrc: u32,
    /// Sender wall clock, 64-bit NTP format (seconds since 1900 . fraction).
    pub ntp: u64,
    /// The RTP timestamp of that instant.
    pub rtp: u32,
}

/// Video codecs accepted from publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264, any profile (the SPS is read by the decoder, the fmtp is not trusted).
    H264,
    /// VP8.
    Vp8,
    /// VP9.
    Vp9,
}

impl VideoCodec {
    /// Display name, as used in the API.
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H264",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
        }
    }
}

impl std::str::FromStr for VideoCodec {
    type Err = String;

    /// The display name, any case (`H264`, `vp8`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [VideoCodec::H264, VideoCodec::Vp8, VideoCodec::Vp9]
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("{s:?} is not H264, VP8 or VP9"))
    }
}

/// The negotiated video input.
#[derive(Debug, Clone, Copy)]
pub struct VideoInput {
    /// Codec.
    pub codec: VideoCodec,
    /// RTP payload type the packets carry.
    pub payload_type: u8,
}

/// The negotiated audio input (always Opus at 48 kHz).
#[derive(Debug, Clone, Copy)]
pub struct AudioInput {
    /// RTP payload type the packets carry.
    pub payload_type: u8,
}

/// Everything needed to build a stream's pipeline.
#[derive(Debug, Clone)]
pub struct MediaSpec {
    /// Stream name, for element names and logs.
    pub stream: String,
    /// Arrival of the first video packet: running time 0 of the pipeline, so every packet
    /// from then on has its true arrival as its timestamp.
    pub epoch: Instant,
    /// Video input.
    pub video: VideoInput,
    /// Audio input; `None` means a silent AAC track is generated (Safari needs audio).
    pub audio: Option<AudioInput>,
    /// Ladder in force.
    pub ladder: Ladder,
    /// The capture height the publisher declared (`?height=`), if any: the ladder is
    /// planned for it ([`Ladder::plan`]).
    pub height_hint: Option<u32>,
    /// Target segment duration (= cmafmux fragment duration = keyframe interval).
    pub segment_duration: Duration,
    /// LL-HLS part duration (= cmafmux chunk duration); `None`: whole fragments only.
    pub part_duration: Option<Duration>,
    /// H.264 simulcast (RFC 8853): `video` is the top layer, remuxed as a rendition of this
    /// name (the ladder's passthrough rung) and decoded for the ladder's transcoded rungs,
    /// if any (the `transcoded` ones); each of `layers` is remuxed as a rendition of its own.
    pub simulcast: Option<SimulcastInput>,
}

/// The simulcast layers of a [`MediaSpec`].
#[derive(Debug, Clone, PartialEq)]
pub struct SimulcastInput {
    /// The rendition the top layer becomes.
    pub top: String,
    /// The other layers, in the order [`Pipeline::push_layer`] numbers them.
    pub layers: Vec<LayerInput>,
    /// The ladder's rungs no layer covers, transcoded from the top layer: their segments
    /// are cut where the layers' are (align.rs), their keyframes put there.
    pub transcoded: Vec<Rung>,
}

/// One simulcast layer besides the top one.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerInput {
    /// The rendition it becomes.
    pub rendition: String,
    /// RTP payload type of its H.264.
    pub payload_type: u8,
}

impl MediaSpec {
    /// The name of the passthrough rendition: the top simulcast layer's, or `source`.
    pub(crate) fn source_rendition(&self) -> &str {
        self.simulcast
            .as_ref()
            .map_or(SOURCE_RENDITION, |s| s.top.as_str())
    }
}

/// What kind of rendition.
#[derive(Debug, Clone, PartialEq)]
pub enum RenditionKind {
    /// A video rung.
    Video {
        /// Coded width.
        width: u32,
        /// Coded height.
        height: u32,
        /// Frame rate.
        fps: f64,
    },
    /// The AAC rendition.
    Audio {
        /// Channels.
        channels: u32,
        /// Sample rate.
        rate: u32,
        /// BCP 47 language.
        language: String,
    },
}

/// Where a rendition comes from in the pipeline: its kind decides how it is cut and timed,
/// never its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The AAC rendition (from the publisher's Opus, or generated silence).
    Audio,
    /// The publisher's H.264, repackaged without transcoding (cut on its keyframes).
    Source,
    /// A transcoded ladder rung (cut on the configured grid).
    Rung,
}

impl Origin {
    /// Whether the rendition is video.
    pub fn is_video(self) -> bool {
        self != Origin::Audio
    }
}

/// The audio rendition's name (reserved in ladders).
pub const AUDIO_RENDITION: &str = "audio";
/// The passthrough rendition's name (reserved in ladders).
pub const SOURCE_RENDITION: &str = "source";

/// A rendition as negotiated: what the master playlist describes.
#[derive(Debug, Clone, PartialEq)]
pub struct RenditionInfo {
    /// Name, used in URLs (`720p`, `audio`, `source`).
    pub name: String,
    /// Video or audio and its parameters.
    pub kind: RenditionKind,
    /// RFC 6381 codec string from the negotiated caps, e.g. `avc1.64001f`, `mp4a.40.2`.
    pub codecs: String,
    /// Configured bitrate in bit/s (0 for passthrough: unknown until measured).
    pub bitrate: u64,
}

/// Something the pipeline produced or needs.
#[derive(Debug)]
pub enum MediaEvent {
    /// A rendition's init segment (`ftyp` + `moov`) and description.
    Init {
        /// The rendition.
        info: RenditionInfo,
        /// The init segment bytes.
        data: Bytes,
    },
    /// One CMAF fragment (= one HLS segment) or, with parts on, one CMAF chunk (= one
    /// LL-HLS part; the first chunk of a fragment starts the segment).
    Fragment {
        /// Rendition name.
        rendition: String,
        /// Where it comes from.
        origin: Origin,
        /// Starts a new segment (a fragment start, not a continuation chunk).
        starts_segment: bool,
        /// Whether the next chunk will start a segment, when the media layer knows (for
        /// the LL-HLS preload hint); `None`: assume the regular part count.
        next_starts_segment: Option<bool>,
        /// With `starts_segment`, a simulcast rendition's: the number of the segment
        /// boundary it begins, shared by every rendition (align.rs); `None` otherwise.
        segment: Option<u64>,
        /// Video: time from the arrival of the chunk's last frame to its output.
        lag: Option<Duration>,
        /// Running time of the fragment start.
        pts: Duration,
        /// Fragment duration.
        duration: Duration,
        /// Wall-clock time of the first sample, for `EXT-X-PROGRAM-DATE-TIME`.
        wallclock: SystemTime,
        /// Part of a segment that is a gap in every rendition (the publisher's video
        /// stalled; gaps.rs): its media is repeated frames or silence.
        gap: bool,
        /// The bytes.
        data: Bytes,
    },
    /// Every rendition this broadcast will have, known once the ladder is planned (before
    /// any of their init segments): the multivariant playlist lists all of them or none.
    Renditions(Vec<String>),
    /// Simulcast: the renditions' alignment troubles so far, when they changed (align.rs).
    Alignment(Vec<crate::simulcast::Alignment>),
    /// The decoder or depayloader lost sync: ask the publisher for a keyframe (PLI).
    KeyframeRequest,
    /// Every branch drained after end-of-stream.
    Eos,
    /// A fatal pipeline error; the stream must end.
    Error(MediaError),
}

/// Errors of the media layer.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// GStreamer or a required plugin is not usable.
    #[error("media init failed: {0}")]
    Init(String),
    /// An element could not be created, added or linked.
    #[error("cannot build pipeline: {what}")]
    Build {
        /// What was being built.
        what: String,
        /// GStreamer's reason.
        #[source]
        source: gstreamer::glib::BoolError,
    },
    /// Two pads could not be linked.
    #[error("cannot link {what}")]
    Link {
        /// Which pads.
        what: String,
        /// GStreamer's reason.
        #[source]
        source: gstreamer::PadLinkError,
    },
    /// Something the pipeline needs is not there (a pad, caps, the broadcast task).
    #[error("cannot build pipeline: {0}")]
    Missing(&'static str),
    /// A state change failed or timed out.
    #[error("pipeline state change to {state} failed")]
    State {
        /// The target state.
        state: &'static str,
        /// Why.
        #[source]
        source: StateError,
    },
    /// An element posted an error on the bus.
    #[error("element {element} failed: {message} ({debug})")]
    Element {
        /// Path of the element that failed.
        element: String,
        /// The error.
        message: String,
        /// GStreamer's debug string.
        debug: String,
    },
    /// RTP could not be pushed (pipeline flushing or gone).
    #[error("{element} refused data")]
    Flow {
        /// The source element.
        element: String,
        /// GStreamer's flow return.
        #[source]
        source: gstreamer::FlowError,
    },
}

/// Why a state change failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// An element refused it.
    #[error(transparent)]
    Refused(#[from] gstreamer::StateChangeError),
    /// The blocking task that ran it failed.
    #[error("state task failed")]
    Task(#[source] tokio::task::JoinError),
    /// It did not complete in time (a frozen element).
    #[error("timed out (pipeline frozen)")]
    TimedOut,
}
