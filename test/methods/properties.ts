// The generic method properties (DESIGN.md "Passes and methods"), as a suite any
// registered method runs: generic-properties.test.ts loops over the registry, and
// a method added from outside src/ (examples/new-variant) calls it the same way.
//
// Tolerances (CPU interpreter in f64; weights are f32 tensors):
// - identity at init: outputs equal the base model's to 1e-12 (B = 0 adds exact zeros);
// - merge equals forward: |y_merged - y| <= 1e-5 (1 + |y|): the merged W is rounded to f32;
// - merge then unmerge: |W'' - W| <= 1e-5 (1 + |W|): two f32 roundings of W +- s B A.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { printGraph } from '../../src/ir/printer.ts';
import type { Tensor } from '../../src/ir/tensor.ts';
import { bindParams, type WeightStore } from '../../src/ir/weights.ts';
import type { MethodContext, MethodDef } from '../../src/methods/index.ts';
import { randomFeeds, randomWeights } from '../arbitrary/graphs.ts';

export interface ModelShape {
  readonly layers: number;
  readonly dim: number;
  readonly hidden: number;
  readonly seq: number;
  readonly bias: boolean;
}

export const arbModelShape: fc.Arbitrary<ModelShape> = fc.record({
  layers: fc.integer({ min: 1, max: 2 }),
  dim: fc.integer({ min: 1, max: 6 }),
  hidden: fc.integer({ min: 1, max: 6 }),
  seq: fc.integer({ min: 1, max: 3 }),
  bias: fc.boolean(),
});

/** A small LLaMA-shaped model: linear modules at HF paths, params named <module>.weight/.bias. */
export function testModel(s: ModelShape): Graph {
  const b = new GraphBuilder();
  let x = b.input('x', 'f32', [1, s.seq, s.dim]);
  const lin = (scope: string, h: Value, out: number) =>
    b.atScope(scope, () => {
      const inF = h.type.shape[h.type.shape.length - 1];
      const w = b.param(`${scope}.weight`, 'f32', [out, inF]);
      return b.linear(h, w, s.bias ? b.param(`${scope}.bias`, 'f32', [out]) : undefined);
    });
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    const q = lin(`${p}.self_attn.q_proj`, x, s.dim);
    const k = lin(`${p}.self_attn.k_proj`, x, s.dim);
    const v = lin(`${p}.self_attn.v_proj`, x, s.dim);
    const o = lin(`${p}.self_attn.o_proj`, b.mul(b.unary('tanh', b.mul(q, k)), v), s.dim);
    const h = b.add(x, o);
    const up = b.silu(lin(`${p}.mlp.up_proj`, h, s.hidden));
    x = b.add(h, lin(`${p}.mlp.down_proj`, up, s.dim));
  }
  return b.build({ y: x });
}

const ctxOf = (weights?: WeightStore): MethodContext => ({ weights, log: () => {} });

function run(g: Graph, feeds: Record<string, Tensor>, w: WeightStore): number[] {
  return Array.from(runGraph(g, feeds, w, { precision: 'f64' }).y.data);
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(b.length).toBe(a.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / (1 + Math.abs(a[i])));
  return m;
}

/** max |a - b| relative to the outputs' scale (1 + max |a|): merged weights are stored in
 * f32, so their rounding error scales with the largest activations, not each element. */
function maxScaledDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(b.length).toBe(a.length);
  let m = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(a[i]));
  }
  return m / (1 + scale);
}

const arbCase = fc.record({
  shape: arbModelShape,
  r: fc.integer({ min: 1, max: 4 }),
  alpha: fc.integer({ min: 1, max: 32 }),
  seed: fc.nat(10_000),
});

interface Adapted {
  base: Graph;
  g: Graph;
  feeds: Record<string, Tensor>;
  baseW: WeightStore;
  w: WeightStore;
  options: unknown;
}

function adapt(
  m: MethodDef,
  c: { shape: ModelShape; r: number; alpha: number; seed: number },
  init: 'identity' | 'random',
): Adapted {
  const base = testModel(c.shape);
  const options = m.options.parse(m.fixtures.options({ r: c.r, alpha: c.alpha, init }));
  const baseW = randomWeights(base, c.seed);
  const res = m.apply(base, options, ctxOf(baseW));
  const w = bindParams(res.graph, res.weights ?? baseW, c.seed);
  return { base, g: res.graph, feeds: randomFeeds(base, c.seed), baseW, w, options };
}

/** Registers vitest cases for the properties `m` promises. */
export function methodProperties(m: MethodDef, numRuns = 25): void {
  describe(`method '${m.name}': generic properties`, () => {
    const adds = m.properties.addsTrainableParams !== false;
    const rewrites = m.properties.changesGraph !== false;
    it(`${rewrites ? 'changes' : 'keeps'} the graph${adds ? ': adds trainable params' : ''}`, () => {
      const a = adapt(
        m,
        { shape: { layers: 1, dim: 3, hidden: 2, seq: 2, bias: false }, r: 2, alpha: 4, seed: 1 },
        'random',
      );
      // A method that acts on the optimizer only (changesGraph: false) leaves the graph as it is.
      if (m.properties.changesGraph === false) expect(printGraph(a.g)).toBe(printGraph(a.base));
      else expect(printGraph(a.g)).not.toBe(printGraph(a.base));
      const baseNames = new Set(a.base.params().map((p) => p.attrs.name));
      expect(a.g.params().some((p) => !baseNames.has(p.attrs.name) && p.attrs.role === 'trainable')).toBe(
        adds,
      );
    });

    // Only the properties a method promises are registered (qlora promises none of these).
    const itIf = (promised: boolean) => (promised ? it : () => {});
    itIf(m.properties.identityAtInit)('default init leaves the outputs unchanged (B = 0)', () => {
      fc.assert(
        fc.property(arbCase, (c) => {
          const a = adapt(m, c, 'identity');
          // A method that acts on the optimizer only (changesGraph: false) leaves the graph as it is.
          if (m.properties.changesGraph === false) expect(printGraph(a.g)).toBe(printGraph(a.base));
          else expect(printGraph(a.g)).not.toBe(printGraph(a.base));
          expect(maxRelDiff(run(a.base, a.feeds, a.baseW), run(a.g, a.feeds, a.w))).toBeLessThanOrEqual(
            1e-12,
          );
        }),
        { numRuns },
      );
    });

    // Merged weights W + s B A are stored in f32: their rounding grows with the delta's
    // scale s = alpha / r, so the stated tolerance is 1e-5 x (1 + s), relative to the outputs.
    itIf(m.properties.mergeEqualsForward)(
      'merged forward equals the unmerged forward (1e-5 x (1 + alpha/r))',
      () => {
        fc.assert(
          fc.property(arbCase, (c) => {
            const a = adapt(m, c, 'random');
            const y = run(a.g, a.feeds, a.w);
            // The adapter must matter, or this test could not fail.
            expect(maxRelDiff(run(a.base, a.feeds, a.baseW), y)).toBeGreaterThan(1e-9);
            const merged = m.merge!(a.g, a.options, ctxOf(a.w));
            const baseNames = new Set(a.base.params().map((p) => p.attrs.name));
            for (const p of merged.graph.params()) expect(baseNames.has(p.attrs.name)).toBe(true);
            const tol = 1e-5 * (1 + c.alpha / c.r);
            expect(maxScaledDiff(y, run(merged.graph, a.feeds, merged.weights!))).toBeLessThanOrEqual(tol);
          }),
          { numRuns },
        );
      },
    );

    itIf(m.properties.mergeUnmergeIdentity)('merge then unmerge is the identity (weights and graph)', () => {
      fc.assert(
        fc.property(arbCase, (c) => {
          const a = adapt(m, c, 'random');
          const merged = m.merge!(a.g, a.options, ctxOf(a.w));
          const back = m.unmerge!(merged.graph, a.options, ctxOf(merged.weights));
          expect(printGraph(back.graph)).toBe(printGraph(a.g));
          let changed = 0;
          for (const p of a.base.params()) {
            const name = String(p.attrs.name);
            const w0 = a.w.get(name)!.data;
            changed = Math.max(changed, maxRelDiff(w0, merged.weights!.get(name)!.data));
            expect(maxRelDiff(w0, back.weights!.get(name)!.data)).toBeLessThanOrEqual(1e-5);
          }
          expect(changed).toBeGreaterThan(1e-9);
        }),
        { numRuns },
      );
    });
  });
}
