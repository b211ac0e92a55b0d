// linear_4bit problems for the WGSL kernels, drawn so that a property run compiles a
// few pipelines, not one per draw. On a software adapter (lavapipe) compiling a tiled
// 4-bit pipeline costs seconds, and every field of the kernel's program description
// (quant type, blocksize, double quant, bias, path, orientation, word alignment, vec4
// loads of X, GEMV row count) makes its own pipeline: a fully random draw compiled a
// new one almost every run. Here the code-changing fields come from a fixed list that
// covers each value of each field (and every A-tile x B-tile loader pair the kernel
// composes independently), while the sizes the kernels read from uniforms (rows,
// out_features, in_features within the variant's alignment class, data) stay random.
import fc from 'fast-check';
import type { Problem } from './cases.ts';

/** The fields that change linear_4bit's WGSL (see kernels/quant4.ts descOf). */
export interface Variant {
  readonly name: string;
  /** GEMV with this many rows (unrolled in the code), or the tiled kernel. */
  readonly gemvRows?: number;
  readonly transpose: boolean;
  /** in_features % 8 == 0: whole-word decoding. */
  readonly aligned: boolean;
  /** Tiled only: the contraction size K % 4 == 0, X read as vec4s. */
  readonly vecX: boolean;
  readonly quantType: 'nf4' | 'fp4';
  readonly blocksize: number;
  readonly doubleQuant: boolean;
  readonly bias: boolean;
}

const QLORA = { quantType: 'nf4', blocksize: 64, doubleQuant: true, bias: false } as const;
const FP4 = (blocksize: number, doubleQuant: boolean, bias: boolean) =>
  ({ quantType: 'fp4', blocksize, doubleQuant, bias }) as const;

/**
 * Tiled: the four B-tile loaders (element-wise x W^T and x W, whole-word x W^T and
 * x W), the A-tile loader with and without vec4 on two each; GEMV: whole-word and
 * element-wise, 1 and 3 rows. Each quant type, blocksize 32..256 (on GEMV a uniform,
 * elsewhere a literal), double quant and bias on and off appear. The whole-word ones
 * are the QLoRA default (nf4, 64, double quant, no bias): the pipelines training a
 * 4-bit model compiles, so other files find them in the driver's shader cache.
 */
export const VARIANTS: readonly Variant[] = [
  { name: 'tiled xWt words vec4', ...QLORA, transpose: false, aligned: true, vecX: true },
  { name: 'tiled xWt elements', ...FP4(32, false, true), transpose: false, aligned: false, vecX: false },
  { name: 'tiled xW words vec4', ...QLORA, transpose: true, aligned: true, vecX: true },
  { name: 'tiled xW elements', ...FP4(128, true, false), transpose: true, aligned: false, vecX: false },
  { name: 'gemv 1 row words', ...QLORA, gemvRows: 1, transpose: false, aligned: true, vecX: true },
  {
    name: 'gemv 3 rows elements',
    ...FP4(256, false, true),
    gemvRows: 3,
    transpose: false,
    aligned: false,
    vecX: false,
  },
];

const upTo = (max: number, step: number, rest: number): fc.Arbitrary<number> =>
  fc.integer({ min: 0, max: Math.floor((max - rest) / step) }).map((k) => k * step + rest);
/** A size in 1..max that is a multiple of 8 (aligned) or not; for vec4 classes, of 4 or not. */
const size = (max: number, mult: number, yes: boolean): fc.Arbitrary<number> =>
  yes ? upTo(max, mult, mult) : fc.integer({ min: 1, max: mult - 1 }).chain((r) => upTo(max, mult, r));

/** A problem of this variant with random sizes and data. */
export function problemOf(v: Variant): fc.Arbitrary<Problem> {
  const rows: fc.Arbitrary<number[]> =
    v.gemvRows !== undefined
      ? fc.constant([v.gemvRows])
      : v.transpose
        ? fc.constantFrom([1], [3], [2, 5], [70])
        : fc.constantFrom([9], [2, 5], [70]);
  // x W^T: K = in_features, so vec4 follows alignment (words imply vec4); x W: K = out_features.
  const inF = v.aligned
    ? size(96, 8, true)
    : !v.transpose && v.gemvRows === undefined && v.vecX
      ? upTo(92, 8, 4)
      : !v.transpose && v.gemvRows === undefined
        ? size(90, 4, false)
        : size(90, 8, false);
  const outF = v.transpose ? size(40, 4, v.vecX) : fc.integer({ min: 1, max: 40 });
  return fc.record({ rows, outF, inF, seed: fc.integer({ min: 1, max: 1 << 30 }) }).map((s) => ({
    ...s,
    quantType: v.quantType,
    blocksize: v.blocksize,
    doubleQuant: v.doubleQuant,
    transpose: v.transpose,
    bias: v.bias,
  }));
}

/** The variant a problem compiles to (undefined: none of VARIANTS, a new pipeline). */
export function variantOf(p: Problem): Variant | undefined {
  const n = p.rows.reduce((a, b) => a * b, 1);
  const K = p.transpose ? p.outF : p.inF;
  return VARIANTS.find(
    (v) =>
      (v.gemvRows !== undefined ? !p.transpose && n === v.gemvRows : p.transpose || n > 8) &&
      v.transpose === p.transpose &&
      v.aligned === (p.inF % 8 === 0) &&
      (v.gemvRows !== undefined || v.vecX === (K % 4 === 0)) &&
      v.quantType === p.quantType &&
      v.blocksize === p.blocksize &&
      v.doubleQuant === p.doubleQuant &&
      (p.transpose || v.bias === p.bias),
  );
}

export const variantProblemArb: fc.Arbitrary<Problem> = fc.constantFrom(...VARIANTS).chain(problemOf);
