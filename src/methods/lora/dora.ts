// DoRA (Liu et al. 2024; PEFT's `use_dora`): the adapted weight is rescaled per output
// row to a trained magnitude m, y = (m / ||W + s B A||_row) * (W + s B A) x + b, with the
// row norm detached in backward as PEFT does. As PEFT computes it (lora/layer.py
// Linear.forward + dora.py DoraLinearLayer.forward), the adapter adds to the module's
// output, so it stacks and disables like any adapter:
//   y = base + (k - 1) * (W x~) + k * s * B A x~,   k = m / stop_gradient(||W + s B A||_row)
// with x~ = dropout(x) (W x~ re-uses the base product when there is no dropout and no bias).
//
// The row norm comes in two forms (option `dora_norm`):
//   'dense'    : PEFT's, ||W + s B A||_row from the materialised [out, in] weight every step;
//   'factored' : ||W||^2_row + 2 s <B_i, (W A^T)_i> + s^2 B_i (A A^T) B_i^T, with ||W||^2_row
//                a frozen buffer computed once from the base (4-bit bases dequantized once),
//                so the step only holds [out, r] and [r, r] products, never W + s B A.
// The magnitude starts as the row norms of W (B = 0 at PEFT's init), computed from the
// base weights when the pass has them; a loaded adapter brings its own.
import { runGraph } from '../../backends/cpu/index.ts';
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { initTensor, type WeightStore } from '../../ir/weights.ts';
import { stopGradient } from '../../passes/autodiff/stop-gradient.ts';
import { Rng, seedOf } from '../../util/rng.ts';
import {
  type AdapterSite,
  type AdapterStructure,
  adapterSites,
  baseWeightNode,
  type Reader,
  type SiteMatch,
} from '../adapters/sites.ts';
import { addLowRank, type LoraData, lowRankAt, paramNameSet } from './branch.ts';

export type DoraNorm = 'factored' | 'dense';

export interface DoraData extends LoraData {
  /** The magnitude param (`<m>.lora_magnitude_vector.<a>.weight`, [out]). */
  readonly magnitude: string;
}

export function doraParamNames(module: string, adapter: string) {
  return {
    magnitude: `${module}.lora_magnitude_vector.${adapter}.weight`,
    // Not a `lora_*` name: a derived frozen buffer, never saved with the adapter.
    weightSqNorm: `${module}.dora_weight_sq_norm.${adapter}`,
  };
}

/** Where merge keeps the row norms it divided by, so unmerge can undo the rescale (PEFT caches them too). */
const mergedNormName = (module: string, adapter: string) => `${module}.dora_merged_norm.${adapter}`;

export interface DoraBranchArgs {
  readonly module: string;
  readonly adapter: string;
  readonly norm: DoraNorm;
  /** The module's output (below this adapter), its input, the dropped-out input and the weight value. */
  readonly below: Value;
  readonly x: Value;
  readonly xd: Value;
  readonly weight: Value;
  /** An embedding's DoRA normalises per embedding dim over the vocabulary: its "W" is the table transposed. */
  readonly kind: 'linear' | 'embedding';
  readonly hasBias: boolean;
  readonly bias?: Value;
  readonly dropout: boolean;
  /** The low-rank branch s * B(A(x~)) ([..., out]), and A, B, s. */
  readonly lora: Value;
  readonly A: Value;
  readonly B: Value;
  readonly scale: number;
}

/** Rows DoRA normalises: out_features of a linear, the embedding dim of an embedding. */
const outSize = (a: Pick<DoraBranchArgs, 'kind' | 'weight'>) =>
  a.weight.type.shape[a.kind === 'linear' ? 0 : 1];

/** ||W + s B A||_row ([out]) in the chosen form (W: an embedding's table transposed, [dim, vocab]). */
function rowNorm(b: GraphBuilder, a: DoraBranchArgs): Value {
  const { A, B, scale: s, weight } = a;
  const out = outSize(a);
  if (a.norm === 'dense') {
    const W = a.kind === 'linear' ? weight : b.transpose(weight, 0, 1);
    const V = b.add(W, b.scale(b.linear(B, b.transpose(A, 0, 1)), s));
    return b.unary('sqrt', b.sum(b.mul(V, V), [1]));
  }
  const wsq = b.param(doraParamNames(a.module, a.adapter).weightSqNorm, 'f32', [out], 'frozen', {
    kind: 'given',
  });
  // W A^T [out, r]; for a table T [vocab, dim], W = T^T and W A^T = (A T)^T.
  const WAt = b.transpose(a.kind === 'linear' ? b.linear(A, weight) : b.matmul(A, weight), 0, 1);
  const AAt = b.linear(A, A); // A A^T [r, r]
  const cross = b.sum(b.mul(B, WAt), [1]);
  const quad = b.sum(b.mul(b.linear(B, AAt), B), [1]);
  const sq = b.add(b.add(wsq, b.scale(cross, 2 * s)), b.scale(quad, s * s));
  // Rounding may take a zero row's square a hair below 0.
  return b.unary('sqrt', b.maximum(sq, b.const(0)));
}

/** The DoRA adapter's output: below + (k - 1) * W x~ + k * s B A x~. */
export function doraBranch(b: GraphBuilder, a: DoraBranchArgs): Value {
  const { magnitude } = doraParamNames(a.module, a.adapter);
  return b.atScope(`${a.module}.lora_magnitude_vector.${a.adapter}`, () => {
    const m = b.param(magnitude, 'f32', [outSize(a)], 'trainable', { kind: 'given' });
    const k = b.div(m, stopGradient(b, rowNorm(b, a)));
    // No dropout, no bias: W x~ is the module's output itself (PEFT passes it as
    // base_result), and below + (k - 1) W x + k s B A x = k (below + s B A x): two ops.
    if (!a.dropout && !a.hasBias) return b.mul(k, b.add(a.below, a.lora));
    // PEFT's dropout form: W x~ needs its own product, x~ = dropout(x); with a bias and
    // no dropout PEFT subtracts the bias from the module's output instead.
    const wx = a.dropout ? b.linear(a.xd, a.weight) : b.sub(a.below, a.bias!);
    const contribution = b.add(b.mul(b.sub(k, b.const(1)), wx), b.mul(k, a.lora));
    return b.add(a.below, contribution);
  });
}

type LowRank = NonNullable<ReturnType<typeof lowRankAt>>;
const ORDERS = [
  [0, 1],
  [1, 0],
] as const;

/** `k = m / ...` with m the magnitude of the low-rank branch `lr`, or undefined. */
function magnitudeOf(g: Graph, k: Node, lr: LowRank): Node | undefined {
  if (k.op !== 'div') return undefined;
  const m = g.node(k.inputs[0]);
  return m.op === 'param' && m.attrs.name === doraParamNames(lr.module, lr.adapter).magnitude ? m : undefined;
}

/** The DoRA site of `k * lora` inside a contribution `add(...)`, if `c` is one. */
function doraIn(g: Graph, c: Node): { lr: LowRank; m: Node } | undefined {
  if (c.op !== 'add') return undefined;
  for (const pid of c.inputs) {
    const p = g.node(pid);
    if (p.op !== 'mul') continue;
    for (const [ki, yi] of ORDERS) {
      const lr = lowRankAt(g, g.node(p.inputs[yi]));
      const m = lr && magnitudeOf(g, g.node(p.inputs[ki]), lr);
      if (lr && m) return { lr, m };
    }
  }
  return undefined;
}

/** The compact form `k * (below + lora)`: its low-rank branch, magnitude and below, if `n` is one. */
function compactAt(g: Graph, n: Node): { lr: LowRank; m: Node; below: Node } | undefined {
  if (n.op !== 'mul') return undefined;
  for (const [ki, si] of ORDERS) {
    const sum = g.node(n.inputs[si]);
    if (sum.op !== 'add') continue;
    for (const [bi, yi] of ORDERS) {
      const lr = lowRankAt(g, g.node(sum.inputs[yi]));
      const m = lr && magnitudeOf(g, g.node(n.inputs[ki]), lr);
      if (lr && m) return { lr, m, below: g.node(sum.inputs[bi]) };
    }
  }
  return undefined;
}

function siteOf(g: Graph, lr: LowRank, m: Node, below: Node): SiteMatch {
  const magnitude = String(m.attrs.name);
  const { weightSqNorm } = doraParamNames(lr.module, lr.adapter);
  const params = [String(lr.data.A.attrs.name), String(lr.data.B.attrs.name), magnitude];
  if (paramNameSet(g).has(weightSqNorm)) params.push(weightSqNorm);
  const data: DoraData = { ...lr.data, magnitude };
  return { module: lr.module, adapter: lr.adapter, kind: lr.kind, below, params, data };
}

function at(g: Graph, n: Node): SiteMatch | undefined {
  const c = compactAt(g, n);
  if (c) return siteOf(g, c.lr, c.m, c.below);
  if (n.op !== 'add' || n.inputs.length !== 2) return undefined;
  for (const [bi, ci] of ORDERS) {
    const hit = doraIn(g, g.node(n.inputs[ci]));
    if (hit) return siteOf(g, hit.lr, hit.m, g.node(n.inputs[bi]));
  }
  return undefined;
}

/** Row norms of a [rows, cols] matrix, in f64. */
export function rowNorms(W: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    let acc = 0;
    for (let j = 0; j < cols; j++) acc += W[i * cols + j] ** 2;
    out[i] = Math.sqrt(acc);
  }
  return out;
}

/**
 * DoRA's norms of a module weight W in f64: per row of a linear's [out, in], per column
 * (embedding dim, over the vocabulary) of an embedding table [vocab, dim].
 */
export function doraNorms(
  kind: 'linear' | 'embedding',
  W: ArrayLike<number>,
  rows: number,
  cols: number,
): Float64Array {
  if (kind === 'linear') return rowNorms(W, rows, cols);
  const out = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j] += W[i * cols + j] ** 2;
  return out.map(Math.sqrt);
}

/** W scaled per DoRA row (linear: rows; embedding: columns) by f[row], in place. */
function scaleRows(
  kind: 'linear' | 'embedding',
  W: Float64Array,
  rows: number,
  cols: number,
  f: (i: number) => number,
) {
  for (let i = 0; i < rows; i++)
    for (let j = 0; j < cols; j++) W[i * cols + j] *= f(kind === 'linear' ? i : j);
}

function shapeOf(
  site: AdapterSite,
  W: Float64Array,
  read: Reader,
): { rows: number; cols: number; m: Tensor } {
  const m = read((site.data as DoraData).magnitude);
  const n = m.shape[0];
  return site.kind === 'linear' ? { rows: n, cols: W.length / n, m } : { rows: W.length / n, cols: n, m };
}

export const doraStructure: AdapterStructure = {
  name: 'dora',
  at,
  // PEFT's merge: W' = (m / ||W + s B A||_row) (W + s B A); the norms are kept for unmerge.
  fold: (site, W, read) => {
    addLowRank(site, W, read, (site.data as DoraData).scale);
    const { rows, cols, m } = shapeOf(site, W, read);
    const norm = doraNorms(site.kind, W, rows, cols);
    scaleRows(site.kind, W, rows, cols, (i) => m.data[i] / norm[i]);
    return new Map([[mergedNormName(site.module, site.adapter), tensor('f32', [norm.length], norm)]]);
  },
  unfold: (site, W, read) => {
    const { rows, cols, m } = shapeOf(site, W, read);
    const norm = read(mergedNormName(site.module, site.adapter));
    scaleRows(site.kind, W, rows, cols, (i) => norm.data[i] / m.data[i]);
    addLowRank(site, W, read, -(site.data as DoraData).scale);
  },
};

/**
 * The tensors DoRA derives from the base weights of `g`'s DoRA adapters: the frozen
 * ||W||^2_row buffers (factored norm) and, where the store has none, the magnitudes' init
 * ||W||_row. The weights are evaluated as the graph computes them (a 4-bit base is
 * dequantized once, here).
 */
export function doraDerived(g: Graph, weights: WeightStore): Map<string, Tensor> {
  const sites = adapterSites(g).filter((s) => s.structure === doraStructure);
  const out = new Map<string, Tensor>();
  if (sites.length === 0) return out;
  const probe = g.with(
    g.nodes,
    sites.map((s, i) => ({ name: `dora_weight_${i}`, id: baseWeightNode(g, s).id })),
  );
  const values = runGraph(probe, {}, weights, { precision: 'f64' });
  sites.forEach((site, i) => {
    const W = values[`dora_weight_${i}`];
    const [rowsN, cols] = W.shape;
    const names = doraParamNames(site.module, site.adapter);
    if (site.params.includes(names.weightSqNorm)) {
      const norms = doraNorms(site.kind, W.data, rowsN, cols);
      out.set(
        names.weightSqNorm,
        tensor(
          'f32',
          [norms.length],
          norms.map((v) => v * v),
        ),
      );
    }
    if (weights.has(names.magnitude)) return;
    // PEFT initialises m = ||W + s B A||_row. With B = 0 (the default inits) that is
    // ||W||_row; with random A and B (init_lora_weights false, a testing mode) they are
    // drawn here, seeded by the module, so m can match them.
    const { A, B } = site.data as DoraData;
    const read = (n: string) => out.get(n) ?? weights.get(n);
    const initOf = (p: Node) => (p.attrs.init as { kind?: string } | undefined)?.kind;
    // B A = 0 when either starts at zeros: nothing to draw.
    const random = [A, B].every((p) => initOf(p) !== 'zeros' && initOf(p) !== 'given');
    if (random)
      for (const p of [A, B]) {
        const name = String(p.attrs.name);
        if (!read(name)) out.set(name, initTensor(p, new Rng(seedOf(name))));
      }
    const V = Float64Array.from(W.data);
    if (read(String(A.attrs.name)) && read(String(B.attrs.name)))
      addLowRank(site, V, (n) => read(n)!, (site.data as DoraData).scale);
    const m = doraNorms(site.kind, V, rowsN, cols);
    out.set(names.magnitude, tensor('f32', [m.length], m));
  });
  return out;
}
