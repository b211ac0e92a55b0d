// The shared per-op test harness: a Case is a one-op graph with its feeds and weights;
// an OpCase generates random Cases (fast-check) and computes the expected result with
// an independent reference formula. Backend-neutral: any backend runs `graph` on
// `feeds`/`weights` and compares output OUT with `reference(c)` via expectClose.
import fc from 'fast-check';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import { type DType, isFloat } from '../../src/ir/dtype.ts';
import type { Attrs, Graph, TensorType } from '../../src/ir/graph.ts';
import { formatShape, numel, type Shape } from '../../src/ir/shape.ts';
import { allocFor, type Tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import type { Rng } from '../../src/util/rng.ts';

/** Name of the graph output holding the op's result. */
export const OUT = 'out';
/** Default tolerance for an f32 backend against the f64 reference: |a - e| <= tol * (1 + |e|). */
export const DEFAULT_TOL = 1e-5;

export interface Case {
  readonly graph: Graph;
  readonly feeds: Record<string, Tensor>;
  readonly weights: MapWeightStore;
  /** The op's input tensors in order and its attrs after schema defaults (what `reference` reads). */
  readonly inputs: readonly Tensor[];
  readonly attrs: Attrs;
  readonly out: TensorType;
}

export interface OpCase {
  readonly arb: fc.Arbitrary<Case>;
  /** Expected value of output OUT, computed in f64 (Float64Array for floats). */
  reference(c: Case): Tensor;
  /** Tolerance for an f32 backend (default DEFAULT_TOL). */
  readonly tol?: number;
}

export type Bind = 'input' | 'param';
export interface CaseInput {
  readonly t: Tensor;
  readonly as?: Bind;
}

/** A graph with one `op` node (in scope `model.case`) over inputs bound as feeds or params. */
export function opCase(op: string, ins: readonly (Tensor | CaseInput)[], attrs: Attrs = {}): Case {
  const b = new GraphBuilder();
  const feeds: Record<string, Tensor> = {};
  const weights = new MapWeightStore();
  const vals: Value[] = ins.map((x, i) => {
    const { t, as = 'input' } = 't' in x ? x : { t: x };
    if (as === 'param') {
      weights.set(`model.case.w${i}`, t);
      return b.param(`model.case.w${i}`, t.dtype, t.shape);
    }
    feeds[`x${i}`] = t;
    return b.input(`x${i}`, t.dtype, t.shape);
  });
  const y = b.withScope('model.case', () => b.emit(op, vals, attrs));
  const graph = b.build({ [OUT]: y });
  const inputs = ins.map((x) => ('t' in x ? x.t : x));
  return { graph, feeds, weights, inputs, attrs: graph.node(y.id).attrs, out: y.type };
}

// --- random data -----------------------------------------------------------------

export interface Range {
  readonly lo?: number;
  readonly hi?: number;
  /** Integer values (always for integer dtypes). */
  readonly int?: boolean;
}

/** A tensor of seeded random values, exactly representable in its dtype (floats are f32-rounded). */
export function randTensor(rng: Rng, dtype: DType, shape: Shape, range: Range = {}): Tensor {
  const { lo = -3, hi = 3 } = range;
  const int = range.int || !isFloat(dtype);
  const data = allocFor(dtype, numel(shape));
  for (let i = 0; i < data.length; i++) {
    const u = rng.uniform(lo, hi);
    data[i] = int ? Math.floor(rng.uniform(lo, hi + 1)) : Math.fround(u);
  }
  return { dtype, shape: [...shape], data };
}

export function tensorOf(dtype: DType, shape: Shape, values: ArrayLike<number>): Tensor {
  const data = allocFor(dtype, numel(shape));
  data.set(Array.from(values));
  return { dtype, shape: [...shape], data };
}

/** Dims from 1 to max, with 1 (broadcast/edge) and odd sizes common. */
export const dim = (max = 5) => fc.oneof(fc.constant(1), fc.integer({ min: 1, max }));
export const shapeArb = (minRank: number, maxRank: number, max = 4) =>
  fc.array(dim(max), { minLength: minRank, maxLength: maxRank });
export const seedArb = fc.integer({ min: 1, max: 0x7fffffff });

/** A shape that broadcasts to `full`: some leading axes dropped, some axes set to 1. */
export function broadcastFrom(rng: Rng, full: Shape): number[] {
  const drop = Math.floor(rng.uniform(0, full.length + 1));
  return full.slice(drop).map((d) => (rng.next() < 0.3 ? 1 : d));
}

export function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[Math.floor(rng.next() * xs.length)];
}

// --- index arithmetic for the reference formulas (independent of any backend) ---------

export function unravel(flat: number, shape: Shape): number[] {
  const idx = new Array<number>(shape.length);
  for (let a = shape.length - 1; a >= 0; a--) {
    idx[a] = flat % shape[a];
    flat = Math.floor(flat / shape[a]);
  }
  return idx;
}

export function ravel(idx: readonly number[], shape: Shape): number {
  let flat = 0;
  for (let a = 0; a < shape.length; a++) flat = flat * shape[a] + idx[a];
  return flat;
}

/** t read at an index of a (larger) broadcast shape: right-aligned, size-1 axes read 0. */
export function readBroadcast(t: Tensor, outIdx: readonly number[]): number {
  const off = outIdx.length - t.shape.length;
  return t.data[
    ravel(
      t.shape.map((d, a) => (d === 1 ? 0 : outIdx[a + off])),
      t.shape,
    )
  ];
}

export function at(t: Tensor, ...idx: number[]): number {
  return t.data[ravel(idx, t.shape)];
}

/** The expected tensor: `f` of each output multi-index (floats held in f64). */
export function build(dtype: DType, shape: Shape, f: (idx: number[]) => number): Tensor {
  const n = numel(shape);
  const data = isFloat(dtype) ? new Float64Array(n) : allocFor(dtype, n);
  for (let i = 0; i < n; i++) data[i] = f(unravel(i, shape));
  return { dtype, shape: [...shape], data };
}

// --- comparison --------------------------------------------------------------------

/**
 * Throws unless `actual` has expected's dtype and shape and every element is within
 * tol * (1 + |expected|) (NaN matches NaN, infinities must be equal). The message gives
 * the worst element's index, both values, the max error and how many elements are off.
 */
export function expectClose(actual: Tensor, expected: Tensor, tol: number, label: string): void {
  const ta = `${actual.dtype}${formatShape(actual.shape)}`;
  const te = `${expected.dtype}${formatShape(expected.shape)}`;
  if (ta !== te) throw new Error(`${label}: got ${ta}, expected ${te}`);
  let worst = -1;
  let worstErr = 0;
  let off = 0;
  for (let i = 0; i < expected.data.length; i++) {
    const a = actual.data[i];
    const e = expected.data[i];
    if (a === e || (Number.isNaN(a) && Number.isNaN(e))) continue;
    const err = Number.isFinite(a) && Number.isFinite(e) ? Math.abs(a - e) / (1 + Math.abs(e)) : Infinity;
    if (!(err <= tol)) {
      off++;
      if (worst < 0 || err > worstErr || Number.isNaN(err)) [worst, worstErr] = [i, err];
    }
  }
  if (off > 0) {
    const idx = unravel(worst, expected.shape);
    throw new Error(
      `${label}: ${off} of ${expected.data.length} elements differ; worst at [${idx.join(',')}] (flat ${worst}): ` +
        `got ${actual.data[worst]}, expected ${expected.data[worst]}, error ${worstErr} > tol ${tol} (relative to 1 + |expected|)`,
    );
  }
}
