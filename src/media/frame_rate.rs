//! Constant frame rate without look-ahead: every decoded frame leaves at once, stamped with
//! the slot of the output grid nearest to it; an empty slot is filled with a copy of the
//! frame before it when the next frame comes; a second frame for a slot already filled is
//! dropped.
//!
//! Why not `videorate`: it holds each frame until the next one arrives, to choose the frame
//! nearest each output slot, and that wait is on every transcoded rung's path. Measured
//! (benches/latency.sh, default ladder, 720p30 x264 publisher, 30 s, no browser): server lag
//! p50 93 ms with `videorate`, 33 ms with `videorate drop-only=true` (which pushes at once
//! but never fills a slot, so a 25 fps publisher leaves holes and parts run over
//! PART-TARGET). Choosing the slot by rounding instead of by comparison costs at most half a
//! frame interval of timing error on a frame, which the encoder never sees as anything but
//! a constant rate.
//!
//! The grid starts at PTS 0, which is running time 0 here (the ingest chain's segment starts
//! at 0 at the first video packet, `MediaSpec::epoch`), and never re-bases: slot `n` is at `n · 10⁹ · den / num` ns, truncated, whatever caps come (a
//! publisher changing resolution). So six frames at 30 fps make exactly 200 ms wherever a
//! part starts, and cmafmux cuts every part on the frame due at its end (RFC 8216bis
//! §4.4.4.9: no part above PART-TARGET). (`videorate` re-based on each caps change and then
//! stamped some frames 1 ns before the grid, which needed a correcting probe.)
//!
//! Across a caps change (a new size) the slots before the first frame of the new caps are
//! filled with copies of that frame, not of the last one of the old caps (which would carry
//! the old size under the new caps). A hole of more than a second of slots after the first
//! frame is left as it is: `livesync` upstream fills a stall on the clock while it lasts
//! (elements.rs), so such a hole is a timestamp jump, not missing frames. A frame without a
//! timestamp is dropped (cmafmux ends the broadcast on an untimed buffer).
//!
//! `skip-to-first` as in `videorate`: `false` fills the slots from 0 up to the first frame
//! with copies of it, however far; `true` starts at the first frame's slot (simulcast:
//! ingest.rs).

use std::sync::Mutex;

use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_base as gst_base;
use gstreamer_base::subclass::prelude::*;

/// The output grid: `num / den` frames per second from running time 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grid {
    num: u64,
    den: u64,
}

impl Grid {
    /// `None` for a rate that is not a positive fraction.
    pub(crate) fn new(num: i32, den: i32) -> Option<Self> {
        let (num, den) = (u64::try_from(num).ok()?, u64::try_from(den).ok()?);
        (num > 0 && den > 0).then_some(Self { num, den })
    }

    /// Slot `n`: its timestamp and duration (ns).
    pub(crate) fn slot(self, n: u64) -> (u64, u64) {
        let at = |n: u64| {
            let ns = u128::from(n) * 1_000_000_000 * u128::from(self.den) / u128::from(self.num);
            u64::try_from(ns).unwrap_or(u64::MAX)
        };
        (at(n), at(n + 1).saturating_sub(at(n)))
    }

    /// The number of the slot nearest to `ns`.
    pub(crate) fn nearest(self, ns: u64) -> u64 {
        let scaled = u128::from(ns) * u128::from(self.num);
        let unit = 1_000_000_000 * u128::from(self.den);
        u64::try_from((scaled + unit / 2) / unit).unwrap_or(u64::MAX)
    }

    /// Slots in one second (at least one).
    fn per_second(self) -> u64 {
        (self.num / self.den).max(1)
    }
}

/// What to do with a frame whose nearest slot is `slot`, given the next free slot (`None`
/// before the first frame) and whether the previous frame may be copied.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// The slot is taken: drop the frame.
    Drop,
    /// Fill `fill` (copies of the previous frame, or of this one before the first), then
    /// stamp this frame with `slot`.
    At {
        fill: std::ops::Range<u64>,
        slot: u64,
    },
}

/// Decides where a frame goes, given the next free slot (`None` before the first frame);
/// pure.
pub(crate) fn place(grid: Grid, next: Option<u64>, slot: u64, skip_to_first: bool) -> Place {
    let fill_from = match next {
        Some(next) if slot < next => return Place::Drop,
        // A hole longer than a second is a timestamp jump, not dropped frames: left as it is.
        Some(next) if slot - next > grid.per_second() => slot,
        Some(next) => next,
        None if skip_to_first => slot,
        None => 0,
    };
    Place::At {
        fill: fill_from..slot,
        slot,
    }
}

mod imp {
    use super::*;

    #[derive(Debug, Default)]
    struct State {
        grid: Option<Grid>,
        /// The next free slot.
        next: Option<u64>,
        /// The last frame pushed, for the copies; `None` after a caps change (the next frame
        /// fills the slots before it with itself).
        last: Option<gst::Buffer>,
        /// Buffers to push, in order (filled and emptied within one input buffer's push).
        out: std::collections::VecDeque<gst::Buffer>,
    }

    #[derive(Debug, Default)]
    pub struct FrameRate {
        state: Mutex<State>,
        skip_to_first: Mutex<bool>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for FrameRate {
        const NAME: &'static str = "WhipcastFrameRate";
        type Type = super::FrameRate;
        type ParentType = gst_base::BaseTransform;
    }

    impl ObjectImpl for FrameRate {
        fn properties() -> &'static [glib::ParamSpec] {
            static PROPERTIES: std::sync::OnceLock<Vec<glib::ParamSpec>> =
                std::sync::OnceLock::new();
            PROPERTIES.get_or_init(|| {
                // Named as videorate's, so print-pipelines prints it for its stand-in.
                vec![
                    glib::ParamSpecBoolean::builder("skip-to-first")
                        .nick("Skip to first")
                        .blurb("Start at the first frame's slot, not at running time 0")
                        .build(),
                ]
            })
        }

        fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
            if pspec.name() == "skip-to-first"
                && let (Ok(v), Ok(mut s)) = (value.get::<bool>(), self.skip_to_first.lock())
            {
                *s = v;
            }
        }

        fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
            match pspec.name() {
                "skip-to-first" => self
                    .skip_to_first
                    .lock()
                    .map(|s| *s)
                    .unwrap_or(false)
                    .to_value(),
                _ => pspec.default_value().clone(),
            }
        }
    }

    impl GstObjectImpl for FrameRate {}

    impl ElementImpl for FrameRate {
        fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
            static META: std::sync::OnceLock<gst::subclass::ElementMetadata> =
                std::sync::OnceLock::new();
            Some(META.get_or_init(|| {
                gst::subclass::ElementMetadata::new(
                    "whipcast frame rate",
                    "Filter/Effect/Video",
                    "Constant frame rate without look-ahead",
                    "whipcast",
                )
            }))
        }

        fn pad_templates() -> &'static [gst::PadTemplate] {
            static TEMPLATES: std::sync::OnceLock<Vec<gst::PadTemplate>> =
                std::sync::OnceLock::new();
            TEMPLATES.get_or_init(|| {
                let caps = gst::Caps::builder("video/x-raw").build();
                [gst::PadDirection::Src, gst::PadDirection::Sink]
                    .into_iter()
                    .filter_map(|dir| {
                        let name = if dir == gst::PadDirection::Src {
                            "src"
                        } else {
                            "sink"
                        };
                        gst::PadTemplate::new(name, dir, gst::PadPresence::Always, &caps).ok()
                    })
                    .collect()
            })
        }
    }

    impl BaseTransformImpl for FrameRate {
        const MODE: gst_base::subclass::BaseTransformMode =
            gst_base::subclass::BaseTransformMode::AlwaysInPlace;
        const PASSTHROUGH_ON_SAME_CAPS: bool = false;
        const TRANSFORM_IP_ON_PASSTHROUGH: bool = true;

        /// Any frame rate in, any out: only `framerate` differs between the sides.
        fn transform_caps(
            &self,
            _direction: gst::PadDirection,
            caps: &gst::Caps,
            filter: Option<&gst::Caps>,
        ) -> Option<gst::Caps> {
            let mut out = caps.clone();
            for s in out.make_mut().iter_mut() {
                s.set(
                    "framerate",
                    gst::FractionRange::new(
                        gst::Fraction::new(0, 1),
                        gst::Fraction::new(i32::MAX, 1),
                    ),
                );
            }
            Some(match filter {
                Some(f) => f.intersect_with_mode(&out, gst::CapsIntersectMode::First),
                None => out,
            })
        }

        fn set_caps(
            &self,
            _incaps: &gst::Caps,
            outcaps: &gst::Caps,
        ) -> Result<(), gst::LoggableError> {
            let grid = outcaps
                .structure(0)
                .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
                .and_then(|f| Grid::new(f.numer(), f.denom()));
            let mut state = self
                .state
                .lock()
                .map_err(|_| gst::loggable_error!(gst::CAT_RUST, "state lock poisoned"))?;
            if state.grid != grid {
                state.next = None;
            }
            state.grid = grid;
            // A copy of the last frame would carry the old caps' size.
            state.last = None;
            state.out.clear();
            Ok(())
        }

        fn start(&self) -> Result<(), gst::ErrorMessage> {
            self.reset();
            Ok(())
        }

        /// Also lets go of the last frame (a decoder's buffer) while stopped.
        fn stop(&self) -> Result<(), gst::ErrorMessage> {
            self.reset();
            Ok(())
        }

        fn sink_event(&self, event: gst::Event) -> bool {
            if let gst::EventView::FlushStop(_) = event.view() {
                self.reset();
            }
            self.parent_sink_event(event)
        }

        /// Places the frame and queues it, after the copies that fill the slots before it;
        /// [`Self::generate_output`] hands them to the base class one by one. The base
        /// class's own submit runs first (reconfiguration, not-negotiated, QoS) and queues
        /// the buffer, taken back here.
        fn submit_input_buffer(
            &self,
            is_discont: bool,
            buf: gst::Buffer,
        ) -> Result<gst::FlowSuccess, gst::FlowError> {
            self.parent_submit_input_buffer(is_discont, buf)?;
            let Some(mut buf) = self.take_queued_buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let skip_to_first = self.skip_to_first.lock().map(|s| *s).unwrap_or(false);
            let mut state = self.state.lock().map_err(|_| gst::FlowError::Error)?;
            // What a failed push left: not for after this frame.
            state.out.clear();
            let Some(grid) = state.grid else {
                // No constant rate asked for: as it is.
                state.out.push_back(buf);
                return Ok(gst::FlowSuccess::Ok);
            };
            let Some(pts) = buf.pts() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let slot = grid.nearest(pts.nseconds());
            let (fill, slot) = match place(grid, state.next, slot, skip_to_first) {
                Place::Drop => return Ok(gst::FlowSuccess::Ok),
                Place::At { fill, slot } => (fill, slot),
            };
            let (at, duration) = grid.slot(slot);
            {
                let b = buf.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(at));
                b.set_duration(gst::ClockTime::from_nseconds(duration));
            }
            // Copies of the previous frame; the first frame, and the first after a caps
            // change, fill the slots before them with themselves. A discontinuity starts at
            // the first buffer out.
            let discont = !fill.is_empty() && buf.flags().contains(gst::BufferFlags::DISCONT);
            if discont {
                buf.make_mut().unset_flags(gst::BufferFlags::DISCONT);
            }
            let model = state.last.take().unwrap_or_else(|| buf.clone());
            for n in fill {
                let mut c = model.copy();
                let (at, duration) = grid.slot(n);
                let b = c.make_mut();
                b.set_pts(gst::ClockTime::from_nseconds(at));
                b.set_duration(gst::ClockTime::from_nseconds(duration));
                if discont && state.out.is_empty() {
                    b.set_flags(gst::BufferFlags::DISCONT);
                } else {
                    b.unset_flags(gst::BufferFlags::DISCONT);
                }
                state.out.push_back(c);
            }
            state.next = Some(slot + 1);
            state.last = Some(buf.clone());
            state.out.push_back(buf);
            Ok(gst::FlowSuccess::Ok)
        }

        /// The next queued buffer; the base class asks again until there is none (all
        /// within the push of one input buffer).
        fn generate_output(
            &self,
        ) -> Result<gst_base::subclass::base_transform::GenerateOutputSuccess, gst::FlowError>
        {
            use gst_base::subclass::base_transform::GenerateOutputSuccess;
            let mut state = self.state.lock().map_err(|_| gst::FlowError::Error)?;
            Ok(match state.out.pop_front() {
                Some(buf) => GenerateOutputSuccess::Buffer(buf),
                None => GenerateOutputSuccess::NoOutput,
            })
        }
    }

    impl FrameRate {
        fn reset(&self) {
            if let Ok(mut state) = self.state.lock() {
                let grid = state.grid;
                *state = State {
                    grid,
                    ..State::default()
                };
            }
        }
    }
}

glib::wrapper! {
    /// See the module documentation.
    pub struct FrameRate(ObjectSubclass<imp::FrameRate>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

impl FrameRate {
    /// A new element named `name`, its output rate taken from the caps downstream.
    pub(crate) fn element(name: &str, skip_to_first: bool) -> gst::Element {
        glib::Object::builder::<Self>()
            .property("name", name)
            .property("skip-to-first", skip_to_first)
            .build()
            .upcast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPS30: Grid = Grid { num: 30, den: 1 };

    #[test]
    fn slots_are_on_one_grid_from_zero() {
        assert_eq!(FPS30.slot(0), (0, 33_333_333));
        assert_eq!(FPS30.slot(1), (33_333_333, 33_333_333));
        assert_eq!(FPS30.slot(2), (66_666_666, 33_333_334));
        assert_eq!(FPS30.nearest(19_999_999_999), 600);
        assert_eq!(FPS30.nearest(66_666_667), 2);
        assert_eq!(FPS30.nearest(16_666_666), 0);
        assert_eq!(FPS30.nearest(16_666_667), 1);
        let ntsc = Grid::new(30_000, 1001).expect("grid");
        assert_eq!(ntsc.slot(1), (33_366_666, 33_366_667));
        assert_eq!(Grid::new(0, 1), None);
        assert_eq!(Grid::new(30, 0), None);
        // Six frames make a 200 ms part exactly, wherever the part starts.
        for start in [0u64, 474, 600, 601, 602] {
            assert_eq!(
                FPS30.slot(start + 6).0 - FPS30.slot(start).0,
                200_000_000,
                "from frame {start}"
            );
        }
    }

    #[test]
    fn frames_are_placed_dropped_or_preceded_by_copies() {
        let at = |fill: std::ops::Range<u64>, slot| Place::At { fill, slot };
        // The first frame: from 0 however far (as videorate), or from itself.
        assert_eq!(place(FPS30, None, 3, false), at(0..3, 3));
        assert_eq!(place(FPS30, None, 90, false), at(0..90, 90));
        assert_eq!(place(FPS30, None, 3, true), at(3..3, 3));
        // In step; a slot taken; a hole of one frame filled.
        assert_eq!(place(FPS30, Some(4), 4, false), at(4..4, 4));
        assert_eq!(place(FPS30, Some(5), 4, false), Place::Drop);
        assert_eq!(place(FPS30, Some(5), 7, false), at(5..7, 7));
        // Not over a jump of more than a second.
        assert_eq!(place(FPS30, Some(5), 35, false), at(5..35, 35));
        assert_eq!(place(FPS30, Some(5), 36, false), at(36..36, 36));
    }

    /// Runs `frames` (timestamp, `u64::MAX` for none; width) through the element into 30 fps
    /// caps; returns the output's (timestamp, duration, width).
    fn run(frames: &[(u64, i32)], skip_to_first: bool) -> Vec<(u64, u64, i32)> {
        use gstreamer_app as gst_app;
        use gstreamer_video as gst_video;
        crate::media::test_support::init();
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder().format(gst::Format::Time).build();
        let rate = FrameRate::element("rate", skip_to_first);
        let caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .build()
            .expect("capsfilter");
        let sink = gst_app::AppSink::builder().sync(false).build();
        let chain = [src.upcast_ref(), &rate, &caps, sink.upcast_ref()];
        pipeline.add_many(chain).expect("add");
        gst::Element::link_many(chain).expect("link");
        pipeline.set_state(gst::State::Playing).expect("play");
        for &(pts, w) in frames {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w as u32, 36)
                .build()
                .expect("info");
            src.set_caps(Some(&info.to_caps().expect("caps")));
            let mut buffer = gst::Buffer::with_size(info.size()).expect("buffer");
            {
                let b = buffer.get_mut().expect("writable");
                if pts != u64::MAX {
                    b.set_pts(gst::ClockTime::from_nseconds(pts));
                }
                let data = &mut b.map_writable().expect("map");
                data[0] = (w % 256) as u8;
            }
            src.push_buffer(buffer).expect("push");
        }
        src.end_of_stream().expect("eos");
        let mut out = Vec::new();
        while let Ok(sample) = sink.pull_sample() {
            let b = sample.buffer().expect("buffer");
            let w = sample
                .caps()
                .and_then(|c| c.structure(0))
                .and_then(|s| s.get::<i32>("width").ok())
                .expect("width");
            let first = b.map_readable().expect("map")[0];
            assert_eq!(
                i32::from(first),
                w % 256,
                "a frame under another size's caps"
            );
            out.push((
                b.pts().expect("pts").nseconds(),
                b.duration().expect("duration").nseconds(),
                w,
            ));
        }
        pipeline.set_state(gst::State::Null).expect("stop");
        out
    }

    fn assert_contiguous_on_grid(out: &[(u64, u64, i32)]) {
        for &(pts, duration, _) in out {
            let n = FPS30.nearest(pts);
            assert_eq!(FPS30.slot(n), (pts, duration), "off the grid: {out:?}");
        }
        for w in out.windows(2) {
            assert_eq!(w[0].0 + w[0].1, w[1].0, "not contiguous: {w:?}");
        }
    }

    /// Network-timed frames whose size changes every 10 frames (as a browser's encoder
    /// does): every frame out, each on the one grid (`videorate` re-based at each caps
    /// change and put some 1 ns early, GStreamer 1.22).
    #[test]
    fn jittered_frames_across_size_changes_stay_on_the_grid() {
        let frames: Vec<(u64, i32)> = (0u64..120)
            .map(|i| {
                let jitter = (i * 7_919_000) % 9_000_000;
                (
                    i * 33_333_333 + jitter,
                    if (i / 10) % 2 == 0 { 64 } else { 96 },
                )
            })
            .collect();
        let out = run(&frames, false);
        assert_eq!(out.len(), 120, "{out:?}");
        assert_contiguous_on_grid(&out);
    }

    /// 25 fps in: every sixth slot is a copy of the frame before; 60 fps in: every other
    /// frame dropped. Both end up 30 fps on the grid.
    #[test]
    fn other_rates_are_filled_or_thinned_to_a_constant_rate() {
        let at25: Vec<(u64, i32)> = (0u64..50).map(|i| (i * 40_000_000, 64)).collect();
        let out = run(&at25, false);
        assert_contiguous_on_grid(&out);
        assert_eq!(
            out.len(),
            60,
            "slots 0..=59 (1.96 s is nearest 1.967): {out:?}"
        );
        let at60: Vec<(u64, i32)> = (0u64..120).map(|i| (i * 16_666_667 + 1, 64)).collect();
        let out = run(&at60, false);
        assert_contiguous_on_grid(&out);
        // The last frame, 1.983 s, is nearest slot 60: 61 of 120 frames.
        assert_eq!(out.len(), 61, "{out:?}");
    }

    /// An untimed frame (a decoder may leave one so) is dropped: cmafmux would end the
    /// broadcast on it.
    #[test]
    fn a_frame_without_a_timestamp_is_dropped() {
        let out = run(&[(0, 64), (u64::MAX, 64), (33_333_333, 64)], false);
        assert_contiguous_on_grid(&out);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    /// The first frame at 100 ms: from 0 with copies of it, or from its slot.
    #[test]
    fn the_first_frame_fills_from_zero_unless_skipping_to_it() {
        let frames = [(100_000_000u64, 64), (133_333_333, 64)];
        let out = run(&frames, false);
        assert_contiguous_on_grid(&out);
        assert_eq!(out.first().map(|f| f.0), Some(0));
        assert_eq!(out.len(), 5);
        let out = run(&frames, true);
        assert_eq!(
            out.iter().map(|f| f.0).collect::<Vec<_>>(),
            [100_000_000, 133_333_333]
        );
    }

    /// A hole at a size change is filled with the new size's first frame, never with the old
    /// size under the new caps (`run` checks every frame's content against its caps); a hole
    /// within one size with the frame before.
    #[test]
    fn a_hole_at_a_size_change_is_filled_with_the_new_size() {
        let frames = [
            (0u64, 64),
            (33_333_333, 64),
            (133_333_333, 96),
            (233_333_333, 96),
        ];
        let out = run(&frames, false);
        let slots: Vec<(u64, i32)> = out.iter().map(|f| (FPS30.nearest(f.0), f.2)).collect();
        assert_eq!(
            slots,
            [
                (0, 64),
                (1, 64),
                (2, 96),
                (3, 96),
                (4, 96),
                (5, 96),
                (6, 96),
                (7, 96)
            ]
        );
    }

    /// The point of the element: a frame leaves before the next one arrives (`videorate`
    /// holds it until then).
    #[test]
    fn a_frame_leaves_before_the_next_arrives() {
        use gstreamer_app as gst_app;
        crate::media::test_support::init();
        let pipeline = gst::Pipeline::new();
        let src = gst_app::AppSrc::builder()
            .format(gst::Format::Time)
            .caps(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "I420")
                    .field("width", 16i32)
                    .field("height", 16i32)
                    .field("framerate", gst::Fraction::new(0, 1))
                    .build(),
            )
            .build();
        let rate = FrameRate::element("rate", false);
        let caps = gst::ElementFactory::make("capsfilter")
            .property(
                "caps",
                gst::Caps::builder("video/x-raw")
                    .field("framerate", gst::Fraction::new(30, 1))
                    .build(),
            )
            .build()
            .expect("capsfilter");
        let sink = gst_app::AppSink::builder().sync(false).build();
        let chain = [src.upcast_ref(), &rate, &caps, sink.upcast_ref()];
        pipeline.add_many(chain).expect("add");
        gst::Element::link_many(chain).expect("link");
        pipeline.set_state(gst::State::Playing).expect("play");
        for i in 0u64..3 {
            let mut buffer = gst::Buffer::with_size(16 * 16 * 3 / 2).expect("buffer");
            buffer
                .get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_nseconds(i * 33_333_333 + 2_000_000));
            src.push_buffer(buffer).expect("push");
            let sample = sink
                .try_pull_sample(gst::ClockTime::from_seconds(5))
                .unwrap_or_else(|| panic!("frame {i} held back"));
            let out = sample.buffer().expect("buffer");
            assert_eq!(out.pts().map(|p| p.nseconds()), Some(FPS30.slot(i).0));
        }
        pipeline.set_state(gst::State::Null).expect("stop");
    }
}
