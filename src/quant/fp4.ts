// FP4 as bitsandbytes defines it: 1 sign bit (0b1000) and 3 magnitude bits that index
// [0, 0.0625, 8, 12, 4, 6, 2, 3] / 12 (csrc/kernels.cu: fp4_dequantization_lut, dQuantizeFP4).

const f32 = Math.fround;

/** FP4 code -> value in code order (not sorted). Codes 8..15 are the negatives of 0..7;
 * code 8 is -0.0. Equal in f32 to get_4bit_type('fp4') (data / 12), which bitsandbytes
 * stores as `quant_map`, and to the CUDA dequantization LUT. */
export const FP4_TABLE: Float32Array = (() => {
  const mags = [0, 0.0625, 8, 12, 4, 6, 2, 3];
  const t = new Float32Array(16);
  for (let i = 0; i < 8; i++) {
    t[i] = f32(mags[i] / 12);
    t[i + 8] = -t[i];
  }
  return t;
})();

// dQuantizeFP4's pivots (already divided by 12), as f32 literals. Each is the midpoint of two
// adjacent magnitudes; comparisons are strict, so a tie goes to the smaller magnitude.
const P = {
  mid34: f32(0.29166667), // between 3/12 and 4/12
  mid68: f32(0.583333), // between 6/12 and 8/12
  mid8_12: f32(0.8333333), // between 8/12 and 12/12
  mid46: f32(0.4166667), // between 4/12 and 6/12
  mid_s2: f32(0.0859375), // between 0.0625/12 and 2/12
  mid23: f32(0.20833333), // between 2/12 and 3/12
  mid0s: f32(0.00260417), // between 0 and 0.0625/12
};

/** Encodes a normalised value to an FP4 code exactly as dQuantizeFP4: the sign bit is set for
 * x < 0 only (so -0.0 and NaN encode as +0), then a binary search on |x|. */
export function encodeFP4(x: number): number {
  const sign = x < 0 ? 0b1000 : 0;
  const a = Math.abs(x);
  if (a > P.mid34) {
    if (a > P.mid68) return (a > P.mid8_12 ? 0b0011 : 0b0010) + sign;
    return (a > P.mid46 ? 0b0101 : 0b0100) + sign;
  }
  if (a > P.mid_s2) return (a > P.mid23 ? 0b0111 : 0b0110) + sign;
  return (a > P.mid0s ? 0b0001 : 0b0000) + sign;
}
