// Whole-model gradient checks: a small LLaMA (embedding, RMSNorm, GQA attention with
// RoPE, SiLU MLP, lm_head, HF causal-LM loss with ignored labels), every param and a
// LoRA-like subset, against finite differences and the dot-product test in float64.
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import type { Node } from '../../../src/ir/graph.ts';
import { paramName } from '../../../src/ir/graph.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';
import { buildLlama, type LlamaConfig, PRESETS } from '../../../src/models/llama/index.ts';
import { autodiff, GRAD_PREFIX } from '../../../src/passes/autodiff/index.ts';
import { Rng } from '../../../src/util/rng.ts';
import { checkGradients, type Problem } from './gradcheck.ts';

const config: LlamaConfig = {
  ...PRESETS.tiny,
  vocabSize: 11,
  hiddenSize: 8,
  intermediateSize: 12,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 2,
};
const [B, S] = [2, 5];

function llamaProblem(seed: number): Problem {
  const graph = buildLlama(config, { batch: B, seq: S }, { loss: true, logits: false });
  const rng = new Rng(seed);
  const weights = new MapWeightStore();
  for (const p of graph.params()) {
    const name = paramName(p);
    const n = p.type.shape.reduce((a, x) => a * x, 1);
    const norm = name.endsWith('norm.weight');
    const data = Float64Array.from({ length: n }, () =>
      norm ? rng.uniform(0.5, 1.5) : rng.uniform(-0.6, 0.6),
    );
    weights.set(name, { dtype: 'f32', shape: [...p.type.shape], data });
  }
  const ids = Int32Array.from({ length: B * S }, () => Math.floor(rng.next() * config.vocabSize));
  const labels = Int32Array.from(ids, (id, i) => (i % S === 3 ? -100 : id));
  return {
    graph,
    out: 'loss',
    weights,
    feeds: {
      input_ids: { dtype: 'i32', shape: [B, S], data: ids },
      labels: { dtype: 'i32', shape: [B, S], data: labels },
    },
  };
}

describe('end-to-end gradients', () => {
  it('every param of a small LLaMA with causal-LM loss', () => {
    const r = checkGradients(llamaProblem(1), 1, { wrt: () => true });
    expect(r.vars.length).toBe(config.numLayers * 9 + 3);
  });

  it('a LoRA-like subset (q/v projections and norms): no gradient is formed for frozen weights', () => {
    const wanted = (p: Node) => /(q_proj|v_proj|norm)\.weight$/.test(paramName(p));
    const problem = llamaProblem(2);
    checkGradients(problem, 2, { wrt: wanted });
    const ad = autodiff(problem.graph, { loss: 'loss', wrt: wanted });
    const bw = ad.nodes.filter((n) => !problem.graph.has(n.id));
    // The last layer's MLP still passes the cotangent down (dx = g W), but no weight gradient is formed:
    // nothing in the backward pass multiplies a cotangent with an activation into a [out, in] buffer.
    const frozenMlp = problem.graph.params().filter((p) => /mlp\..*\.weight$/.test(paramName(p)));
    const frozenShapes = new Set(frozenMlp.map((p) => p.type.shape.join()));
    const weightGrads = (nodes: readonly Node[]) =>
      nodes.filter(
        (n) => n.scope.includes('.mlp.') && n.op === 'matmul' && frozenShapes.has(n.type.shape.join()),
      );
    expect(weightGrads(bw)).toEqual([]);
    // The same filter does find them when every param is wanted (so the check can fail).
    const all = autodiff(problem.graph, { loss: 'loss', wrt: () => true });
    expect(weightGrads(all.nodes.filter((n) => !problem.graph.has(n.id))).length).toBe(frozenMlp.length);
    // And the embedding table (frozen, first node of the chain) gets no scatter_add at all.
    expect(bw.filter((n) => n.op === 'scatter_add')).toEqual([]);
  });

  it('f32 gradients (what training runs) stay finite and within 1e-4 of f64', () => {
    const p = llamaProblem(3);
    const ad = autodiff(p.graph, { loss: 'loss', wrt: () => true });
    const hi = runGraph(ad, p.feeds, p.weights, { precision: 'f64' });
    const lo = runGraph(ad, p.feeds, p.weights, { precision: 'f32' });
    const grads = ad.outputs.filter((o) => o.name.startsWith(GRAD_PREFIX));
    expect(grads.length).toBe(config.numLayers * 9 + 3);
    for (const { name } of grads) {
      const [a, b] = [lo[name].data, hi[name].data];
      for (let i = 0; i < b.length; i++) {
        expect(Number.isFinite(a[i])).toBe(true);
        expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(1e-4 * (1 + Math.abs(b[i])));
      }
    }
  });
});
