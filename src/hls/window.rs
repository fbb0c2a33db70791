//! The sliding window of one rendition: segment and part numbering, the playlist window,
//! the segment being filled by parts, and the retention of segments that left the window.
//! Pure: no clock, no I/O.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

/// One partial segment (LL-HLS), a CMAF chunk.
#[derive(Debug, Clone)]
pub(super) struct Part {
    /// Exact duration.
    pub(super) duration: Duration,
    /// Contains an independent frame (HLS2 §4.4.4.9 `INDEPENDENT=YES`).
    pub(super) independent: bool,
    /// A gap: listed `GAP=YES` (HLS2 §4.4.4.9), its bytes are repeated frames or silence.
    pub(super) gap: bool,
    /// The chunk (`moof` + `mdat`, the first one of a segment with `styp`).
    pub(super) data: Bytes,
}

/// One segment: complete, or still being filled by parts.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// Media sequence number (never reused within a broadcast).
    pub(super) seq: u64,
    /// Exact duration (sum of its parts while open).
    pub(super) duration: Duration,
    /// Wall-clock time of its first sample (`EXT-X-PROGRAM-DATE-TIME`).
    pub(super) wallclock: SystemTime,
    /// A gap (HLS2 §4.4.4.7 `EXT-X-GAP`): every part of it is one.
    pub(super) gap: bool,
    /// The whole CMAF fragment; empty while the segment is open.
    pub(super) data: Bytes,
    /// Its parts, in order (empty when produced without parts).
    pub(super) parts: Vec<Part>,
    /// Whether its bytes moved to disk (DVR overflow, `hls.dvr_overflow = "disk"`).
    pub(super) spill: Spill,
}

/// Where a complete segment's bytes are.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) enum Spill {
    /// In `data`.
    #[default]
    Memory,
    /// Being written to disk; still in `data` until written.
    Pending,
    /// In this file; `data` and the parts are empty.
    Disk(Arc<PathBuf>),
}

/// Where the newest media is: `LAST-MSN` / `LAST-PART` of a rendition report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Position {
    /// Sequence number of the newest segment (open or complete).
    pub(super) msn: u64,
    /// Index of its newest part, if it has parts.
    pub(super) part: Option<usize>,
}

/// The segments of one rendition.
#[derive(Debug)]
pub(super) struct Window {
    /// Complete and listed, oldest first.
    live: VecDeque<Segment>,
    /// Complete, no longer listed, still downloadable (HLS2 §6.2.2: a client that loaded
    /// an older playlist may still ask for them).
    retired: VecDeque<Segment>,
    /// Being filled by parts; listed as parts only.
    open: Option<Segment>,
    next_seq: u64,
    window: usize,
    retain: usize,
    /// Bytes held by complete segments (listed and retired); parts of a complete segment
    /// share its buffer and are not counted twice.
    held: usize,
    /// Of `held`, the bytes of segments being written to disk.
    pending: usize,
    /// Files of spilled segments that left the window, for the caller to delete.
    dropped_files: Vec<Arc<PathBuf>>,
}

/// Listed segments that memory trimming never goes below (HLS2 §6.2.2: a live playlist
/// lists at least three target durations).
pub(super) const MIN_LISTED: usize = 3;

impl Window {
    /// A window listing `window` complete segments and keeping `retain` more downloadable.
    #[cfg(test)]
    pub(super) fn new(window: usize, retain: usize) -> Self {
        Self::starting_at(window, retain, 0)
    }

    /// The same, numbering from `first_seq`: a re-published stream continues the previous
    /// broadcast's numbers, because media sequence numbers only ever increase (HLS2 §6.2.2)
    /// and caches hold blocking responses keyed by them.
    pub(super) fn starting_at(window: usize, retain: usize, first_seq: u64) -> Self {
        Self {
            live: VecDeque::new(),
            retired: VecDeque::new(),
            open: None,
            next_seq: first_seq,
            window: window.max(1),
            retain,
            held: 0,
            pending: 0,
            dropped_files: Vec::new(),
        }
    }

    /// Appends a whole segment (no parts); returns its sequence number.
    #[cfg(test)]
    pub(super) fn push(&mut self, duration: Duration, wallclock: SystemTime, data: Bytes) -> u64 {
        self.push_segment(duration, wallclock, false, data)
    }

    /// Appends a whole segment (no parts), a gap or not; returns its sequence number.
    pub(super) fn push_segment(
        &mut self,
        duration: Duration,
        wallclock: SystemTime,
        gap: bool,
        data: Bytes,
    ) -> u64 {
        self.close();
        let seq = self.take_seq();
        self.complete(Segment {
            seq,
            duration,
            wallclock,
            gap,
            data,
            parts: Vec::new(),
            spill: Spill::Memory,
        });
        seq
    }

    /// Appends a part. `starts_segment` closes the open segment (it becomes listed as a
    /// whole) and opens the next one. Returns the part's position.
    pub(super) fn push_part(
        &mut self,
        starts_segment: bool,
        part: Part,
        wallclock: SystemTime,
    ) -> Position {
        if starts_segment || self.open.is_none() {
            self.close();
            let seq = self.take_seq();
            self.open = Some(Segment {
                seq,
                duration: Duration::ZERO,
                wallclock,
                gap: part.gap,
                data: Bytes::new(),
                parts: Vec::new(),
                spill: Spill::Memory,
            });
        }
        let open = self.open.as_mut().expect("opened above");
        open.duration += part.duration;
        open.gap &= part.gap;
        open.parts.push(part);
        Position {
            msn: open.seq,
            part: Some(open.parts.len() - 1),
        }
    }

    /// Completes the open segment, if any (the next segment started, or the stream ended).
    pub(super) fn close(&mut self) {
        if let Some(mut seg) = self.open.take() {
            let mut data = BytesMut::with_capacity(seg.parts.iter().map(|p| p.data.len()).sum());
            for p in &seg.parts {
                data.extend_from_slice(&p.data);
            }
            seg.data = data.freeze();
            // The parts become views of the segment's buffer: one copy in memory, not two
            // (what makes a long DVR window affordable).
            let mut at = 0;
            for p in &mut seg.parts {
                let len = p.data.len();
                p.data = seg.data.slice(at..at + len);
                at += len;
            }
            self.complete(seg);
        }
    }

    /// Numbers the first segment `seq` or more: a simulcast rendition that began after the
    /// others skips the numbers of the segments it missed, so its segment N starts where
    /// theirs does (media/align.rs). Only before the first segment: a playlist's segments
    /// are numbered from its `EXT-X-MEDIA-SEQUENCE` by position (HLS2 §4.4.3.2), so a
    /// hole inside a window would misnumber every segment after it.
    pub(super) fn skip_to(&mut self, seq: u64) {
        if self.open.is_none() && self.live.is_empty() && self.retired.is_empty() {
            self.next_seq = self.next_seq.max(seq);
        }
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn complete(&mut self, seg: Segment) {
        self.held += seg.data.len();
        self.live.push_back(seg);
        while self.live.len() > self.window {
            if let Some(old) = self.live.pop_front() {
                self.retired.push_back(old);
            }
        }
        while self.retired.len() > self.retain {
            if let Some(old) = self.retired.pop_front() {
                self.forget(old);
            }
        }
    }

    /// Accounts for a segment leaving; returns the memory it held.
    fn forget(&mut self, old: Segment) -> usize {
        self.held -= old.data.len();
        match old.spill {
            Spill::Pending => self.pending -= old.data.len(),
            Spill::Disk(path) => self.dropped_files.push(path),
            Spill::Memory => {}
        }
        old.data.len()
    }

    /// Drops the oldest complete segment to free memory: a retired one first, else the
    /// oldest listed one while more than [`MIN_LISTED`] are listed. Returns the memory freed
    /// (0 for a segment already on disk), or `None` when nothing may go.
    pub(super) fn trim_oldest(&mut self) -> Option<usize> {
        let old = match self.retired.pop_front() {
            Some(old) => old,
            None if self.live.len() > MIN_LISTED => self.live.pop_front()?,
            None => return None,
        };
        Some(self.forget(old))
    }

    /// The oldest complete segment still only in memory (not on disk, not being written),
    /// `(seq, wallclock)`; never one of the newest [`MIN_LISTED`] listed segments, whose
    /// parts LL-HLS playlists still list (HLS2 §6.2.2: the last three target durations).
    pub(super) fn oldest_in_memory(&self) -> Option<(u64, SystemTime)> {
        let spillable = self.live.len().saturating_sub(MIN_LISTED);
        self.retired
            .iter()
            .chain(self.live.iter().take(spillable))
            .find(|s| s.spill == Spill::Memory)
            .map(|s| (s.seq, s.wallclock))
    }

    /// Marks segment `seq` as being written to disk; returns its bytes for the writer.
    pub(super) fn spill_begin(&mut self, seq: u64) -> Option<Bytes> {
        let seg = self.complete_mut(seq)?;
        if seg.spill != Spill::Memory {
            return None;
        }
        seg.spill = Spill::Pending;
        let data = seg.data.clone();
        self.pending += data.len();
        Some(data)
    }

    /// Segment `seq` is in `path` now: its memory is freed (its parts too: a spilled
    /// segment is far behind the live edge, where no playlist lists parts). Returns the bytes
    /// freed, or `None` if the segment is gone (the caller deletes the file).
    pub(super) fn spill_done(&mut self, seq: u64, path: Arc<PathBuf>) -> Option<usize> {
        let seg = self.complete_mut(seq)?;
        if seg.spill != Spill::Pending {
            return None;
        }
        let freed = seg.data.len();
        seg.data = Bytes::new();
        seg.parts = Vec::new();
        seg.spill = Spill::Disk(path);
        self.held -= freed;
        self.pending -= freed;
        Some(freed)
    }

    /// Writing segment `seq` failed: it stays in memory.
    pub(super) fn spill_failed(&mut self, seq: u64) {
        if let Some(seg) = self.complete_mut(seq)
            && seg.spill == Spill::Pending
        {
            seg.spill = Spill::Memory;
            let len = seg.data.len();
            self.pending -= len;
        }
    }

    /// Bytes of segments being written to disk (still in memory).
    pub(super) fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Files of spilled segments that have left the window since the last call.
    pub(super) fn take_dropped_files(&mut self) -> Vec<Arc<PathBuf>> {
        std::mem::take(&mut self.dropped_files)
    }

    /// Every file of a spilled segment still held.
    #[cfg(test)]
    pub(super) fn spilled_files(&self) -> impl Iterator<Item = &Arc<PathBuf>> {
        self.retired
            .iter()
            .chain(self.live.iter())
            .filter_map(|s| match &s.spill {
                Spill::Disk(p) => Some(p),
                _ => None,
            })
    }

    fn complete_mut(&mut self, seq: u64) -> Option<&mut Segment> {
        self.live
            .iter_mut()
            .chain(self.retired.iter_mut())
            .find(|s| s.seq == seq)
    }

    /// Wall-clock time of the oldest complete segment held (retired or listed).
    pub(super) fn oldest_wallclock(&self) -> Option<SystemTime> {
        self.retired
            .front()
            .or(self.live.front())
            .map(|s| s.wallclock)
    }

    /// `EXT-X-MEDIA-SEQUENCE`: the number of the first listed segment. Only grows
    /// (HLS2 §6.2.2).
    pub(super) fn media_sequence(&self) -> u64 {
        self.live
            .front()
            .or(self.open.as_ref())
            .map_or(self.next_seq, |s| s.seq)
    }

    /// Every complete segment held, retired then listed, oldest first.
    pub(super) fn held(&self) -> impl Iterator<Item = &Segment> {
        self.retired.iter().chain(self.live.iter())
    }

    /// The complete, listed segments, oldest first.
    pub(super) fn segments(&self) -> impl DoubleEndedIterator<Item = &Segment> {
        self.live.iter()
    }

    /// The segment being filled, if any.
    pub(super) fn open(&self) -> Option<&Segment> {
        self.open.as_ref()
    }

    /// Number of complete listed segments.
    pub(super) fn len(&self) -> usize {
        self.live.len()
    }

    /// Whether at least one complete segment is listed.
    pub(super) fn has_complete(&self) -> bool {
        !self.live.is_empty()
    }

    /// Whether nothing at all was published yet.
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.live.is_empty() && self.open.is_none()
    }

    /// Sequence number the next new segment will get.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The newest position (for rendition reports and blocking reload).
    pub(super) fn position(&self) -> Option<Position> {
        if let Some(o) = &self.open {
            return Some(Position {
                msn: o.seq,
                part: o.parts.len().checked_sub(1),
            });
        }
        self.live.back().map(|s| Position {
            msn: s.seq,
            part: s.parts.len().checked_sub(1),
        })
    }

    /// A complete segment (listed or retired) by sequence number.
    pub(super) fn get(&self, seq: u64) -> Option<&Segment> {
        self.live
            .iter()
            .rev()
            .chain(self.retired.iter().rev())
            .find(|s| s.seq == seq)
    }

    /// A part of a complete or open segment.
    pub(super) fn part(&self, seq: u64, index: usize) -> Option<&Part> {
        match &self.open {
            Some(o) if o.seq == seq => o.parts.get(index),
            _ => self.get(seq)?.parts.get(index),
        }
    }

    /// Whether a blocking playlist request for `msn` (and `part`) can be answered
    /// (HLS2 §6.2.5.2): without a part, segment `msn` must be complete; with one, that part
    /// must exist, a part index past the end of a complete segment meaning the first part
    /// of the next one.
    pub(super) fn reached(&self, msn: u64, part: Option<usize>) -> bool {
        let Some(pos) = self.position() else {
            return false;
        };
        let complete = self.live.back().is_some_and(|s| s.seq >= msn);
        match part {
            None => complete,
            // An older segment: it is complete and the next one has begun.
            Some(_) if msn < pos.msn => true,
            Some(i) if msn == pos.msn => match pos.part {
                Some(last) => last >= i,
                // A whole segment (no parts) satisfies any part of itself.
                None => complete,
            },
            Some(_) => false,
        }
    }

    /// Whether `seq` is listed in the playlist (as opposed to retired or unknown).
    #[cfg(test)]
    pub(super) fn is_listed(&self, seq: u64) -> bool {
        self.live.iter().any(|s| s.seq == seq)
    }

    /// Duration of the longest listed segment.
    #[cfg(test)]
    pub(super) fn max_duration(&self) -> Duration {
        self.live
            .iter()
            .map(|s| s.duration)
            .max()
            .unwrap_or_default()
    }

    /// Total listed duration (complete segments and the open one).
    pub(super) fn total_duration(&self) -> Duration {
        self.live.iter().map(|s| s.duration).sum::<Duration>()
            + self.open.as_ref().map_or(Duration::ZERO, |o| o.duration)
    }

    /// Bytes held (listed, retired, open), for memory accounting. O(parts of the open
    /// segment): complete segments are counted as they come and go.
    pub(super) fn bytes(&self) -> usize {
        self.held
            + self
                .open
                .as_ref()
                .map_or(0, |o| o.parts.iter().map(|p| p.data.len()).sum())
    }
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
