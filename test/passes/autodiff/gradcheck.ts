// Gradient checking harness: a problem is a graph with output OUT whose trainable
// params are the variables. The check builds loss = sum(out * c) for a random
// cotangent c, differentiates it with autodiff, and compares in float64 on the CPU:
//  - each sampled param element's gradient with a central finite difference, and
//  - the dot-product test <J t, c> = <t, J^T c>, J t by central differences of the
//    whole output along a random direction t, J^T c from autodiff.
// Tolerance: |a - b| <= TOL * (1 + scale), scale = |autodiff value| (per element) or
// sum_i |t_i (J^T c)_i| (dot test); step H. In f64 the difference error is ~1e-9.
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../../src/ir/builder.ts';
import type { DType } from '../../../src/ir/dtype.ts';
import { type Graph, type Node, paramName, paramRole } from '../../../src/ir/graph.ts';
import { numel, type Shape } from '../../../src/ir/shape.ts';
import type { Tensor } from '../../../src/ir/tensor.ts';
import { verify } from '../../../src/ir/verify.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { autodiff, GRAD_PREFIX } from '../../../src/passes/autodiff/index.ts';
import { Rng } from '../../../src/util/rng.ts';

export const OUT = 'out';
export const H = 1e-6;
export const TOL = 1e-6;
/** Elements per param checked one by one (all of them when the param is smaller). */
const SAMPLES = 10;

export interface Problem {
  readonly graph: Graph;
  /** The output to differentiate (default OUT). */
  readonly out?: string;
  readonly weights: MapWeightStore;
  readonly feeds: Record<string, Tensor>;
}

export interface Range {
  readonly lo?: number;
  readonly hi?: number;
}

function f64(dtype: DType, shape: Shape, fill: (i: number) => number): Tensor {
  const data = new Float64Array(numel(shape));
  for (let i = 0; i < data.length; i++) data[i] = fill(i);
  return { dtype, shape: [...shape], data };
}

/** Builds problems: variables (trainable params), frozen params, feeds, with seeded random values. */
export class Maker {
  readonly b = new GraphBuilder();
  readonly weights = new MapWeightStore();
  readonly feeds: Record<string, Tensor> = {};
  private n = 0;
  constructor(readonly rng: Rng) {}

  private values(shape: Shape, { lo = -2, hi = 2 }: Range): Tensor {
    return f64('f32', shape, () => this.rng.uniform(lo, hi));
  }

  /** A trainable param: a variable of the check. */
  v(shape: Shape, range: Range = {}, dtype: DType = 'f32'): Value {
    const name = `model.case.v${this.n++}`;
    this.weights.set(name, { ...this.values(shape, range), dtype });
    return this.b.param(name, dtype, shape, 'trainable');
  }

  frozen(shape: Shape, range: Range = {}): Value {
    const name = `model.case.w${this.n++}`;
    this.weights.set(name, this.values(shape, range));
    return this.b.param(name, 'f32', shape, 'frozen');
  }

  /** A float feed (no gradient). */
  input(shape: Shape, values: ArrayLike<number> | Range = {}): Value {
    const name = `x${this.n++}`;
    this.feeds[name] =
      'length' in values
        ? f64('f32', shape, (i) => (values as ArrayLike<number>)[i])
        : this.values(shape, values as Range);
    return this.b.input(name, 'f32', shape);
  }

  /** Integer feed with values in [lo, hi]. */
  ints(shape: Shape, lo: number, hi: number, dtype: 'i32' | 'u32' = 'i32'): Value {
    const values = Array.from({ length: numel(shape) }, () => this.int(lo, hi));
    return this.intFeed(shape, values, dtype);
  }

  intFeed(shape: Shape, values: readonly number[], dtype: 'i32' | 'u32' = 'i32'): Value {
    const name = `i${this.n++}`;
    const data = dtype === 'i32' ? Int32Array.from(values) : Uint32Array.from(values);
    this.feeds[name] = { dtype, shape: [...shape], data };
    return this.b.input(name, dtype, shape);
  }

  int(lo: number, hi: number): number {
    return lo + Math.floor(this.rng.next() * (hi - lo + 1));
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.rng.next() * xs.length)];
  }

  /** Runs `fn` in scope model.case and makes its value the output OUT. */
  problem(fn: () => Value): Problem {
    const out = this.b.withScope('model.case', fn);
    return { graph: this.b.build({ [OUT]: out }), weights: this.weights, feeds: this.feeds };
  }
}

export function makeProblem(seed: number, fn: (m: Maker) => Value): Problem {
  const m = new Maker(new Rng(seed));
  return m.problem(() => fn(m));
}

/** The problem's graph with outputs OUT and loss = sum(out * cot), cot a feed. */
export function withLoss(p: Problem, seed: number): Problem {
  const b = GraphBuilder.from(p.graph);
  const out = b.value(p.graph.output(p.out ?? OUT).id);
  const cot = b.input('cot', out.type.dtype, out.type.shape);
  const all = [...out.type.shape.keys()];
  const loss = b.sum(b.mul(out, cot), all);
  const rng = new Rng(seed ^ 0x5bd1e995);
  const feeds = { ...p.feeds, cot: f64(out.type.dtype, out.type.shape, () => rng.normal()) };
  return { graph: b.build({ [OUT]: out, loss }), weights: p.weights, feeds };
}

function run(p: Problem, weights: MapWeightStore, outputs: string[]): Record<string, Tensor> {
  return runGraph(p.graph, p.feeds, weights, { precision: 'f64', outputs });
}

function shifted(w: MapWeightStore, name: string, apply: (d: Float64Array) => void): MapWeightStore {
  const out = new MapWeightStore(w.map);
  const t = w.get(name) as Tensor;
  const data = Float64Array.from(t.data);
  apply(data);
  out.set(name, { ...t, data });
  return out;
}

export interface CheckResult {
  readonly gradGraph: Graph;
  readonly grads: Record<string, Tensor>;
  readonly vars: string[];
}

export interface CheckOptions {
  readonly tol?: number;
  /** The variables (default: trainable params). */
  readonly wrt?: (param: Node) => boolean;
}

/** Runs both checks; throws with the param, element and both values on a mismatch. */
export function checkGradients(problem: Problem, seed: number, opts: CheckOptions = {}): CheckResult {
  const tol = opts.tol ?? TOL;
  const wrt = opts.wrt ?? ((n: Node) => paramRole(n) === 'trainable');
  const p = withLoss(problem, seed);
  const gradGraph = verify(autodiff(p.graph, { loss: 'loss', wrt }));
  const vars = p.graph.params().filter(wrt).map(paramName);
  if (vars.length === 0) throw new Error('gradient check problem has no trainable param');
  const res = runGraph(gradGraph, p.feeds, p.weights, {
    precision: 'f64',
    outputs: vars.map((v) => GRAD_PREFIX + v),
  });
  const grads: Record<string, Tensor> = {};
  for (const v of vars) grads[v] = res[GRAD_PREFIX + v];
  const rng = new Rng(seed ^ 0x27d4eb2f);

  // 1. Element by element central differences of the loss.
  for (const v of vars) {
    const n = grads[v].data.length;
    const picks =
      n <= SAMPLES ? [...Array(n).keys()] : Array.from({ length: SAMPLES }, () => Math.floor(rng.next() * n));
    for (const i of picks) {
      const lossAt = (h: number) =>
        run(
          p,
          shifted(p.weights, v, (d) => {
            d[i] += h;
          }),
          ['loss'],
        ).loss.data[0];
      const fd = (lossAt(H) - lossAt(-H)) / (2 * H);
      const ad = grads[v].data[i];
      if (!(Math.abs(fd - ad) <= tol * (1 + Math.abs(ad)))) {
        throw new Error(`d loss / d ${v}[${i}]: autodiff ${ad}, finite difference ${fd} (tol ${tol})`);
      }
    }
  }

  // 2. Dot-product test along a random direction over every variable at once.
  const dirs = new Map(vars.map((v) => [v, Float64Array.from(grads[v].data, () => rng.normal())]));
  const along = (h: number): MapWeightStore => {
    let w = p.weights;
    for (const v of vars) {
      const t = dirs.get(v) as Float64Array;
      w = shifted(w, v, (d) => {
        for (let i = 0; i < d.length; i++) d[i] += h * t[i];
      });
    }
    return w;
  };
  const plus = run(p, along(H), [OUT])[OUT].data;
  const minus = run(p, along(-H), [OUT])[OUT].data;
  const c = p.feeds.cot.data;
  let jtc = 0;
  for (let i = 0; i < c.length; i++) jtc += ((plus[i] - minus[i]) / (2 * H)) * c[i];
  let tjc = 0;
  let scale = 0;
  for (const v of vars) {
    const t = dirs.get(v) as Float64Array;
    grads[v].data.forEach((g, i) => {
      tjc += t[i] * g;
      scale += Math.abs(t[i] * g);
    });
  }
  if (!(Math.abs(jtc - tjc) <= tol * (1 + scale))) {
    throw new Error(
      `dot-product test: <J t, c> = ${jtc} but <t, J^T c> = ${tjc} (tol ${tol} * (1 + ${scale}))`,
    );
  }
  return { gradGraph, grads, vars };
}
