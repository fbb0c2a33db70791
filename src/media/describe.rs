//! `whipcast print-pipelines`: the `gst-launch-1.0` description of the pipeline whipcast
//! builds for a source, read back from the elements the real builders make (graph.rs), in
//! link order, with every property that differs from its default. It cannot drift from what
//! whipcast runs; the parts gst-launch-1.0 cannot express get stand-ins, named in the
//! printed header.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;

use super::audio::{AUDIO_RTCP, AUDIO_SRC};
use super::graph;
use super::ingest::{VIDEO_RTCP, VIDEO_SRC};
use super::ladder::Ladder;
use super::launch_text::{caps_text, changed_properties, factory, shared_properties, text};
use super::{AudioInput, MediaError, MediaSpec, VideoInput};

/// Kernel receive buffer of the stand-in `udpsrc`s: a 720p keyframe arrives as a burst of
/// a few hundred packets, more than the default socket buffer (212 992 bytes,
/// `/proc/sys/net/core/rmem_default` on Debian 12) holds.
const UDP_BUFFER_BYTES: i32 = 4 * 1024 * 1024;

/// What `print-pipelines` describes: a source, the stream settings, and where the
/// stand-ins for the application's own ends (`appsrc`, `appsink`) read and write.
#[derive(Debug, Clone)]
pub struct PrintOptions {
    /// Width of the source's first frame (whipcast reads it from the decoder's caps).
    pub width: u32,
    /// Height of the source's first frame.
    pub height: u32,
    /// The publisher's declared capture height, as for [`Ladder::plan`].
    pub height_hint: Option<u32>,
    /// The video input.
    pub video: VideoInput,
    /// The audio input; `None`: the publisher sends none (whipcast generates silence).
    pub audio: Option<AudioInput>,
    /// Segment (= cmafmux fragment) duration.
    pub segment_duration: Duration,
    /// LL-HLS part (= cmafmux chunk) duration; `None`: whole fragments only.
    pub part_duration: Option<Duration>,
    /// Loopback UDP ports of the stand-ins for the RTP and RTCP `appsrc`s.
    pub ports: Ports,
    /// Where the stand-ins for the `appsink`s write `NAME.mp4`; `None`: `fakesink`.
    pub out_dir: Option<PathBuf>,
}

/// Loopback UDP ports the `udpsrc` stand-ins listen on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// Video RTP.
    pub video: u16,
    /// Video RTCP (sender reports).
    pub video_rtcp: u16,
    /// Audio RTP.
    pub audio: u16,
    /// Audio RTCP (sender reports).
    pub audio_rtcp: u16,
}

/// Why a pipeline could not be described.
#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The real builders failed.
    #[error("cannot build the pipeline to describe")]
    Build(#[from] MediaError),
    /// A stand-in element could not be made.
    #[error("cannot make the stand-in {factory} for {element}")]
    StandIn {
        /// The stand-in's factory.
        factory: &'static str,
        /// The element it replaces.
        element: String,
        /// GStreamer's reason.
        #[source]
        source: glib::BoolError,
    },
    /// A value has no form that survives gst-launch-1.0's parser and shell word splitting.
    #[error("{element}: {property} = {value:?} has no gst-launch-1.0 form")]
    Unprintable {
        /// The element.
        element: String,
        /// The property.
        property: String,
        /// What GStreamer serialises it to, if anything.
        value: String,
    },
    /// The pipeline has a shape this printer does not express.
    #[error("{element}: {what}")]
    Shape {
        /// The element.
        element: String,
        /// What is wrong.
        what: &'static str,
    },
}

/// Builds the pipeline whipcast would run for `opts` (ingest, audio, passthrough, and the
/// rungs [`Ladder::plan`] gives for the source size, exactly as `Pipeline::start` adds them
/// once the decoder reports that size) and prints it: `#` comment lines, then one
/// `gst-launch-1.0` chain per line, in link order. Needs [`super::init`].
pub fn print_pipelines(ladder: &Ladder, opts: &PrintOptions) -> Result<String, DescribeError> {
    let spec = MediaSpec {
        stream: "print".into(),
        epoch: Instant::now(),
        video: opts.video,
        audio: opts.audio,
        ladder: ladder.clone(),
        height_hint: opts.height_hint,
        segment_duration: opts.segment_duration,
        part_duration: opts.part_duration,
        simulcast: None,
    };
    let g = graph::build(&spec)?;
    let plan = match &g.ingest.raw_tee {
        Some(tee) => {
            let plan = ladder.plan(opts.width, opts.height, opts.height_hint);
            graph::add_rungs(&g.pipeline, tee, &plan, ladder, graph::timing(&spec), None)?;
            plan
        }
        None => Vec::new(),
    };
    let mut walker = Walker {
        opts,
        printed: HashSet::new(),
        lines: Vec::new(),
    };
    let children = walker.walk(&g.pipeline)?;
    let mut out = String::new();
    let rungs: Vec<String> = plan
        .iter()
        .map(|r| format!("{} {}x{} {}k", r.name, r.width, r.height, r.bitrate_kbps))
        .collect();
    let part = opts
        .part_duration
        .map_or("off".to_string(), |p| format!("{} ms", p.as_millis()));
    out.push_str(&format!(
        "# whipcast's pipeline for a {}x{} {} source{}: rungs [{}], segment {} ms, part {}\n",
        opts.width,
        opts.height,
        opts.video.codec.name(),
        if opts.audio.is_some() {
            " with Opus"
        } else {
            " without audio (AAC silence)"
        },
        rungs.join(", "),
        opts.segment_duration.as_millis(),
        part,
    ));
    out.push_str(
        "# Read back from the elements whipcast builds (src/media/graph.rs), in link order, each\n\
         # with the properties that differ from its defaults. Stand-ins for what gst-launch-1.0\n\
         # cannot express:\n",
    );
    if children.iter().any(|e| factory(e) == "appsrc") {
        out.push_str(
            "#   appsrc (RTP and RTCP from the WebRTC peer, stamped with their arrival time)\n\
             #     -> udpsrc on 127.0.0.1 (it stamps buffers on arrival too)\n",
        );
    }
    out.push_str(match &opts.out_dir {
        Some(_) => "#   appsink (fragments to the HLS store) -> filesink NAME.mp4\n",
        None => "#   appsink (fragments to the HLS store) -> fakesink\n",
    });
    out.push_str(
        "# Not expressible, left out: the pad probes (frame-grid snap after videorate, AAC\n\
         # priming shift, DTS = PTS before the passthrough muxer), cmafmux's\n\
         # split-at-running-time for a one-part first segment, the jitter buffers' ts-offset\n\
         # from sender reports, and running time 0 at the first packet's arrival.\n",
    );
    for line in &walker.lines {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

/// Where a chain starts: a source element, or a branch off an element already printed.
enum Start {
    Source(gst::Element),
    Branch(gst::Element, gst::Pad),
}

struct Walker<'a> {
    opts: &'a PrintOptions,
    /// Names of the elements printed so far.
    printed: HashSet<String>,
    /// One gst-launch-1.0 chain each.
    lines: Vec<String>,
}

impl Walker<'_> {
    /// Prints a chain from every source, in the order the builders added them, and checks
    /// that every element was reached. Returns the pipeline's elements.
    fn walk(&mut self, pipeline: &gst::Pipeline) -> Result<Vec<gst::Element>, DescribeError> {
        // A bin prepends each child it gets: reversed, `children` is in add order.
        let mut children = pipeline.children();
        children.reverse();
        for e in &children {
            if e.sink_pads().is_empty() {
                self.chain(Start::Source(e.clone()))?;
            }
        }
        if let Some(e) = children
            .iter()
            .find(|e| !self.printed.contains(e.name().as_str()))
        {
            return Err(DescribeError::Shape {
                element: e.name().to_string(),
                what: "not reachable from any source",
            });
        }
        Ok(children)
    }

    /// One chain: elements joined by `!` until one without a linked src pad, one already
    /// printed (linked to by `NAME.PAD`), or a tee (each of whose branches gets a chain of
    /// its own, printed right after this one).
    fn chain(&mut self, start: Start) -> Result<(), DescribeError> {
        let mut words: Vec<String> = Vec::new();
        let (mut current, mut entry) = match start {
            Start::Source(e) => (e, None),
            Start::Branch(from, pad) => {
                words.push(if factory(&from) == "tee" {
                    format!("{}.", from.name())
                } else {
                    format!("{}.{}", from.name(), pad.name())
                });
                words.push("!".into());
                let peer = peer_of(&from, &pad)?;
                (element_of(&peer)?, Some(peer))
            }
        };
        let mut branches = Vec::new();
        loop {
            let name = current.name().to_string();
            if self.printed.contains(&name) {
                let pad = entry.as_ref().ok_or(DescribeError::Shape {
                    element: name.clone(),
                    what: "a source printed twice",
                })?;
                words.push(format!("{name}.{}", pad.name()));
                break;
            }
            if let Some(pad) = &entry
                && current.sink_pads().len() > 1
                && pad.name() != "sink"
            {
                return Err(DescribeError::Shape {
                    element: name,
                    what: "first reached through a pad gst-launch-1.0 would not pick",
                });
            }
            words.push(self.element_text(&current)?);
            self.printed.insert(name);
            let linked: Vec<gst::Pad> = current
                .src_pads()
                .into_iter()
                .filter(|p| p.peer().is_some())
                .collect();
            if factory(&current) == "tee" || linked.len() > 1 {
                branches.extend(linked.into_iter().map(|p| (current.clone(), p)));
                break;
            }
            let Some(src) = linked.first() else {
                break;
            };
            let peer = peer_of(&current, src)?;
            words.push("!".into());
            current = element_of(&peer)?;
            entry = Some(peer);
        }
        self.lines.push(words.join(" "));
        for (from, pad) in branches {
            self.chain(Start::Branch(from, pad))?;
        }
        Ok(())
    }

    /// `factory name=NAME prop=value ...`, a caps filter as its caps, an appsrc or appsink as
    /// its stand-in.
    fn element_text(&self, e: &gst::Element) -> Result<String, DescribeError> {
        match factory(e).as_str() {
            "capsfilter" => {
                let caps = e.property::<Option<gst::Caps>>("caps");
                match caps {
                    Some(caps) if !caps.is_any() => caps_text(&caps, e, "caps"),
                    _ => Ok("capsfilter".into()),
                }
            }
            "appsrc" => self.source_stand_in(e),
            "appsink" => self.sink_stand_in(e),
            _ => text(e, changed_properties(e)),
        }
    }

    /// A `udpsrc` on the loopback port for this appsrc, with the appsrc's caps.
    fn source_stand_in(&self, e: &gst::Element) -> Result<String, DescribeError> {
        let ports = self.opts.ports;
        let port = match e.name().as_str() {
            VIDEO_SRC => ports.video,
            VIDEO_RTCP => ports.video_rtcp,
            AUDIO_SRC => ports.audio,
            AUDIO_RTCP => ports.audio_rtcp,
            _ => {
                return Err(DescribeError::Shape {
                    element: e.name().to_string(),
                    what: "an appsrc without a stand-in port",
                });
            }
        };
        let udp = gst::ElementFactory::make("udpsrc")
            .name(e.name())
            .build()
            .map_err(|source| DescribeError::StandIn {
                factory: "udpsrc",
                element: e.name().to_string(),
                source,
            })?;
        let mut set = vec![
            ("address".to_string(), "127.0.0.1".to_value()),
            ("port".to_string(), i32::from(port).to_value()),
            ("buffer-size".to_string(), UDP_BUFFER_BYTES.to_value()),
        ];
        set.extend(shared_properties(e, &udp));
        text(&udp, set)
    }

    /// A `filesink` writing `OUT_DIR/NAME.mp4` (NAME: the appsink's name without `_sink`),
    /// or a `fakesink`; either with the appsink's base-sink settings (`sync`).
    fn sink_stand_in(&self, e: &gst::Element) -> Result<String, DescribeError> {
        let name = e.name();
        let mut set = Vec::new();
        let factory = match &self.opts.out_dir {
            Some(dir) => {
                let file = format!("{}.mp4", name.strip_suffix("_sink").unwrap_or(&name));
                let location = dir.join(file).to_string_lossy().into_owned();
                set.push(("location".to_string(), location.to_value()));
                "filesink"
            }
            None => "fakesink",
        };
        let builder = gst::ElementFactory::make(factory);
        let sink =
            builder
                .name(name.as_str())
                .build()
                .map_err(|source| DescribeError::StandIn {
                    factory,
                    element: name.to_string(),
                    source,
                })?;
        set.extend(shared_properties(e, &sink));
        text(&sink, set)
    }
}

fn peer_of(e: &gst::Element, pad: &gst::Pad) -> Result<gst::Pad, DescribeError> {
    pad.peer().ok_or(DescribeError::Shape {
        element: e.name().to_string(),
        what: "a linked pad without a peer",
    })
}

fn element_of(pad: &gst::Pad) -> Result<gst::Element, DescribeError> {
    pad.parent_element().ok_or(DescribeError::Shape {
        element: pad.name().to_string(),
        what: "a pad outside any element",
    })
}
