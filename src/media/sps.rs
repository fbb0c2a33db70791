//! The picture size an H.264 sequence parameter set declares (ITU-T H.264 §7.3.2.1.1),
//! read from an RTP payload that carries one. Pure.
//!
//! Why: a simulcast publisher's layers are planned (which is the top one, what each
//! rendition is called, which ladder rungs they cover) before any pipeline exists, from the
//! SPS that precedes each layer's keyframes. Only the fields up to the frame cropping are
//! read; VUI is not.

/// The size `(width, height)` in pixels of the first SPS in an H.264 RTP payload (RFC 6184:
/// a single NAL unit or inside a STAP-A, §5.7.1), after cropping. `None` when the payload
/// carries no SPS or one that cannot be read.
pub fn h264_sps_size(payload: &[u8]) -> Option<(u32, u32)> {
    match payload.first().map(|b| b & 0x1f)? {
        7 => sps_size(payload),
        24 => super::rtp::stap_a_units(payload.get(1..)?)
            .find(|nal| nal[0] & 0x1f == 7)
            .and_then(sps_size),
        _ => None,
    }
}

/// The size an SPS NAL unit (with its one-byte header) declares.
fn sps_size(nal: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(nal.get(1..)?);
    let mut r = Bits::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.bits(16)?; // constraint flags, reserved bits, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            // seq_scaling_matrix_present_flag: skip the lists (§7.3.2.1.1.1).
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()?.checked_add(1)?;
    let height_map_units = r.ue()?.checked_add(1)?;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.bit()? {
        crop_l = r.ue()?;
        crop_r = r.ue()?;
        crop_t = r.ue()?;
        crop_b = r.ue()?;
    }
    // Crop units (§7.4.2.1.1, Table 6-1): 4:2:0 halves both, 4:2:2 the width only.
    let field = if frame_mbs_only { 1 } else { 2 };
    let (sub_w, sub_h) = match (chroma_format_idc, separate_colour_plane) {
        (1, false) => (2, 2),
        (2, false) => (2, 1),
        _ => (1, 1),
    };
    let (unit_x, unit_y) = if chroma_format_idc == 0 || separate_colour_plane {
        (1, field)
    } else {
        (sub_w, sub_h * field)
    };
    let width = width_mbs.checked_mul(16)?;
    let height = height_map_units.checked_mul(16 * field)?;
    let width = width.checked_sub(unit_x * crop_l.checked_add(crop_r)?)?;
    let height = height.checked_sub(unit_y * crop_t.checked_add(crop_b)?)?;
    (width > 0 && height > 0 && width <= 16_384 && height <= 16_384).then_some((width, height))
}

/// The RBSP of a NAL unit's payload: every emulation-prevention byte (`00 00 03`) removed
/// (§7.4.1).
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// A big-endian bit reader with Exp-Golomb codes (§9.1).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> Option<bool> {
        let byte = self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | u32::from(self.bit()?);
        }
        Some(v)
    }

    /// `ue(v)`; values beyond 32 bits are refused (no valid SPS field has them).
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        ((1u64 << zeros) - 1 + u64::from(rest)).try_into().ok()
    }

    /// `se(v)`.
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// An SPS GStreamer's x264enc wrote (webrtcbin's offer fmtp, base64
    /// `Z0LAH9kAUAW7ARAAAAMAEAAAAwPI8YMkgA==`): constrained baseline, 1280x720, with
    /// emulation-prevention bytes.
    const X264_720P: &str = "6742c01fd9005005bb0110000003001000000303c8f1832480";

    #[test]
    fn sizes_of_real_parameter_sets() {
        assert_eq!(h264_sps_size(&hex(X264_720P)), Some((1280, 720)));
        // x264enc (GStreamer 1.22) High 1920x1080 (8 lines cropped) and constrained
        // baseline 320x180 (12 lines cropped): 1080 and 180 are not multiples of 16.
        let high = "67640028acd940780227e5c05a808080a0000003002000000791e30632c0";
        assert_eq!(h264_sps_size(&hex(high)), Some((1920, 1080)));
        let small = "6742c015d901419f9f016a0c0c0d4a000003000200000300791e2c5c90";
        assert_eq!(h264_sps_size(&hex(small)), Some((320, 180)));
    }

    #[test]
    fn inside_a_stap_a() {
        let sps = hex(X264_720P);
        let mut stap = vec![0x78];
        stap.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        stap.extend_from_slice(&sps);
        stap.extend_from_slice(&[0, 2, 0x68, 0xce]);
        assert_eq!(h264_sps_size(&stap), Some((1280, 720)));
        // PPS only, or an IDR slice: no size.
        assert_eq!(h264_sps_size(&[0x78, 0, 2, 0x68, 0xce]), None);
        assert_eq!(h264_sps_size(&[0x65, 0x88, 0x84]), None);
    }

    #[test]
    fn truncated_or_garbage_is_none() {
        let sps = hex(X264_720P);
        // The size is read by byte 9; any shorter prefix lacks it.
        for n in 0..8 {
            assert_eq!(h264_sps_size(&sps[..n]), None, "{n}");
        }
        assert_eq!(h264_sps_size(&[0x67, 0, 0, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(h264_sps_size(&[0x78, 0xff, 0xff, 0x67]), None);
        assert_eq!(h264_sps_size(&[]), None);
    }
}
