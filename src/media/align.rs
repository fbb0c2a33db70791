//! Segment boundaries common to every simulcast layer: a layer's keyframe is a place to cut
//! a segment only if every other layer has a keyframe at the same instant.
//!
//! Why: a muxer cuts a segment at a keyframe, and an ABR switch needs segment N to start
//! at the same instant in every rendition (HLS2 §6.2.4). Which common keyframes begin a
//! segment is decided here too, once for all renditions ([`Cuts`]); every other keyframe
//! reaches its muxer as a delta frame. Keyframes are asked of all layers at once, and
//! usually come on the same picture, but not always: Chromium drops a PLI that comes
//! within 300 ms of the previous one for that layer, and asks its encoder for a keyframe
//! on one layer only when that layer alone lost packets (measured: segment 25 of one
//! rendition started 0.19 s before the other two's). A keyframe the others lack is handed
//! to its muxer as a delta frame (the picture is still an IDR, which any decoder decodes),
//! so no muxer can cut there; the next keyframe common to all is the boundary in every
//! rendition.
//!
//! The layers' frames pass on different streaming threads, a few milliseconds apart. A
//! keyframe is held (its thread waits) until every other layer has shown either a keyframe
//! within the tolerance of it or a frame past it, or until the wait has passed (a layer
//! that shows nothing that long counts as absent until it shows a frame again). Only
//! keyframes wait; about one frame interval.
//!
//! The layers' timestamps come from their own jitter buffers (each maps its RTP clock onto
//! its first packets' arrival), so the same picture's frames differ by the layers' arrival
//! skew: a few milliseconds on an idle machine (measured: 3.8 ms at most), tens of
//! milliseconds on a loaded one (a 720p keyframe is paced out over longer than a 180p
//! one). So the layers' timelines are first put together: every layer starts at the
//! keyframe answering the same request (broadcast.rs), each layer's first keyframe waits
//! for the others' first, and every later timestamp of a layer is moved by the distance
//! between its first keyframe and the top layer's, when that distance is within the
//! tolerance (farther, the first keyframes were different pictures: not moved). Aligning
//! the timelines by the layers' RTCP sender reports, as audio and video are, would not
//! depend on the first keyframes; not done yet. A layer whose keyframes are judged alone
//! [`MAX_ALONE`] times in a row keeps its next one (a segment cut there may be misaligned,
//! but a layer whose timeline drifted past the tolerance would otherwise never be cut
//! again); it is logged.
//!
//! A layer the publisher paused (a browser's encoder drops a layer under congestion) keeps
//! its rendition on the clock with repeats of its last keyframe (rung.rs
//! `repeat_keyframes`), one per frame interval, each marked as a repeat ([`REPEAT`]).
//! Those are keyframes on every frame: a repeat is kept as a keyframe only at an instant
//! common to every layer, and never counts towards [`MAX_ALONE`] (measured before: four
//! repeats in 133 ms were "alone", the fifth was cut anyway, and the paused layer's
//! segment 6 started 0.665 s before the others'; tests/simulcast_layer_pause.rs).
//!
//! A participant whose first keyframe comes after the second boundary (a layer whose first
//! keyframes lost their first slices to packet loss and were kept out, whole.rs; OBS loses
//! its first packets) starts like a paused one comes back: its keyframes are judged as
//! any, so its rendition begins at a boundary, and its first segment takes that boundary's
//! number ([`Align::boundary_number`]), not 0 (measured before: the late top layer's, and
//! the rung transcoded from it, segment N began two seconds after the other layers'
//! segment N, tests/obs_shaped.rs).
//!
//! The ladder's rungs no layer covers are transcoded from the top layer (simulcast.rs
//! `uncovered`) and take part as *derived* participants: their encoder's keyframes are put
//! where the layers' are ([`Align::force_keys`]: the decoded frame nearest a layer's
//! keyframe is forced to be one), and are kept only where common to every participant. A
//! derived rung's timeline is the top layer's (it is decoded from it, on the frame grid,
//! at most half a frame from the layers' instants), so it is never shifted, and since its
//! keyframes follow the layers' it is never cut alone either ([`MAX_ALONE`] is for
//! publisher timelines that drifted apart). The layers' keyframes are recorded before the
//! decoded frame of the same picture reaches the forcing (the decoder path holds a frame or
//! more: the decoder, videorate), so none is missed on an idle machine; a keyframe missed
//! on a loaded one is a boundary none of the renditions cuts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use tracing::{debug, info, warn};

use super::elements::running_time;
use super::mux::MuxTiming;

/// Keyframes remembered per layer (a few seconds' worth of requested keyframes).
const KEYS_KEPT: usize = 16;

/// Keyframes of one layer judged alone in a row before the next one is kept anyway.
const MAX_ALONE: u32 = 4;

/// How a livesync repeat of a keyframe is marked on its way to the muxer (rung.rs
/// `repeat_keyframes`): `DROPPABLE` on a buffer without `DELTA_UNIT`. No encoder marks a
/// keyframe droppable (an IDR is always a reference picture), and fmp4mux only reads the
/// flag together with `GAP`, which the repeats no longer carry (elements.rs
/// `unflag_repeats`).
pub(crate) const REPEAT: gst::BufferFlags = gst::BufferFlags::DROPPABLE;

/// What one layer has shown, in running time (ns).
#[derive(Debug, Default)]
struct Layer {
    latest: Option<u64>,
    /// Its keyframes: running time and, for a repeat, the frame interval it fills (it
    /// stands for every instant since the previous repeat: see [`near`]).
    keys: VecDeque<(u64, u64)>,
    absent: bool,
    /// Its keyframes judged alone in a row.
    alone: u32,
    /// Running time of its first keyframe, as its jitter buffer stamped it.
    first: Option<u64>,
    /// What is taken off every timestamp of the layer (ns): its first keyframe's distance
    /// from the top layer's.
    shift: i64,
    /// A rung transcoded from the top layer, not a publisher's layer.
    derived: bool,
    /// Its keyframes kept although alone ([`MAX_ALONE`]).
    cut_alone: u64,
    /// Times it was marked absent.
    absent_times: u64,
    /// Its latest keyframe that was not a repeat (a publisher's layer only).
    last_real: Option<u64>,
}

/// The layers' state; pure.
#[derive(Debug)]
struct Layers {
    layers: Vec<Layer>,
    tolerance: u64,
    /// Whether the shifts are set (once, when every layer's first keyframe came or the
    /// wait for them ended).
    calibrated: bool,
    /// The latest layer keyframe the derived rungs were given a keyframe for.
    forced: Option<u64>,
    /// Bumped whenever a `cut_alone` or `absent_times` count changes.
    generation: u64,
    /// The segment boundaries, decided once for every participant.
    cuts: Cuts,
}

/// Where segments begin, decided once per instant for every participant.
///
/// Why not leave it to the muxers: each one cuts at its first keyframe one fragment
/// duration after its *own* last cut (gst-plugin-fmp4 0.14.5: the next fragment ends at
/// the last cut plus `fragment-duration`), on its own timestamps, which differ per
/// rendition by up to a few tens of milliseconds (the layers' calibration residue, a
/// derived rung's forced keyframe on the decoded frame grid, a paused layer's repeats at
/// its own frame interval). The publisher's keyframes come about one segment and one frame
/// apart (keyframes.rs), so a rendition whose last cut was later than the others' by more
/// than that frame skipped the boundary they cut at, and segment N no longer started at the
/// same instant everywhere (measured in CI: 360p's segment 42 1.068 s after 240p's and
/// 720p's). Now an instant is judged once, by the first participant whose keyframe there
/// is judged; every participant's keyframe at that instant gets the same answer; only
/// keyframes at boundaries reach the muxers as keyframes; and the muxers' own rule is made
/// to cut at every one of them ([`muxer_timing`]).
#[derive(Debug)]
struct Cuts {
    /// Instants judged: the span of running times of the keyframes there (ns), whether
    /// they were common to every participant, and whether a segment begins there.
    judged: VecDeque<((u64, u64), bool, bool)>,
    /// The boundaries' numbers, by instant: the first boundary is 0.
    numbers: VecDeque<((u64, u64), u64)>,
    /// The latest boundary (the participants' first keyframes are the first one).
    last: Option<u64>,
    /// Boundaries after the first.
    count: u64,
    /// The least distance from the start to the second boundary: the one-part first
    /// segment (mux.rs `split_first_fragment`).
    first_gap: u64,
    /// The least distance between later boundaries: a segment less half a step
    /// ([`muxer_timing`]), so a keyframe a little early (network jitter) still begins one.
    gap: u64,
}

/// Instants remembered ([`Cuts::judged`]): a few seconds of keyframes of four layers.
const JUDGED_KEPT: usize = 64;

impl Cuts {
    fn new(timing: MuxTiming) -> Self {
        let step = step(timing).as_nanos() as u64;
        let gap = (timing.segment.as_nanos() as u64).saturating_sub(step / 2);
        Self {
            judged: VecDeque::new(),
            numbers: VecDeque::new(),
            last: None,
            count: 0,
            first_gap: timing.part.map_or(gap, |p| p.as_nanos() as u64),
            gap,
        }
    }

    /// A participant's first keyframe at `running`: the first boundary, if none yet.
    fn start(&mut self, running: u64) {
        if self.last.is_none() {
            self.last = Some(running);
            self.numbers.push_back(((running, running), 0));
        }
    }

    /// Whether a participant's first keyframe at `running` is kept as its muxer's first:
    /// when it comes before the earliest the second boundary can be (the start plus
    /// [`Cuts::first_gap`]). The layers' first keyframes answer the same request but may be
    /// different pictures (measured with Chromium: 180p at 218 ms, 720p at 452 ms, 360p at
    /// 500 ms); kept, every rendition has a segment 0, the stream is playable a segment
    /// sooner, and segment 1 starts together everywhere. A first keyframe later than that
    /// (its layer's first keyframes were lost) is judged as any keyframe is, so that its
    /// rendition starts at a boundary: by time, not by whether the second boundary was
    /// already cut, since the others' keyframes at that very instant may be judged after
    /// it (measured: kept at the second boundary's instant, the late top layer's segment 0
    /// was the others' segment 1).
    fn at_start(&self, running: u64) -> bool {
        match self.numbers.front() {
            None => true,
            Some(&((first, _), 0)) => running.saturating_sub(first) < self.first_gap,
            Some(_) => false,
        }
    }

    /// The number of the boundary at `running` (within `tolerance` of its instant), if
    /// one is remembered there.
    fn number(&self, running: u64, tolerance: u64) -> Option<u64> {
        self.numbers
            .iter()
            .rev()
            .find(|((lo, hi), _)| {
                running >= lo.saturating_sub(tolerance) && running <= hi.saturating_add(tolerance)
            })
            .map(|&(_, n)| n)
    }

    /// What was judged at the instant of keyframe `own` (`(running, window)`: a repeat
    /// stands for the `window` before it): (common, boundary). An instant is the span of
    /// the keyframes that were judged together there, widened by the `tolerance`.
    ///
    /// Why a span and not the keyframe that was judged first: "within the tolerance" does
    /// not chain. With a transcoded rung's keyframe 16 ms before 720p's and a paused 180p
    /// layer's repeat, 95 ms after 720p's, judged first, the rung's keyframe is not near
    /// the repeat: it would be judged again on its own, not as a boundary, and the rung's
    /// segment numbers fall one behind. (A reading of one failure of tests/simulcast.rs,
    /// 240p a segment behind right after the 180p pause, with info logs only: consistent
    /// with it, not shown by them.)
    fn judged(&self, own: (u64, u64), tolerance: u64) -> Option<(bool, bool)> {
        let (t, w) = own;
        self.judged
            .iter()
            .rev()
            .find(|((lo, hi), _, _)| {
                t.saturating_sub(w) <= hi.saturating_add(tolerance)
                    && t >= lo.saturating_sub(tolerance)
            })
            .map(|&(_, common, boundary)| (common, boundary))
    }

    /// Judges the instant `span` (the running times of the keyframes there), `common` to
    /// every participant or not: whether a segment begins there (only where common, far
    /// enough from the last boundary).
    fn judge(&mut self, span: (u64, u64), common: bool) -> bool {
        let running = span.0;
        let gap = if self.count == 0 {
            self.first_gap
        } else {
            self.gap
        };
        let boundary = common
            && self
                .last
                .is_none_or(|last| running >= last.saturating_add(gap));
        if self.judged.len() == JUDGED_KEPT {
            self.judged.pop_front();
        }
        self.judged.push_back((span, common, boundary));
        if boundary {
            self.last = Some(running);
            self.count += 1;
            if self.numbers.len() == JUDGED_KEPT {
                self.numbers.pop_front();
            }
            self.numbers.push_back((span, self.count));
        }
        boundary
    }
}

/// The muxer's own cut unit for an aligned rendition: a part (the chunk duration, which a
/// fragment duration must be a multiple of: cmafmux 0.14.5 skips boundaries otherwise), or
/// a quarter segment without parts.
fn step(timing: MuxTiming) -> Duration {
    timing.part.unwrap_or(timing.segment / 4)
}

/// The muxer timing of an aligned rendition: its `fragment-duration` is one [`step`], so
/// the muxer cuts at every keyframe that reaches it (only boundaries do, [`Cuts`]), however
/// its timestamps differ from the others'. Boundaries are at least a segment less half a
/// step apart, and the muxer needs one step: a rendition's timestamps may be off the
/// others' by the rest, D − 1.5 steps, at least D / 4 = 125 ms (segments are at least
/// 500 ms, parts at most half of one), more than a paused layer's repeat is off the instant
/// it fills (its frame interval, 100 ms for Chromium's lowest layer).
pub(crate) fn muxer_timing(timing: MuxTiming) -> MuxTiming {
    MuxTiming {
        segment: step(timing),
        part: timing.part,
    }
}

impl Layers {
    /// The first keyframe the layers' timelines are put together on: the top layer's
    /// (layer 0), or the earliest when the top one has not come. It keeps its own timeline
    /// (shift 0), so it is also the first boundary on the shifted timeline.
    fn reference(&self) -> Option<u64> {
        self.layers
            .first()
            .and_then(|l| l.first)
            .or_else(|| self.layers.iter().filter_map(|l| l.first).min())
    }

    /// Sets every layer's shift from the first keyframes seen: the distance to the
    /// [`Layers::reference`]. A distance beyond the tolerance is not skew but another
    /// picture (measured in CI: one layer started on a keyframe 127 ms before the others',
    /// answering an earlier request): that layer keeps its timeline (shift 0).
    fn calibrate(&mut self) -> Vec<i64> {
        let tolerance = self.tolerance;
        let reference = self.reference();
        for l in &mut self.layers {
            l.shift = match (l.first, reference) {
                (Some(f), Some(r)) if f.abs_diff(r) <= tolerance && !l.derived => {
                    f as i64 - r as i64
                }
                _ => 0,
            };
        }
        self.calibrated = true;
        self.layers.iter().map(|l| l.shift).collect()
    }

    /// Records a frame; `true` when it is the layer's first (a muxer starts at a keyframe:
    /// a first keyframe at the first boundary is kept, [`Cuts::at_start`]; the layers
    /// start on the keyframes asked of them together, broadcast.rs).
    #[cfg(test)]
    fn record(&mut self, index: usize, running: u64, key: bool) -> bool {
        self.record_filling(index, running, key, 0)
    }

    /// Records a frame (as `record` does); a keyframe fills `window` ns before it (a repeat).
    fn record_filling(&mut self, index: usize, running: u64, key: bool, window: u64) -> bool {
        let Some(l) = self.layers.get_mut(index) else {
            return false;
        };
        let first = l.latest.is_none();
        l.latest = Some(l.latest.map_or(running, |t| t.max(running)));
        l.absent = false;
        if key {
            if l.keys.len() == KEYS_KEPT {
                l.keys.pop_front();
            }
            l.keys.push_back((running, window));
        }
        first
    }

    /// Whether layer `index`'s keyframe at `running` is common to every layer present:
    /// `None` while some layer has shown neither a keyframe near it nor a frame past it.
    #[cfg(test)]
    fn verdict(&self, index: usize, running: u64) -> Option<bool> {
        self.verdict_filling(index, (running, 0))
    }

    /// The verdict (as `verdict`) for a keyframe `(running, window)` ([`near`]).
    fn verdict_filling(&self, index: usize, own: (u64, u64)) -> Option<bool> {
        let (running, _) = own;
        let mut undecided = false;
        for (j, l) in self.layers.iter().enumerate() {
            if j == index || l.absent {
                continue;
            }
            if l.keys.iter().any(|&k| near(k, own, self.tolerance)) {
                continue;
            }
            if l.latest
                .is_some_and(|t| t > running.saturating_add(self.tolerance))
            {
                return Some(false);
            }
            undecided = true;
        }
        (!undecided).then_some(true)
    }

    /// The running times of the keyframes at the instant of participant `index`'s keyframe
    /// `own`: its own and every other present participant's near it (not repeats: a repeat
    /// stands for that instant but carries a later time). `None` when all are repeats.
    fn span(&self, index: usize, own: (u64, u64)) -> Option<(u64, u64)> {
        let mut times = self
            .layers
            .iter()
            .enumerate()
            .filter(|(j, l)| *j != index && !l.absent)
            .flat_map(|(_, l)| l.keys.iter())
            .filter(|&&k| k.1 == 0 && near(k, own, self.tolerance))
            .map(|k| k.0)
            .chain((own.1 == 0).then_some(own.0));
        let first = times.next()?;
        Some(times.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t))))
    }

    /// Notes a publisher's layer's keyframe at `running` that is not a repeat: one the
    /// derived rungs get a keyframe for.
    fn note_real_key(&mut self, index: usize, running: u64) {
        if let Some(l) = self.layers.get_mut(index)
            && !l.derived
        {
            l.last_real = Some(running);
        }
    }

    /// Whether the derived rungs' frame at `running` is to be a keyframe: the first frame
    /// at most `half` a frame before a layer's keyframe not yet given one, and not farther
    /// than the tolerance past it.
    fn wants_key(&mut self, running: u64, half: u64) -> bool {
        let (forced, tolerance) = (self.forced, self.tolerance);
        // Not before every rung's first frame: that one is a keyframe anyway, and after a
        // force-key-unit request that came before its first frame, x264enc (GStreamer 1.22)
        // made no forced keyframe ever again (measured: requests at 4, 6, 8 s, IDRs only
        // at key-int-max).
        if self.layers.iter().any(|l| l.derived && l.latest.is_none()) {
            return false;
        }
        let due = self
            .layers
            .iter()
            .filter(|l| !l.derived)
            .filter_map(|l| l.last_real)
            .filter(|&k| forced.is_none_or(|f| k > f.saturating_add(tolerance)))
            .find(|&k| running.saturating_add(half) >= k && running <= k.saturating_add(tolerance));
        if let Some(k) = due {
            self.forced = Some(k);
        }
        due.is_some()
    }

    /// Whether participant `index` keeps a keyframe judged `common` or not
    /// ([`MAX_ALONE`]); a `repeat`, or a derived rung's keyframe, only when common.
    fn keep(&mut self, index: usize, common: bool, repeat: bool, names: &[String]) -> bool {
        if repeat {
            return common;
        }
        let Some(l) = self.layers.get_mut(index) else {
            return true;
        };
        if l.derived {
            return common;
        }
        if common {
            l.alone = 0;
            return true;
        }
        l.alone += 1;
        if l.alone > MAX_ALONE {
            l.alone = 0;
            l.cut_alone += 1;
            self.generation += 1;
            warn!(
                rendition = names.get(index).map(String::as_str).unwrap_or(""),
                "simulcast layer's keyframes never match the others' (timelines apart?): cutting here anyway"
            );
            return true;
        }
        false
    }

    /// The layers that have not shown a keyframe near `running` nor a frame past it.
    fn mark_undecided_absent(&mut self, index: usize, own: (u64, u64)) -> Vec<usize> {
        let (running, _) = own;
        let tolerance = self.tolerance;
        let mut marked = Vec::new();
        for (j, l) in self.layers.iter_mut().enumerate() {
            let near = l.keys.iter().any(|&k| near(k, own, tolerance));
            let past = l
                .latest
                .is_some_and(|t| t > running.saturating_add(tolerance));
            if j != index && !l.absent && !near && !past {
                l.absent = true;
                l.absent_times += 1;
                marked.push(j);
            }
        }
        if !marked.is_empty() {
            self.generation += 1;
        }
        marked
    }
}

/// Whether two keyframes `(running, window)` are the same instant: within `tolerance` of
/// each other, or one of them a repeat that fills the instant of the other. A paused layer's
/// repeats come at its own frame interval (Chromium's lowest layer: not every 33 ms), so
/// the repeat nearest another layer's keyframe may be farther than the tolerance from it;
/// the first repeat at or after that keyframe stands for it (measured before this: a paused
/// 180p layer of Chromium's never met the others' boundaries, cut 2–3 s segments, and after
/// the pause its segment 38 started 4.2 s after theirs).
fn near(a: (u64, u64), b: (u64, u64), tolerance: u64) -> bool {
    // The window is widened by the tolerance, as every instant is: the same picture's
    // keyframe on another layer may be that much earlier than the one the repeat fills.
    let fills = |(t, w): (u64, u64), k: u64| {
        w > 0 && t.saturating_sub(w).saturating_sub(tolerance) < k && k <= t
    };
    a.0.abs_diff(b.0) <= tolerance || fills(a, b.0) || fills(b, a.0)
}

/// The keyframe alignment of one broadcast's simulcast layers.
pub(crate) struct Align {
    state: Mutex<Layers>,
    changed: Condvar,
    /// The longest a keyframe waits for the other layers.
    wait: Duration,
    names: Vec<String>,
    /// The generation of the last [`Align::report`].
    reported: AtomicU64,
}

impl Align {
    /// Aligns the layers named `layers` (their renditions, the top one first) and the rungs
    /// `derived` from the top layer (in that order: participant indices); keyframes closer
    /// than `tolerance` are the same instant. `timing` is the renditions' (before
    /// [`muxer_timing`]).
    pub(crate) fn new(
        layers: Vec<String>,
        derived: Vec<String>,
        tolerance: Duration,
        wait: Duration,
        timing: MuxTiming,
    ) -> Arc<Self> {
        let count = layers.len();
        let mut names = layers;
        names.extend(derived);
        Arc::new(Self {
            state: Mutex::new(Layers {
                layers: (0..names.len())
                    .map(|i| Layer {
                        derived: i >= count,
                        ..Layer::default()
                    })
                    .collect(),
                tolerance: tolerance.as_nanos() as u64,
                calibrated: false,
                forced: None,
                generation: 0,
                cuts: Cuts::new(timing),
            }),
            changed: Condvar::new(),
            wait,
            names,
            reported: AtomicU64::new(0),
        })
    }

    /// The renditions that had alignment trouble, with their counts, when that changed
    /// since the last call (`/api/streams`); `None` otherwise. Called at segment starts.
    pub(crate) fn report(&self) -> Option<Vec<crate::simulcast::Alignment>> {
        let state = self.state.lock().ok()?;
        if self.reported.swap(state.generation, Ordering::Relaxed) == state.generation {
            return None;
        }
        Some(
            state
                .layers
                .iter()
                .zip(&self.names)
                .filter(|(l, _)| l.cut_alone > 0 || l.absent_times > 0)
                .map(|(l, name)| crate::simulcast::Alignment {
                    rendition: name.clone(),
                    cut_alone: l.cut_alone,
                    absent: l.absent_times,
                })
                .collect(),
        )
    }

    /// The number of the segment boundary at `running` (ns; a fragment's start, on the
    /// timeline the alignment put it on), counted from the first: the same for every
    /// rendition that begins a segment there. `None` when none is remembered there (a
    /// keyframe a rendition was cut at alone).
    pub(crate) fn boundary_number(&self, running: u64) -> Option<u64> {
        let state = self.state.lock().ok()?;
        state.cuts.number(running, state.tolerance)
    }

    /// The participant index of rendition `name`.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Gives the derived rungs their keyframes: on `pad` (the decoded top layer on the
    /// frame grid, before the tee the rungs hang off), a force-key-unit event goes before
    /// every frame [`Layers::wants_key`] names; `frame` is one frame interval. The encoders
    /// (GstVideoEncoder) make the first frame at or after the event's running time an IDR.
    ///
    /// The layers' keyframes are known from their muxers' inputs, which a loaded machine
    /// may reach after the decoded frame of the same picture (measured: with 4 streams of
    /// 3 layers and 2 such rungs each, one rung went 58 s without a segment). So the top
    /// layer's keyframes are also noted where they enter its decoder (`top`, its sink pad),
    /// which is always before their decoded frame.
    pub(crate) fn force_keys(
        self: &Arc<Self>,
        pad: &gst::Pad,
        top: Option<&gst::Pad>,
        frame: Duration,
    ) {
        if let Some(top) = top {
            let align = Arc::clone(self);
            top.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
                let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                // Copies of the last keyframe standing in for broken frames (rung.rs
                // `replace_broken_frames`, before the decoder too) are not the publisher's
                // keyframes: forcing one on every decoded frame they become would make
                // the transcoded rungs all IDRs until a whole keyframe comes.
                if buffer
                    .flags()
                    .intersects(gst::BufferFlags::DELTA_UNIT | REPEAT)
                {
                    return gst::PadProbeReturn::Ok;
                }
                let running = running_time(pad, buffer.pts());
                if let (Some(running), Ok(mut state)) = (running, align.state.lock()) {
                    state.note_real_key(0, running.nseconds());
                }
                gst::PadProbeReturn::Ok
            });
        }
        let align = Arc::clone(self);
        let half = frame.as_nanos() as u64 / 2;
        let forced = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let pts = buffer.pts();
            let running = running_time(pad, pts);
            let Some(running) = running else {
                return gst::PadProbeReturn::Ok;
            };
            let due = match align.state.lock() {
                Ok(mut state) => state.wants_key(running.nseconds(), half),
                Err(_) => false,
            };
            if due {
                let event = gstreamer_video::DownstreamForceKeyUnitEvent::builder()
                    .timestamp(pts)
                    .running_time(running)
                    .all_headers(true)
                    .build();
                if !pad.push_event(event) {
                    debug!("a derived rung's keyframe request was not taken");
                }
                let n = forced.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    debug!(
                        forced = n,
                        "keyframes put where the simulcast layers have theirs"
                    );
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Judges every buffer leaving `pad` (layer `index`'s way into its muxer): a keyframe
    /// that is not common to every layer leaves flagged as a delta unit.
    pub(crate) fn install(self: &Arc<Self>, pad: &gst::Pad, index: usize) {
        let align = Arc::clone(self);
        let suppressed = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(gst::PadProbeData::Buffer(buffer)) = &mut info.data else {
                return gst::PadProbeReturn::Ok;
            };
            let running = running_time(pad, buffer.pts());
            let Some(running) = running else {
                return gst::PadProbeReturn::Ok;
            };
            let key = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let repeat = key && buffer.flags().contains(REPEAT);
            if repeat {
                buffer.make_mut().unset_flags(REPEAT);
            }
            // A repeat fills its frame interval before it.
            let window = if repeat {
                buffer.duration().map_or(0, |d| d.nseconds())
            } else {
                0
            };
            let (keep, shift) = align.judge(index, running.nseconds(), key, repeat, window);
            if shift != 0 {
                let b = buffer.make_mut();
                let moved = |t: Option<gst::ClockTime>| {
                    t.map(|t| {
                        let ns = t.nseconds() as i64 - shift;
                        gst::ClockTime::from_nseconds(ns.max(0) as u64)
                    })
                };
                b.set_pts(moved(b.pts()));
                b.set_dts(moved(b.dts()));
            }
            if !keep {
                buffer.make_mut().set_flags(gst::BufferFlags::DELTA_UNIT);
                let suppressed = suppressed.fetch_add(1, Ordering::Relaxed) + 1;
                if suppressed.is_power_of_two() {
                    info!(
                        rendition = align.names.get(index).map(String::as_str).unwrap_or(""),
                        suppressed,
                        "keyframe not at a segment boundary of every rendition: passed on as a delta frame"
                    );
                }
            }
            gst::PadProbeReturn::Ok
        });
    }

    /// Logs a keyframe's verdict (debug; `kept`: it stays a keyframe): a publisher's
    /// keyframe always, a repeat only when kept (a paused layer's repeats come on every
    /// frame).
    fn trace(&self, index: usize, running: u64, repeat: bool, common: bool, kept: bool) {
        if !repeat || kept {
            debug!(
                rendition = self.names.get(index).map(String::as_str).unwrap_or(""),
                running_ms = running / 1_000_000,
                repeat,
                common,
                kept,
                "keyframe judged"
            );
        }
    }

    /// Records a frame of layer `index` at `raw` running time (as its jitter buffer
    /// stamped it; `repeat`: a livesync repeat of its last keyframe): whether it stays a
    /// keyframe, and the shift to take off its timestamps.
    fn judge(&self, index: usize, raw: u64, key: bool, repeat: bool, window: u64) -> (bool, i64) {
        let Ok(mut state) = self.state.lock() else {
            return (true, 0);
        };
        if !state.calibrated {
            if let Some(l) = state.layers.get_mut(index)
                && l.first.is_none()
            {
                l.first = Some(raw);
            }
            self.changed.notify_all();
            let deadline = Instant::now() + self.wait;
            while !state.calibrated && state.layers.iter().any(|l| l.first.is_none()) {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                state = match self.changed.wait_timeout(state, left) {
                    Ok((s, _)) => s,
                    Err(_) => return (true, 0),
                };
            }
            if !state.calibrated {
                let shifts = state.calibrate();
                // The first boundary is the reference the timelines were put together on
                // (the top layer's first keyframe), whichever thread gets here first.
                if let Some(start) = state.reference() {
                    state.cuts.start(start);
                }
                info!(?shifts, renditions = ?self.names, "simulcast layers' timelines put together (ns taken off)");
                self.changed.notify_all();
            }
        }
        let shift = state.layers.get(index).map_or(0, |l| l.shift);
        let running = (raw as i64 - shift).max(0) as u64;
        let first = state.record_filling(index, running, key, window);
        if key && !repeat {
            state.note_real_key(index, running);
        }
        self.changed.notify_all();
        if !key {
            return (true, shift);
        }
        if first && state.cuts.at_start(running) {
            state.cuts.start(running);
            return (true, shift);
        }
        let own = (running, window);
        let deadline = Instant::now() + self.wait;
        loop {
            // An instant another participant's keyframe was judged at gets the same answer.
            let judged = state.cuts.judged(own, state.tolerance);
            let mut common = judged
                .map(|(common, _)| common)
                .or_else(|| state.verdict_filling(index, own));
            let left = deadline.saturating_duration_since(Instant::now());
            if common.is_none() && left.is_zero() {
                for j in state.mark_undecided_absent(index, own) {
                    warn!(
                        rendition = self.names.get(j).map(String::as_str).unwrap_or(""),
                        "simulcast layer shows no frames; segments are cut without it"
                    );
                }
                common = Some(state.verdict_filling(index, own).unwrap_or(true));
            }
            if let Some(common) = common {
                let keyframe = self.settle(&mut state, index, own, repeat, common, judged);
                return (keyframe, shift);
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(_) => return (true, shift),
            };
        }
    }

    /// Whether participant `index`'s keyframe `own`, judged `common` or not, stays a
    /// keyframe: where a segment begins ([`Cuts`], `judged` if its instant already was),
    /// or, not common, when kept alone ([`MAX_ALONE`]; its muxer then cuts there alone).
    fn settle(
        &self,
        state: &mut Layers,
        index: usize,
        own: (u64, u64),
        repeat: bool,
        common: bool,
        judged: Option<(bool, bool)>,
    ) -> bool {
        let boundary = match judged {
            Some((_, boundary)) => boundary,
            // A repeat not common to every participant is not remembered: a paused layer
            // repeats on every frame, and none of those instants is anyone else's.
            None if repeat && !common => false,
            None => {
                let span = if common { state.span(index, own) } else { None };
                state.cuts.judge(span.unwrap_or((own.0, own.0)), common)
            }
        };
        let kept = state.keep(index, common, repeat, &self.names);
        let keyframe = if common { boundary } else { kept };
        self.trace(index, own.0, repeat, common, keyframe);
        if judged.is_none() {
            // The others' keyframes at this instant are waiting for the answer.
            self.changed.notify_all();
        }
        keyframe
    }
}

#[cfg(test)]
mod bin_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn layers(n: usize) -> Layers {
        Layers {
            layers: (0..n).map(|_| Layer::default()).collect(),
            tolerance: 16 * MS,
            calibrated: true,
            forced: None,
            generation: 0,
            cuts: Cuts::new(TIMING),
        }
    }

    /// 1 s segments of 200 ms parts.
    const TIMING: MuxTiming = MuxTiming {
        segment: Duration::from_secs(1),
        part: Some(Duration::from_millis(200)),
    };

    #[test]
    fn segments_begin_a_part_after_the_start_then_a_segment_apart() {
        let at = |ms: u64| (ms * MS, ms * MS);
        let mut c = Cuts::new(TIMING);
        c.start(0);
        c.start(5 * MS);
        assert_eq!(c.last, Some(0), "the first participant's first keyframe");
        assert!(c.judge(at(300), true), "the one-part first segment");
        assert!(!c.judge(at(800), true), "common, but 0.5 s after");
        // A segment less half a part: a keyframe 50 ms early still begins one.
        assert!(c.judge((1250 * MS, 1262 * MS), true));
        assert!(!c.judge(at(2400), false), "not common");
        assert!(c.judge(at(2500), true));
        // Every participant's keyframe at a judged instant gets that instant's answer.
        assert_eq!(c.judged((1276 * MS, 0), 16 * MS), Some((true, true)));
        assert_eq!(c.judged((810 * MS, 0), 16 * MS), Some((true, false)));
        assert_eq!(c.judged((2390 * MS, 0), 16 * MS), Some((false, false)));
        assert_eq!(c.judged((1400 * MS, 0), 16 * MS), None);
        // A paused layer's repeat 60 ms after the instant it fills; not the next one.
        assert_eq!(c.judged((2560 * MS, 100 * MS), 16 * MS), Some((true, true)));
        assert_eq!(c.judged((2660 * MS, 100 * MS), 16 * MS), None);
        // Without parts: a segment less an eighth.
        let mut c = Cuts::new(MuxTiming {
            segment: Duration::from_secs(2),
            part: None,
        });
        c.start(0);
        assert!(!c.judge(at(1700), true));
        assert!(c.judge(at(1750), true));
        assert_eq!(
            muxer_timing(TIMING).segment,
            Duration::from_millis(200),
            "the muxer's own rule cuts at every boundary"
        );
    }

    #[test]
    fn a_rendition_that_starts_late_starts_at_a_boundary_and_takes_its_number() {
        let at = |ms: u64| (ms * MS, ms * MS);
        let tolerance = 16 * MS;
        let mut c = Cuts::new(TIMING);
        assert!(c.at_start(2000 * MS), "nothing started yet");
        c.start(2000 * MS);
        // A first keyframe before the earliest second boundary (one part after the start)
        // is kept as the start of its rendition's segment 0, an earlier one too.
        assert!(c.at_start(1766 * MS));
        assert!(c.at_start(2150 * MS));
        assert!(!c.at_start(2200 * MS), "where the second boundary may be");
        assert!(c.judge(at(2200), true));
        assert!(c.judge((3195 * MS, 3205 * MS), true));
        assert!(c.judge(at(4200), true));
        // The top layer's first whole keyframe comes two boundaries late (its first ones
        // lost their first slices): judged like any other, not kept as a start.
        assert!(!c.at_start(4195 * MS));
        assert_eq!(c.number(2004 * MS, tolerance), Some(0));
        assert_eq!(c.number(2200 * MS, tolerance), Some(1));
        assert_eq!(c.number(3210 * MS, tolerance), Some(2));
        assert_eq!(
            c.number(4195 * MS, tolerance),
            Some(3),
            "its first segment's number"
        );
        assert_eq!(c.number(3700 * MS, tolerance), None, "no boundary there");
    }

    #[test]
    fn an_instant_is_judged_once_for_every_participant() {
        // Layer 2's keyframe is within the tolerance of layer 0's but not of layer 1's: by
        // their own verdicts layer 0 would cut there and layer 1 would not.
        let mut l = layers(3);
        l.cuts.start(0);
        l.record(0, 1000 * MS, true);
        l.record(1, 1010 * MS, true);
        l.record(2, 988 * MS, true);
        assert_eq!(l.verdict(0, 1000 * MS), Some(true));
        assert_eq!(l.verdict(1, 1010 * MS), None);
        l.record(2, 1054 * MS, false);
        assert_eq!(l.verdict(1, 1010 * MS), Some(false));
        // The first judged decides for all, on the span of the keyframes there.
        assert_eq!(l.span(0, (1000 * MS, 0)), Some((988 * MS, 1010 * MS)));
        assert!(l.cuts.judge((988 * MS, 1010 * MS), true));
        assert_eq!(
            l.cuts.judged((1010 * MS, 0), l.tolerance),
            Some((true, true))
        );
        assert_eq!(
            l.cuts.judged((988 * MS, 0), l.tolerance),
            Some((true, true))
        );
    }

    #[test]
    fn an_instant_a_repeat_judged_first_is_where_the_real_keyframes_are() {
        // The paused 180p layer's repeat 95 ms after 720p's keyframe decides for the
        // instant; 240p's keyframe 16 ms before 720p's must get the same answer (judged on
        // its own, it was not a boundary: the reading of a tests/simulcast.rs failure where
        // 240p fell a segment behind after the pause).
        let mut l = layers(3);
        l.cuts.start(0);
        l.record(0, 1000 * MS, true);
        l.record(2, 984 * MS, true);
        l.record(2, 1150 * MS, false);
        l.record_filling(1, 1095 * MS, true, 100 * MS);
        // 240p's keyframe is 111 ms before the repeat: in its window widened by the
        // tolerance (16 ms here), as 720p's is.
        assert_eq!(l.verdict_filling(1, (1095 * MS, 100 * MS)), Some(true));
        let span = l.span(1, (1095 * MS, 100 * MS));
        assert_eq!(
            span,
            Some((984 * MS, 1000 * MS)),
            "240p's and 720p's, not the repeat's"
        );
        assert!(l.cuts.judge(span.expect("real keyframes there"), true));
        assert_eq!(
            l.cuts.judged((984 * MS, 0), l.tolerance),
            Some((true, true))
        );
        assert_eq!(
            l.cuts.judged((1000 * MS, 0), l.tolerance),
            Some((true, true))
        );
        assert_eq!(
            l.cuts.last,
            Some(984 * MS),
            "the next segment counts from there"
        );
    }

    #[test]
    fn a_derived_rung_gets_a_keyframe_nearest_each_layer_keyframe_once() {
        // Two layers and a rung transcoded from the top one (30 fps: half a frame 16.7 ms).
        let mut l = layers(3);
        l.layers[2].derived = true;
        let half = 16_666_666;
        l.note_real_key(0, 1000 * MS);
        l.note_real_key(1, 1002 * MS);
        assert!(
            !l.wants_key(1000 * MS, half),
            "not before the rung's first frame"
        );
        l.record(2, 966 * MS, true);
        // The frame grid: 966.7, 1000, 1033.3 ms.
        assert!(
            !l.wants_key(966 * MS, half),
            "more than half a frame before"
        );
        assert!(l.wants_key(1000 * MS, half));
        assert!(
            !l.wants_key(1033 * MS, half),
            "once per instant, not per layer"
        );
        // A derived rung's own keyframes are no source.
        l.note_real_key(2, 1500 * MS);
        assert!(!l.wants_key(1500 * MS, half));
        // The next keyframe of the layers, seen only after its frame passed within the
        // tolerance: still given; one seen later than that is missed.
        l.note_real_key(0, 2000 * MS);
        assert!(l.wants_key(2010 * MS, half));
        l.note_real_key(1, 3000 * MS);
        assert!(!l.wants_key(3033 * MS, half));
        // A derived rung's keyframes are kept only where common, never "alone too long".
        let names: Vec<String> = ["a", "b", "c"].map(String::from).into();
        for _ in 0..3 * MAX_ALONE {
            assert!(!l.keep(2, false, false, &names));
        }
        assert!(l.keep(2, true, false, &names));
    }

    #[test]
    fn a_paused_layers_repeat_stands_for_the_instant_it_fills() {
        // Layer 1 paused, repeating every 66.7 ms (15 fps): repeats at 967 and 1033 ms; the
        // others' keyframe at 1000 ms is 33 ms from either (tolerance 16 ms here).
        let mut l = layers(2);
        l.record_filling(1, 966 * MS, true, 66 * MS);
        l.record(0, 1000 * MS, true);
        assert_eq!(
            l.verdict(0, 1000 * MS),
            None,
            "the repeat before does not fill it"
        );
        l.record_filling(1, 1033 * MS, true, 66 * MS);
        assert_eq!(
            l.verdict(0, 1000 * MS),
            Some(true),
            "the first repeat after does"
        );
        assert_eq!(l.verdict_filling(1, (1033 * MS, 66 * MS)), Some(true));
        assert_eq!(
            l.verdict_filling(1, (966 * MS, 66 * MS)),
            Some(false),
            "the repeat before is no boundary"
        );
        assert!(near((1000 * MS, 0), (1010 * MS, 0), 16 * MS));
        assert!(!near((1000 * MS, 0), (1100 * MS, 66 * MS), 16 * MS));
    }

    #[test]
    fn a_derived_rung_is_never_shifted() {
        let mut l = layers(3);
        l.calibrated = false;
        l.layers[2].derived = true;
        l.layers[0].first = Some(1000 * MS);
        l.layers[1].first = Some(1004 * MS);
        l.layers[2].first = Some(1012 * MS);
        assert_eq!(l.calibrate(), vec![0, 4 * MS as i64, 0]);
    }

    #[test]
    fn a_keyframe_every_layer_has_is_common() {
        let mut l = layers(3);
        l.record(0, 1000 * MS, true);
        assert_eq!(
            l.verdict(0, 1000 * MS),
            None,
            "the others have shown nothing yet"
        );
        l.record(1, 1003 * MS, true);
        assert_eq!(l.verdict(0, 1000 * MS), None);
        l.record(2, 998 * MS, true);
        assert_eq!(l.verdict(0, 1000 * MS), Some(true));
        assert_eq!(l.verdict(1, 1003 * MS), Some(true));
    }

    #[test]
    fn a_keyframe_one_layer_lacks_is_not() {
        let mut l = layers(3);
        l.record(0, 1000 * MS, true);
        l.record(1, 1001 * MS, true);
        // Layer 2's frame at that instant is a delta: once it is past, the verdict is in.
        l.record(2, 1001 * MS, false);
        assert_eq!(l.verdict(0, 1000 * MS), None, "still within the tolerance");
        l.record(2, 1034 * MS, false);
        assert_eq!(l.verdict(0, 1000 * MS), Some(false));
        // One frame later is not the same instant either.
        l.record(2, 1067 * MS, true);
        assert_eq!(
            l.verdict(2, 1067 * MS),
            None,
            "the others are not past it yet"
        );
        l.record(0, 1100 * MS, false);
        assert_eq!(l.verdict(2, 1067 * MS), Some(false));
    }

    #[test]
    fn first_keyframes_farther_apart_than_the_tolerance_are_not_skew() {
        let mut l = layers(3);
        l.calibrated = false;
        l.layers[0].first = Some(1000 * MS);
        l.layers[1].first = Some(1008 * MS);
        l.layers[2].first = Some(873 * MS);
        assert_eq!(l.calibrate(), vec![0, 8 * MS as i64, 0]);
        // The first boundary is the top layer's first keyframe, whichever layer's thread
        // comes first.
        assert_eq!(l.reference(), Some(1000 * MS));
        // Without the top layer's, the earliest.
        let mut l = layers(2);
        l.layers[1].first = Some(500 * MS);
        assert_eq!(l.reference(), Some(500 * MS));
    }

    #[test]
    fn a_layer_always_alone_is_cut_again_after_a_few() {
        let mut l = layers(2);
        let names = vec!["a".to_string(), "b".to_string()];
        for _ in 0..MAX_ALONE {
            assert!(!l.keep(0, false, false, &names));
        }
        assert!(
            l.keep(0, false, false, &names),
            "kept after {MAX_ALONE} alone in a row"
        );
        assert_eq!((l.layers[0].cut_alone, l.generation), (1, 1), "and counted");
        assert!(!l.keep(0, false, false, &names), "and counted afresh");
        assert!(l.keep(0, true, false, &names));
    }

    #[test]
    fn a_paused_layers_repeats_are_kept_only_where_common() {
        let mut l = layers(2);
        let names = vec!["a".to_string(), "b".to_string()];
        // A paused layer repeats its keyframe every frame: never "alone too long".
        for _ in 0..10 * MAX_ALONE {
            assert!(!l.keep(1, false, true, &names));
        }
        assert!(l.keep(1, true, true, &names), "at a common instant");
        // And its repeats left its count of real keyframes alone.
        for _ in 0..MAX_ALONE {
            assert!(!l.keep(1, false, false, &names));
        }
    }

    #[test]
    fn an_absent_layer_is_left_out_until_it_shows_frames() {
        let mut l = layers(2);
        l.record(0, 1000 * MS, true);
        assert_eq!(l.verdict(0, 1000 * MS), None);
        assert_eq!(l.mark_undecided_absent(0, (1000 * MS, 0)), vec![1]);
        assert_eq!((l.layers[1].absent_times, l.generation), (1, 1));
        assert_eq!(l.verdict(0, 1000 * MS), Some(true));
        l.record(0, 2000 * MS, true);
        assert_eq!(l.verdict(0, 2000 * MS), Some(true), "still absent");
        l.record(1, 2001 * MS, false);
        l.record(1, 2034 * MS, false);
        l.record(0, 2040 * MS, true);
        assert_eq!(l.verdict(0, 2040 * MS), None, "back: waited for again");
    }

    #[test]
    fn threads_meeting_at_a_common_keyframe_do_not_wait_for_the_timeout() {
        let align = Align::new(
            vec!["a".into(), "b".into()],
            Vec::new(),
            Duration::from_millis(16),
            Duration::from_secs(5),
            TIMING,
        );
        let other = Arc::clone(&align);
        let started = Instant::now();
        // First keyframes: layer 1's timeline is 10 ms late; it is moved onto layer 0's.
        let t = std::thread::spawn(move || other.judge(1, 1010 * MS, true, false, 0));
        assert_eq!(align.judge(0, 1000 * MS, true, false, 0), (true, 0));
        assert_eq!(t.join().expect("thread"), (true, 10 * MS as i64));
        // The next common keyframe: 2011 on layer 1's own timeline is 2001 on layer 0's.
        let other = Arc::clone(&align);
        let t = std::thread::spawn(move || other.judge(1, 2011 * MS, true, false, 0));
        assert_eq!(align.judge(0, 2000 * MS, true, false, 0), (true, 0));
        assert_eq!(t.join().expect("thread"), (true, 10 * MS as i64));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
