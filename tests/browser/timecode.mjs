// Decoder of the capture-time barcode that the test publisher paints into every video frame
// (tests/common/publisher.rs, `paint_timecode`; keep the two in step).
//
// Layout: the top third of the picture is a grid of 16 columns × 5 rows of blocks. Row 0
// calibrates (white, black, white, …); rows 1–4 carry 64 bits, most significant first, row by
// row, left to right, white = 1: 48 bits of wall-clock ms since the Unix epoch, then
// CRC-16/CCITT-FALSE of those 6 bytes.
//
// `decodeTimecode` is pure and self-contained (no closures over module state) so that the very
// same function source runs in node (unit checks) and in the page (`toString()` injection).

/**
 * Decodes the barcode from the luma of the grid area, at any scale.
 * @param {ArrayLike<number>} luma  w*h luma values (row-major) covering exactly the grid area
 *   (the top 5/15 of the picture, full width)
 * @param {number} w
 * @param {number} h
 * @returns {{ms: number, contrast: number, margin: number} | {error: string}}
 */
export function decodeTimecode(luma, w, h) {
  const COLS = 16;
  const ROWS = 5;
  // Mean luma over the central half of block (c, r): away from edges that scaling and
  // compression smear.
  const sample = (c, r) => {
    const x0 = (c * w) / COLS;
    const x1 = ((c + 1) * w) / COLS;
    const y0 = (r * h) / ROWS;
    const y1 = ((r + 1) * h) / ROWS;
    const bw = x1 - x0;
    const bh = y1 - y0;
    let xa = Math.floor(x0 + bw / 4);
    let xb = Math.ceil(x1 - bw / 4);
    let ya = Math.floor(y0 + bh / 4);
    let yb = Math.ceil(y1 - bh / 4);
    if (xb <= xa) xb = xa + 1;
    if (yb <= ya) yb = ya + 1;
    let sum = 0;
    let n = 0;
    for (let y = ya; y < yb && y < h; y++) {
      for (let x = xa; x < xb && x < w; x++) {
        sum += luma[y * w + x];
        n++;
      }
    }
    return n ? sum / n : 0;
  };
  if (!(w >= COLS && h >= ROWS)) return { error: 'too small' };
  let whiteSum = 0;
  let blackSum = 0;
  let whiteMin = Infinity;
  let blackMax = -Infinity;
  for (let c = 0; c < COLS; c++) {
    const v = sample(c, 0);
    if (c % 2 === 0) {
      whiteSum += v;
      whiteMin = Math.min(whiteMin, v);
    } else {
      blackSum += v;
      blackMax = Math.max(blackMax, v);
    }
  }
  const contrast = whiteMin - blackMax;
  // Video range 16..235 maps to about 0..255 in RGB; demand a clear separation.
  if (contrast < 64) return { error: 'calibration' };
  const threshold = (whiteSum + blackSum) / COLS;
  const bytes = new Array(8).fill(0);
  let margin = Infinity;
  for (let i = 0; i < 64; i++) {
    const v = sample(i % COLS, 1 + Math.floor(i / COLS));
    margin = Math.min(margin, Math.abs(v - threshold));
    if (v > threshold) bytes[i >> 3] |= 0x80 >> (i & 7);
  }
  let crc = 0xffff;
  for (let i = 0; i < 6; i++) {
    crc ^= bytes[i] << 8;
    for (let k = 0; k < 8; k++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  if (crc !== ((bytes[6] << 8) | bytes[7])) return { error: 'crc' };
  let ms = 0;
  for (let i = 0; i < 6; i++) ms = ms * 256 + bytes[i];
  return { ms, contrast: Math.round(contrast), margin: Math.round(margin) };
}

/** The grid area of a full w×h luma plane (top 5/15 of the rows), as [luma, w, h]. */
export function gridArea(plane, w, h) {
  const rows = Math.floor((5 * h) / 15);
  return [plane.subarray(0, rows * w), w, rows];
}

/** Box-downscales a w×h luma plane by an integer factor. */
export function downscale(plane, w, h, f) {
  const ow = Math.floor(w / f);
  const oh = Math.floor(h / f);
  const out = new Uint8Array(ow * oh);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let s = 0;
      for (let dy = 0; dy < f; dy++) for (let dx = 0; dx < f; dx++) s += plane[(y * f + dy) * w + x * f + dx];
      out[y * ow + x] = Math.round(s / (f * f));
    }
  }
  return [out, ow, oh];
}

/**
 * Known-answer checks of the decoder against a reference luma plane painted by the Rust
 * publisher code (`timecode_reference_luma`): full size, 2× and 4× downscaled, with noise; and
 * corrupted copies that must be rejected. Returns a list of failures (empty = pass).
 */
export function selfCheck(plane, w, h, expectedMs) {
  const failures = [];
  const expect = (what, r, ok) => {
    if (!ok(r)) failures.push(`${what}: got ${JSON.stringify(r)}`);
  };
  const is = (r) => r.ms === expectedMs;
  expect('full size', decodeTimecode(...gridArea(plane, w, h)), is);
  for (const f of [2, 4]) {
    const [p, ow, oh] = downscale(plane, w, h, f);
    expect(`downscaled ${f}x`, decodeTimecode(...gridArea(p, ow, oh)), is);
  }
  // Deterministic noise of ±40 on every pixel.
  const noisy = Uint8Array.from(plane, (v, i) => Math.max(0, Math.min(255, v + ((i * 7919) % 81) - 40)));
  expect('noise ±40', decodeTimecode(...gridArea(noisy, w, h)), is);
  // A flipped data block (row 2, column 5) must fail the CRC, not give another time.
  const flipped = plane.slice();
  const rows = Math.floor((5 * h) / 15);
  const bx0 = Math.floor((5 * w) / 16);
  const bx1 = Math.floor((6 * w) / 16);
  const by0 = Math.floor((2 * rows) / 5);
  const by1 = Math.floor((3 * rows) / 5);
  for (let y = by0; y < by1; y++) for (let x = bx0; x < bx1; x++) flipped[y * w + x] = flipped[y * w + x] > 128 ? 16 : 235;
  expect('one block flipped', decodeTimecode(...gridArea(flipped, w, h)), (r) => r.error === 'crc');
  // A picture without a barcode (flat grey) must be rejected.
  expect('no barcode', decodeTimecode(new Uint8Array(w * rows).fill(128), w, rows), (r) => r.error === 'calibration');
  return failures;
}
