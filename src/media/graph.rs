//! What a stream's pipeline is made of: which bins for a [`MediaSpec`] and how they connect.
//! `Pipeline::start` builds it and adds the rungs once the decoder knows the source size;
//! `print-pipelines` builds the very same, with the rungs planned for a given size.

use std::sync::Arc;
use std::time::Duration;

use gstreamer as gst;

use super::align::Align;
use super::audio::{self, AudioBranch};
use super::ingest::{self, VideoIngest};
use super::ladder::{Ladder, PlannedRung};
use super::mux::{Branch, MuxTiming};
use super::rung;
use super::{AUDIO_RENDITION, MediaError, MediaSpec, VideoCodec};

/// The longest a simulcast layer's keyframe waits for the other layers' (align.rs): a
/// layer the publisher paused shows frames again within livesync's 400 ms (its repeats).
const ALIGN_WAIT: Duration = Duration::from_millis(500);

/// A stream's pipeline before its ladder rungs: ingest, audio and the passthrough rung.
pub(crate) struct Graph {
    /// The pipeline every element was added to.
    pub pipeline: gst::Pipeline,
    /// The video ingest bin.
    pub ingest: VideoIngest,
    /// The audio bin.
    pub audio: AudioBranch,
    /// The passthrough rung, for H.264 when the ladder enables it.
    pub source: Option<Branch>,
    /// The simulcast layers besides the top one, each with its passthrough rung, in
    /// [`SimulcastInput::layers`](super::SimulcastInput) order.
    pub layers: Vec<(ingest::LayerIngest, Branch)>,
    /// Simulcast (H.264): the keyframe alignment of the layers and the rungs transcoded
    /// from the top one.
    pub align: Option<Arc<Align>>,
}

/// The muxer timing of `spec`'s renditions.
pub(crate) fn timing(spec: &MediaSpec) -> MuxTiming {
    MuxTiming {
        segment: spec.segment_duration,
        part: spec.part_duration,
    }
}

/// Builds everything of `spec`'s pipeline that does not depend on the source size.
pub(crate) fn build(spec: &MediaSpec) -> Result<Graph, MediaError> {
    let timing = timing(spec);
    let pipeline = gst::Pipeline::with_name(&format!("stream-{}", spec.stream));
    let ingest = ingest::video_ingest(
        &pipeline,
        spec.video,
        &spec.ladder,
        spec.simulcast.is_some(),
    )?;
    let audio = audio::audio(
        &pipeline,
        spec.audio.map(|a| a.payload_type),
        &spec.ladder,
        timing,
    )?;
    // Simulcast: the layers' segments are cut only where every layer has a keyframe.
    let align = spec.simulcast.as_ref().map(|s| {
        let mut names = vec![s.top.clone()];
        names.extend(s.layers.iter().map(|l| l.rendition.clone()));
        // Most of a frame: the same picture's keyframes are milliseconds apart on an idle
        // machine (measured: at most 4 ms) and more under load, the next picture's a whole
        // frame later.
        let frame = Duration::from_secs(1) / spec.ladder.video.fps.max(1);
        let derived = s.transcoded.iter().map(|r| r.name.clone()).collect();
        Align::new(names, derived, frame * 3 / 4, ALIGN_WAIT, timing)
    });
    let frame_interval = gst::ClockTime::SECOND / u64::from(spec.ladder.video.fps.max(1));
    let source = match &ingest.h264_tee {
        Some(tee) => Some(rung::source_rung(
            &pipeline,
            tee,
            timing,
            "source",
            align.as_ref().map(|a| (a, 0)),
            frame_interval,
        )?),
        None => None,
    };
    let mut layers = Vec::new();
    for (i, layer) in spec.simulcast.iter().flat_map(|s| &s.layers).enumerate() {
        let prefix = format!("layer{}", i + 1);
        let input = ingest::layer_ingest(&pipeline, &prefix, layer.payload_type)?;
        let branch = rung::source_rung(
            &pipeline,
            &input.tee,
            timing,
            &prefix,
            align.as_ref().map(|a| (a, i + 1)),
            frame_interval,
        )?;
        layers.push((input, branch));
    }
    Ok(Graph {
        pipeline,
        ingest,
        audio,
        source,
        layers,
        align,
    })
}

/// Adds one transcoded rung per planned rendition, each from a new request pad of the raw
/// video `tee`; the branches come back in `plan` order. With `align` (simulcast), a rung
/// it knows cuts its segments where the layers cut theirs.
pub(crate) fn add_rungs(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    plan: &[PlannedRung],
    ladder: &Ladder,
    timing: MuxTiming,
    align: Option<&Arc<Align>>,
) -> Result<Vec<Branch>, MediaError> {
    plan.iter()
        .map(|r| {
            let aligned = align.and_then(|a| a.index_of(&r.name).map(|i| (a, i)));
            rung::video_rung(pipeline, tee, r, ladder, timing, aligned)
        })
        .collect()
}

/// The renditions that do not depend on the source size: audio, the passthrough rung for
/// H.264 when it is on, and the other simulcast layers.
pub(crate) fn fixed_renditions(spec: &MediaSpec) -> Vec<String> {
    let mut names = vec![AUDIO_RENDITION.to_string()];
    if spec.video.codec == VideoCodec::H264 && spec.ladder.source.enabled {
        names.push(spec.source_rendition().to_string());
    }
    if let Some(s) = &spec.simulcast {
        names.extend(s.layers.iter().map(|l| l.rendition.clone()));
    }
    names
}
