// DoRA (lora/dora.ts): the two norm forms agree, the forward is PEFT's formula, the
// gradients are those of the formula with the row norm held constant (PEFT detaches it),
// QDoRA merges, and the factored step holds no dense W + s B A.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import { bindParams, LayeredWeightStore, MapWeightStore, type WeightStore } from '../../src/ir/weights.ts';
import { adapterSites, getMethod, mergeAdapters } from '../../src/methods/index.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { quantizeLinears } from '../../src/methods/qlora/index.ts';
import { qloraOptions } from '../../src/methods/qlora/options.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';
import { rewrite } from '../../src/passes/rewrite/engine.ts';
import { Rng } from '../../src/util/rng.ts';
import { randomFeeds, randomWeights } from '../arbitrary/graphs.ts';
import { checkGradients, OUT } from '../passes/autodiff/gradcheck.ts';
import { arbModelShape, type ModelShape, testModel } from './properties.ts';

const Q = 'model.layers.0.self_attn.q_proj';

/** A DoRA model with random A, B and magnitudes away from the row norms (so k != 1). */
function doraModel(shape: ModelShape, r: number, alpha: number, seed: number, norm: 'factored' | 'dense') {
  const base = testModel(shape);
  const baseW = randomWeights(base, seed);
  const o = loraOptions.parse({
    r,
    lora_alpha: alpha,
    target_modules: ['q_proj', 'o_proj', 'down_proj'],
    init_lora_weights: false,
    use_dora: true,
    dora_norm: norm,
  });
  const inj = injectLora(base, o, baseW);
  const w = bindParams(inj.graph, inj.weights ?? baseW, seed);
  const rng = new Rng(seed + 7);
  for (const s of adapterSites(inj.graph)) {
    const name = `${s.module}.lora_magnitude_vector.default.weight`;
    const m = w.get(name)!;
    w.set(
      name,
      tensor(
        'f32',
        m.shape,
        Float64Array.from(m.data, (v) => v * (1 + 0.3 * rng.normal())),
      ),
    );
  }
  return { base, g: inj.graph, w, feeds: randomFeeds(base, seed), o };
}

const y = (g: Graph, feeds: Record<string, Tensor>, w: WeightStore) =>
  Array.from(runGraph(g, feeds, w, { precision: 'f64' }).y.data);

function maxDiff(a: number[], b: number[]): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (1 + Math.abs(a[i])));
  return m;
}

const arb = fc.record({
  shape: arbModelShape,
  r: fc.integer({ min: 1, max: 4 }),
  alpha: fc.integer({ min: 1, max: 16 }),
  seed: fc.nat(10_000),
});

describe('DoRA', () => {
  it('factored and dense row norms give the same outputs (f64, random shapes, ranks, weights)', () => {
    fc.assert(
      fc.property(arb, ({ shape, r, alpha, seed }) => {
        const f = doraModel(shape, r, alpha, seed, 'factored');
        const d = doraModel(shape, r, alpha, seed, 'dense');
        const yb = y(f.base, f.feeds, f.w);
        const yf = y(f.g, f.feeds, f.w);
        expect(maxDiff(yb, yf)).toBeGreaterThan(1e-9);
        expect(maxDiff(yf, y(d.g, d.feeds, d.w))).toBeLessThanOrEqual(1e-9);
      }),
      { numRuns: 30 },
    );
  });

  it("the forward is PEFT's: (m / ||W + s B A||_row) * (W + s B A) x + b, checked element by element", () => {
    const shape = { layers: 1, dim: 5, hidden: 3, seq: 2, bias: true };
    const { g, w } = doraModel(shape, 2, 6, 3, 'factored');
    const site = adapterSites(g).find((s) => s.module === Q)!;
    // The q_proj output alone, as a graph output.
    const probe = g.with(g.nodes, [...g.outputs, { name: 'q', id: site.out.id }]);
    const x = tensor(
      'f32',
      [1, 2, 5],
      Float64Array.from({ length: 10 }, (_, i) => Math.sin(i + 1)),
    );
    const got = runGraph(probe, { x }, w, { precision: 'f64', outputs: ['q'] }).q.data;
    const W = w.get(`${Q}.weight`)!.data;
    const bias = w.get(`${Q}.bias`)!.data;
    const A = w.get(`${Q}.lora_A.default.weight`)!.data;
    const B = w.get(`${Q}.lora_B.default.weight`)!.data;
    const m = w.get(`${Q}.lora_magnitude_vector.default.weight`)!.data;
    const s = 6 / 2;
    for (let t = 0; t < 2; t++)
      for (let o = 0; o < 5; o++) {
        const V = Array.from(
          { length: 5 },
          (_, i) => W[o * 5 + i] + s * (B[o * 2] * A[i] + B[o * 2 + 1] * A[5 + i]),
        );
        const norm = Math.hypot(...V);
        const want = (m[o] / norm) * V.reduce((acc, v, i) => acc + v * x.data[t * 5 + i], 0) + bias[o];
        expect(got[t * 5 + o]).toBeCloseTo(want, 10);
      }
  });

  it('gradients: autodiff equals finite differences of the forward with the row norm held constant (f64)', () => {
    fc.assert(
      fc.property(
        fc.record({
          r: fc.integer({ min: 1, max: 3 }),
          seed: fc.nat(1000),
          norm: fc.constantFrom('factored', 'dense'),
        }),
        ({ r, seed, norm }) => {
          const shape = { layers: 1, dim: 3, hidden: 2, seq: 2, bias: true };
          const { g, w, feeds } = doraModel(shape, r, 4, seed, norm as 'factored' | 'dense');
          // The norms at this point, as frozen params: the function PEFT differentiates.
          const stops = g.ofOp('stop_gradient');
          expect(stops.length).toBe(3);
          const probe = g.with(g.nodes, [
            ...g.outputs,
            ...stops.map((n, i) => ({ name: `n${i}`, id: n.id })),
          ]);
          const vals = runGraph(probe, feeds, w, { precision: 'f64' });
          const frozen = new MapWeightStore(w.map);
          const held = rewrite(
            g,
            [
              [
                { op: 'stop_gradient' },
                (mt, b) => {
                  const i = stops.findIndex((n) => n.id === mt.node.id);
                  frozen.set(`held.norm${i}`, vals[`n${i}`]);
                  return b.param(`held.norm${i}`, 'f32', mt.node.type.shape, 'frozen');
                },
                'hold-norm',
              ],
            ],
            { once: true },
          ).graph;
          const asProblem = (gg: Graph, ww: MapWeightStore) => ({
            graph: gg.with(gg.nodes, [{ name: OUT, id: gg.output('y').id }]),
            weights: ww,
            feeds,
          });
          const heldCheck = checkGradients(asProblem(held, frozen), seed);
          // The DoRA graph's own gradients (through stop_gradient) are the held-norm ones;
          // its finite differences would include the norm's, so only its autodiff is read.
          const mine = checkGradients(asProblem(g, w), seed, { tol: Number.POSITIVE_INFINITY });
          for (const v of heldCheck.vars)
            expect(maxDiff(Array.from(heldCheck.grads[v].data), Array.from(mine.grads[v].data))).toBeLessThan(
              1e-9,
            );
          expect(heldCheck.vars.some((v) => v.includes('lora_magnitude_vector'))).toBe(true);
        },
      ),
      { numRuns: 6 },
    );
  });

  it('on a 4-bit base (QDoRA): both norm forms agree, and merging into float gives the same outputs', () => {
    const shape = { layers: 1, dim: 64, hidden: 64, seq: 2, bias: false };
    const base = testModel(shape);
    const baseW = randomWeights(base, 5);
    const q = quantizeLinears(
      base,
      qloraOptions.parse({ quant_type: 'nf4', blocksize: 64, double_quant: true }),
      baseW,
    );
    const run = (norm: 'factored' | 'dense') => {
      const o = loraOptions.parse({
        r: 2,
        target_modules: ['q_proj', 'down_proj'],
        init_lora_weights: false,
        use_dora: true,
        dora_norm: norm,
      });
      const inj = injectLora(q.graph, o, q.weights);
      return { g: inj.graph, w: bindParams(inj.graph, inj.weights!, 5) };
    };
    const f = run('factored');
    const d = run('dense');
    const feeds = randomFeeds(base, 5);
    const yf = y(f.g, feeds, f.w);
    expect(maxDiff(yf, y(d.g, feeds, d.w))).toBeLessThan(1e-9);
    const merged = getMethod('qlora').merge!(f.g, { merge_into: 'float' } as never, {
      weights: f.w,
      log: () => {},
    });
    expect(maxDiff(yf, y(merged.graph, feeds, new LayeredWeightStore([merged.weights!])))).toBeLessThan(1e-5);
  });

  it('the factored step holds no [out, in] W + s B A; the dense one does', () => {
    const shape = { layers: 1, dim: 8, hidden: 6, seq: 2, bias: false };
    for (const [norm, dense] of [
      ['factored', 0],
      ['dense', 3],
    ] as const) {
      const { g } = doraModel(shape, 2, 4, 1, norm);
      // The adds that build W + s B A: a weight-shaped sum inside a lora_magnitude_vector scope.
      const weightSums = g.nodes.filter(
        (n) =>
          n.op === 'add' &&
          n.scope.includes('lora_magnitude_vector') &&
          n.type.shape.length === 2 &&
          n.type.shape[1] > 2,
      );
      expect(weightSums.length, norm).toBe(dense);
    }
  });

  it('merge keeps unmerge exact: merged weight rows have norm m; unmerge restores W', () => {
    const { g, w } = doraModel({ layers: 1, dim: 4, hidden: 3, seq: 1, bias: false }, 2, 4, 9, 'factored');
    // One site per module, each DoRA's (its LoRA-shaped inner sum is not a second adapter).
    expect(adapterSites(g).map((s) => s.structure.name)).toEqual(['dora', 'dora', 'dora']);
    const merged = mergeAdapters(g, w);
    const W2 = merged.weights!.get(`${Q}.weight`)!.data;
    const m = w.get(`${Q}.lora_magnitude_vector.default.weight`)!.data;
    for (let o = 0; o < 4; o++)
      expect(Math.hypot(...Array.from(W2.slice(o * 4, o * 4 + 4)))).toBeCloseTo(m[o], 5);
  });

  it("on an embedding (PEFT's DoraEmbeddingVariant): both norm forms agree, merge equals forward, unmerge restores", () => {
    const g0 = buildLlama(presetConfig('tiny'), { batch: 1, seq: 3 });
    const w0 = randomWeights(g0, 2);
    const ids = { input_ids: tensor('i32', [1, 3], [5, 17, 200]) };
    const run = (norm: 'factored' | 'dense') => {
      const o = loraOptions.parse({
        r: 2,
        target_modules: ['embed_tokens', 'q_proj'],
        init_lora_weights: false,
        use_dora: true,
        dora_norm: norm,
      });
      const inj = injectLora(g0, o, w0);
      return { g: inj.graph, w: bindParams(inj.graph, inj.weights!, 2), o };
    };
    const f = run('factored');
    const d = run('dense');
    const logits = (g: Graph, w: WeightStore) =>
      Array.from(runGraph(g, ids, w, { precision: 'f64' }).logits.data);
    const yf = logits(f.g, f.w);
    expect(maxDiff(logits(g0, w0), yf)).toBeGreaterThan(1e-6);
    expect(maxDiff(yf, logits(d.g, d.w))).toBeLessThan(1e-9);
    expect(adapterSites(f.g).map((s) => [s.structure.name, s.kind])[0]).toEqual(['dora', 'embedding']);
    const merged = mergeAdapters(f.g, f.w);
    expect(maxDiff(yf, logits(merged.graph, merged.weights!))).toBeLessThan(1e-5);
    const back = getMethod('lora').unmerge!(merged.graph, f.o, { weights: merged.weights, log: () => {} });
    const T = 'model.embed_tokens.weight';
    expect(maxDiff(Array.from(f.w.get(T)!.data), Array.from(back.weights!.get(T)!.data))).toBeLessThan(1e-5);
  });
});
