// NF4 (QLoRA's NormalFloat 4-bit): a 16-entry lookup table, not a float format.
// Values and the encode decision tree follow bitsandbytes' CUDA kernels
// (csrc/kernels.cu: nf4_dequantization_lut, dQuantizeNF4), which produce the
// checkpoints found in the wild.

const f32 = Math.fround;

/** NF4 code -> value, code index 0..15 (sorted ascending; code 7 is 0.0). Hardcoded as in bitsandbytes:
 * regenerating it from normal quantiles differs in one entry by ~2e-7. */
export const NF4_TABLE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
  -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
  0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

// The decision thresholds of dQuantizeNF4 as float literals (`...f` in CUDA). They are the
// midpoints between adjacent table entries, computed by bitsandbytes in f64 and then rounded
// to f32. Comparisons are strict `x > t`, so a value exactly on a threshold gets the LOWER code.
const T = {
  c0: f32(0.03979014977812767),
  c1: f32(0.3893125355243683),
  c11: f32(0.6427869200706482),
  c111: f32(0.8614784181118011),
  c110: f32(0.5016634166240692),
  c10: f32(0.2035212516784668),
  c101: f32(0.2920137718319893),
  c100: f32(0.1202552504837513),
  c0n: f32(-0.33967943489551544),
  c01: f32(-0.13791173323988914),
  c011: f32(-0.045525018125772476),
  c010: f32(-0.23460740596055984),
  c00: f32(-0.6106329262256622),
  c001: f32(-0.4599952697753906),
  c000: f32(-0.8480964004993439),
};

/** The NF4 thresholds in ascending order: code c is chosen for t[c-1] < x <= t[c]. */
export const NF4_THRESHOLDS: Float32Array = Float32Array.from([
  T.c000,
  T.c00,
  T.c001,
  T.c0n,
  T.c010,
  T.c01,
  T.c011,
  T.c0,
  T.c100,
  T.c10,
  T.c101,
  T.c1,
  T.c110,
  T.c11,
  T.c111,
]);

/** Encodes a normalised value (x / absmax, ideally in [-1, 1]) to an NF4 code exactly as
 * dQuantizeNF4 does. Out-of-range values clamp to the end codes; NaN falls through every
 * comparison to code 0 (what the kernel does for an all-zero block, where x * (1/0) is NaN). */
export function encodeNF4(x: number): number {
  if (x > T.c0) {
    if (x > T.c1) {
      if (x > T.c11) return x > T.c111 ? 0b1111 : 0b1110;
      return x > T.c110 ? 0b1101 : 0b1100;
    }
    if (x > T.c10) return x > T.c101 ? 0b1011 : 0b1010;
    return x > T.c100 ? 0b1001 : 0b1000;
  }
  if (x > T.c0n) {
    if (x > T.c01) return x > T.c011 ? 0b0111 : 0b0110;
    return x > T.c010 ? 0b0101 : 0b0100;
  }
  if (x > T.c00) return x > T.c001 ? 0b0011 : 0b0010;
  return x > T.c000 ? 0b0001 : 0b0000;
}
