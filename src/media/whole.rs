//! Frames that lost their first slices are not passed through. Pure.
//!
//! Why: a publisher's encoder splits a big frame into many slices (Chromium's OpenH264
//! keeps each under an RTP packet). When the first packets of a keyframe are lost, what
//! survived of it still reaches the passthrough rung: as a frame of its own, or appended
//! to the previous picture's access unit by the depayloader and parser, which take slices
//! that do not start a picture for more of the current one. `rtph264depay
//! wait-for-keyframe` drops the predicted frames after a loss until a keyframe, but takes
//! any unit holding IDR slices for one. Decoded, such a frame is an error, not a
//! blemish: FFmpeg's H.264 decoder rejects a slice whose `frame_num` differs from its
//! picture's ("Frame num change from 4 to 0", AVERROR_INVALIDDATA), and Chromium, which
//! decodes with it, then fails the media element (`PIPELINE_ERROR_DECODE`: "Failed to
//! send video packet for decoding … is_key_frame=0"); hls.js recovers by resetting its
//! MediaSource, which stalls playback. Measured on a loaded machine (tests/simulcast.rs
//! beside a busy loop): Chromium's decode error in several runs, and ffmpeg reading those
//! runs' recordings reported "Frame num change from N to 0" on the top layer.
//!
//! Checked: the first slice is the first of its picture (`first_mb_in_slice` 0, ITU-T
//! H.264 §7.4.3), and IDR and non-IDR slices are not mixed. A frame missing a later slice
//! decodes with concealed macroblocks, and telling that apart needs the slice data
//! parsed: not checked. rung.rs `replace_broken_frames`, on the parsed H.264 before the
//! tee that feeds the passthrough rung and the decoder, replaces a frame that fails the
//! check, and every frame after it up to the next keyframe that passes, by copies of the
//! last whole keyframe (drops them before any), and asks the publisher for that keyframe.

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Pass it on.
    Pass,
    /// Keep it out (rung.rs puts a repeat of the last whole keyframe in its place);
    /// `ask_keyframe`: and ask the publisher for a keyframe (once per loss).
    Replace { ask_keyframe: bool },
}

/// The state of one passthrough stream: whether it waits for a whole keyframe.
#[derive(Debug, Default)]
pub(crate) struct Whole {
    waiting: bool,
    broken: u64,
}

impl Whole {
    /// Judges a frame: `keyframe` as the buffer says; `whole` what [`looks_whole`] says of
    /// it (`None`, no slice at all: passed).
    pub(crate) fn judge(&mut self, keyframe: bool, whole: Option<bool>) -> Verdict {
        if whole == Some(false) {
            let ask_keyframe = !self.waiting;
            self.waiting = true;
            self.broken += 1;
            return Verdict::Replace { ask_keyframe };
        }
        if self.waiting && !keyframe {
            self.broken += 1;
            return Verdict::Replace {
                ask_keyframe: false,
            };
        }
        self.waiting = false;
        Verdict::Pass
    }

    /// Frames kept out so far.
    pub(crate) fn broken(&self) -> u64 {
        self.broken
    }
}

/// Whether an access unit in AVC form (`stream-format=avc`: each NAL unit after a 4-byte
/// big-endian length, ISO/IEC 14496-15 §5.3.3, h264parse's output) looks whole at its
/// start: its first coded slice is the first of its picture (`first_mb_in_slice`, the
/// first field of the slice header, §7.3.3, is 0: as ue(v), a single `1` bit), and its
/// slices are all IDR slices or all not (§7.4.1.2.4: an IDR picture has IDR slices only).
/// A unit with both is a picture followed by the slices that survived of a keyframe whose
/// first packets were lost: the parser took them for more of the same picture. `None`
/// when the unit holds no coded slice (NAL unit types 1 and 5) or is malformed.
pub(crate) fn looks_whole(au: &[u8]) -> Option<bool> {
    let mut at = 0;
    let mut first: Option<(u8, bool)> = None;
    while at + 4 <= au.len() {
        let len = u32::from_be_bytes(au[at..at + 4].try_into().ok()?) as usize;
        let nal = au.get(at + 4..at + 4 + len)?;
        let kind = nal.first()? & 0x1f;
        if kind == 1 || kind == 5 {
            match first {
                // The slice header starts right after the one-byte NAL header; a first
                // byte with its top bit set cannot hold an emulation prevention byte.
                None => first = Some((kind, nal.get(1)? & 0x80 != 0)),
                Some((k, _)) if k != kind => return Some(false),
                Some(_) => {}
            }
        }
        at += 4 + len;
    }
    first.map(|(_, top)| top)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An access unit of NAL units in AVC form.
    fn au(nals: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for n in nals {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n);
        }
        out
    }

    const SPS: &[u8] = &[0x67, 0x42, 0xc0, 0x1f];
    /// IDR slice, first_mb_in_slice = 0 (`1…`).
    const IDR_TOP: &[u8] = &[0x65, 0x88, 0x84];
    /// IDR slice, first_mb_in_slice = 3 (`00100…`).
    const IDR_LATER: &[u8] = &[0x65, 0x20, 0x84];
    /// Non-IDR slice, first_mb_in_slice = 0.
    const P_TOP: &[u8] = &[0x41, 0x9a, 0x02];
    /// Non-IDR slice, first_mb_in_slice = 1 (`010`).
    const P_LATER: &[u8] = &[0x41, 0x40, 0x02];

    #[test]
    fn the_first_coded_slice_decides() {
        assert_eq!(looks_whole(&au(&[SPS, IDR_TOP, IDR_LATER])), Some(true));
        assert_eq!(looks_whole(&au(&[SPS, IDR_LATER])), Some(false));
        assert_eq!(looks_whole(&au(&[P_TOP, P_LATER])), Some(true));
        assert_eq!(looks_whole(&au(&[P_LATER])), Some(false));
        // A picture, then what survived of a keyframe that lost its first slices.
        assert_eq!(looks_whole(&au(&[P_TOP, P_LATER, IDR_LATER])), Some(false));
        // No slice, or a length past the end: not judged.
        assert_eq!(looks_whole(&au(&[SPS])), None);
        assert_eq!(looks_whole(&[0, 0, 0, 9, 0x65, 0x88]), None);
        assert_eq!(looks_whole(&[]), None);
    }

    #[test]
    fn a_keyframe_without_its_first_slice_is_kept_out_with_what_follows_until_a_whole_one() {
        let mut w = Whole::default();
        assert_eq!(w.judge(true, Some(true)), Verdict::Pass);
        assert_eq!(w.judge(false, Some(true)), Verdict::Pass);
        // The keyframe that lost its first slice: kept out, a keyframe asked for once.
        assert_eq!(
            w.judge(true, Some(false)),
            Verdict::Replace { ask_keyframe: true }
        );
        // The frames predicted from it, whole or not: kept out, nothing asked again.
        assert_eq!(
            w.judge(false, Some(true)),
            Verdict::Replace {
                ask_keyframe: false
            }
        );
        assert_eq!(
            w.judge(true, Some(false)),
            Verdict::Replace {
                ask_keyframe: false
            }
        );
        // A whole keyframe ends it.
        assert_eq!(w.judge(true, Some(true)), Verdict::Pass);
        assert_eq!(w.judge(false, Some(true)), Verdict::Pass);
        assert_eq!(w.broken(), 3);
    }

    #[test]
    fn a_predicted_frame_without_its_first_slice_waits_for_a_keyframe_too() {
        let mut w = Whole::default();
        assert_eq!(
            w.judge(false, Some(false)),
            Verdict::Replace { ask_keyframe: true }
        );
        assert_eq!(
            w.judge(false, None),
            Verdict::Replace {
                ask_keyframe: false
            }
        );
        assert_eq!(w.judge(true, Some(true)), Verdict::Pass);
        // Units without slices (nothing to judge) pass.
        assert_eq!(w.judge(false, None), Verdict::Pass);
    }
}
