// Merge and unmerge. Merge folds s * B A into the base weight (W' = W + s B A; for an
// embedding table T' = T + s (B A)^T) and removes the branch; unmerge re-injects the
// branch (from the adapter's options, A and B read from the store) and subtracts.
// Math in f64, stored as f32. The weights come back as a new store layered over the old
// one, which keeps A and B (unmerge needs them).
import type { Graph, Node } from '../../ir/graph.ts';
import { tensor } from '../../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import type { PassResult } from '../../passes/pass.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';
import { type LoraBranch, loraBranches } from './branch.ts';
import { injectLora, LoraError } from './inject.ts';
import type { LoraOptions } from './options.ts';

function need(w: WeightStore | undefined, name: string, what: string) {
  const t = w?.get(name);
  if (!t)
    throw new LoraError(
      `${what} needs the weight '${name}', which is not in the weight store (bind the model's params first)`,
    );
  return t;
}

/** The base weight param of a branch's module. */
function baseWeight(g: Graph, br: LoraBranch): Node {
  const w = g.node(br.kind === 'linear' ? br.base.inputs[1] : br.base.inputs[0]);
  if (w.op !== 'param')
    throw new LoraError(
      `cannot merge adapter '${br.adapter}' into ${br.module}: its weight is a ${w.op}, not a param (dequantize first)`,
    );
  return w;
}

/** W + sign * s * delta, delta = B A (linear) or (B A)^T (embedding); in f64. */
function applyDelta(g: Graph, br: LoraBranch, w: WeightStore | undefined, sign: 1 | -1, out: MapWeightStore) {
  const Wn = baseWeight(g, br);
  const name = String(Wn.attrs.name);
  const W = out.get(name) ?? need(w, name, 'merge');
  const A = need(w, String(br.A.attrs.name), 'merge');
  const B = need(w, String(br.B.attrs.name), 'merge');
  const [rows, cols] = W.shape;
  const r = A.shape[0];
  const res = tensor(W.dtype, W.shape);
  const k = sign * br.scale;
  // linear: W[o, i] += k * sum_j B[o, j] A[j, i]; embedding: T[v, d] += k * sum_j B[d, j] A[j, v].
  for (let p = 0; p < rows; p++) {
    for (let q = 0; q < cols; q++) {
      const [o, i] = br.kind === 'linear' ? [p, q] : [q, p];
      let acc = 0;
      for (let j = 0; j < r; j++) acc += B.data[o * r + j] * A.data[j * A.shape[1] + i];
      res.data[p * cols + q] = W.data[p * cols + q] + k * acc;
    }
  }
  out.set(name, res);
}

function selected(g: Graph, adapters: readonly string[] | undefined): LoraBranch[] {
  return loraBranches(g).filter((b) => !adapters || adapters.includes(b.adapter));
}

/** Merges the given adapters (default: every adapter in the graph), in graph order. */
export function mergeLora(
  g: Graph,
  weights: WeightStore | undefined,
  adapters?: readonly string[],
): PassResult {
  const branches = selected(g, adapters);
  if (adapters) {
    const present = new Set(branches.map((b) => b.adapter));
    const missing = adapters.filter((a) => !present.has(a));
    if (missing.length)
      throw new LoraError(`no LoRA adapter named ${missing.map((a) => `'${a}'`).join(', ')} in the graph`);
  }
  const changed = new MapWeightStore();
  for (const br of branches) applyDelta(g, br, weights, 1, changed);
  const adds = new Set(branches.map((b) => b.add.id));
  const { graph } = rewrite(
    g,
    [[{ op: 'add', where: (n) => adds.has(n.id) }, (m) => m.inputs[0], 'lora-merge']],
    {
      once: true,
    },
  );
  return { graph, weights: weights ? new LayeredWeightStore([changed, weights]) : undefined };
}

/** Re-adds adapter `o.adapter_name` (A, B from the store) and subtracts s B A from the base weights. */
export function unmergeLora(g: Graph, o: LoraOptions, weights: WeightStore | undefined): PassResult {
  const { graph } = injectLora(g, o);
  const changed = new MapWeightStore();
  for (const br of selected(graph, [o.adapter_name])) applyDelta(graph, br, weights, -1, changed);
  return { graph, weights: weights ? new LayeredWeightStore([changed, weights]) : undefined };
}
