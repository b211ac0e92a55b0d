// What the 4-bit and 8-bit blockwise quantizers share: the per-block absmax and its f32 reciprocal.

const f32 = Math.fround;

/** 1 / absmax as the kernel computes it (f32). Zero gives Infinity, so an all-zero block scales
 * to NaN and encodes to code 0, as on CUDA (its dequantized values are still 0). */
export function inverseAbsmax(absmax: number): number {
  return f32(1 / absmax);
}

/** Per-block max |x| of the flattened input, in f32. */
export function blockAbsmax(x: Float32Array, blocksize: number): Float32Array {
  const blocks = Math.ceil(x.length / blocksize);
  const absmax = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    let m = 0;
    const end = Math.min(x.length, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) {
      const a = Math.abs(x[i]);
      if (a > m) m = a;
    }
    absmax[b] = m;
  }
  return absmax;
}
