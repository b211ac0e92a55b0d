// AdaLoRA pieces against PEFT 0.21's formulas (peft/tuners/adalora/{layer,model}.py):
// which structure claims its branches, the budget schedule, the rank allocator run in a
// compiled step against a float64 reference of RankAllocator, the orthogonality penalty,
// and what PEFT refuses.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend, runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams, MapWeightStore } from '../../src/ir/weights.ts';
import {
  adaloraOptions,
  adaloraStructure,
  budgetSchedule,
  importanceObserver,
  injectAdaLora,
  startAllocation,
} from '../../src/methods/adalora/index.ts';
import {
  checkAdapters,
  disableAdapters,
  findConflict,
  mergeAdapters,
  parseRecipe,
} from '../../src/methods/index.ts';
import { loraStructure } from '../../src/methods/lora/index.ts';
import { appendOptimizer, sgd, stateName } from '../../src/passes/optimizer/index.ts';
import { randomWeights } from '../arbitrary/graphs.ts';
import { testModel } from './properties.ts';

const shape = { layers: 1, dim: 3, hidden: 2, seq: 2, bias: false };
const opts = (extra: Record<string, unknown> = {}) =>
  adaloraOptions.parse({
    init_r: 4,
    target_r: 2,
    total_step: 8,
    target_modules: ['q_proj', 'v_proj'],
    ...extra,
  });

describe('adalora structure', () => {
  it("is claimed by AdaLoRA's structure, never by LoRA's (its names have no .weight, its A is mul(A, E))", () => {
    const g = injectAdaLora(testModel(shape), opts()).graph;
    expect(g.nodes.filter((n) => loraStructure.at(g, n))).toHaveLength(0);
    const sites = checkAdapters(g, 'test');
    expect(sites.map((s) => [s.structure.name, s.module])).toEqual([
      ['adalora', 'model.layers.0.self_attn.q_proj'],
      ['adalora', 'model.layers.0.self_attn.v_proj'],
    ]);
    expect(sites[0].params).toEqual([
      'model.layers.0.self_attn.q_proj.lora_A.default',
      'model.layers.0.self_attn.q_proj.lora_E.default',
      'model.layers.0.self_attn.q_proj.lora_B.default',
    ]);
    expect(g.nodes.filter((n) => adaloraStructure.at(g, n))).toHaveLength(2);
  });

  it('disables through the generic code: the base model again', () => {
    const base = testModel(shape);
    const g = injectAdaLora(base, opts({ init_lora_weights: false })).graph;
    const w = bindParams(g, randomWeights(base, 2), 2);
    const feeds = { x: tensor('f32', [1, 2, 3], [0.3, -0.1, 0.2, 0.5, 0.4, -0.6]) };
    const y = (h: Graph) => [...runGraph(h, feeds, w, { precision: 'f64' }).y.data];
    expect(y(g)).not.toEqual(y(base));
    expect(y(disableAdapters(g))).toEqual(y(base));
  });
});

describe('adalora budget schedule (RankAllocator.budget_schedule)', () => {
  // PEFT: int((init - target) * (1 - (step - tinit) / (total - tfinal - tinit)) ** 3 + target).
  const o = { tinit: 2, tfinal: 2, total_step: 12, deltaT: 2 };
  const b = { init: 112, target: 56 };
  it.each([
    [0, 112, false],
    [2, 112, false],
    [3, 93, false], // 56 * 0.875^3 + 56 = 93.52
    [4, 79, true], // 56 * 0.75^3 + 56 = 79.63
    [9, 56, false], // 56 * 0.125^3 + 56 = 56.11
    [10, 56, true],
    [11, 56, true], // final phase
  ])('step %i: budget %i, mask %s', (step, budget, mask) => {
    expect(budgetSchedule(o, b, step)).toEqual({ budget, mask });
  });
});

/** The fed-gradient step graph of an AdaLoRA forward graph's adapter params, SGD, with the allocator's observer. */
function stepGraph(forward: Graph, o: ReturnType<typeof opts>): Graph {
  const b = new GraphBuilder();
  const outs: [string, Value][] = [];
  for (const p of forward.params().filter((p) => p.attrs.role === 'trainable')) {
    const name = String(p.attrs.name);
    b.param(name, 'f32', p.type.shape, 'trainable', { kind: 'given' });
    outs.push([`grad:${name}`, b.input(`g:${name}`, 'f32', p.type.shape)]);
  }
  return appendOptimizer(b.build(outs), {
    rule: sgd({ momentum: 0 }),
    defaultGroup: { name: 'default', lrScale: 1, weightDecay: 0 },
    observers: [importanceObserver(o)],
  });
}

/** PEFT's RankAllocator in float64, literally (update_ipt, mask_to_budget, update_and_allocate). */
class Reference {
  ema = new Map<string, number[]>();
  unc = new Map<string, number[]>();
  pattern: Record<string, boolean[]> | null = null;
  constructor(
    readonly o: ReturnType<typeof opts>,
    readonly p: Map<string, { shape: readonly number[]; data: number[] }>,
    readonly modules: string[],
  ) {
    for (const [n, t] of p) {
      this.ema.set(
        n,
        t.data.map(() => 0),
      );
      this.unc.set(
        n,
        t.data.map(() => 0),
      );
    }
  }
  /** Scores' k-th smallest gap (to skip cases where f32 vs f64 could order two scores differently). */
  minGap = Number.POSITIVE_INFINITY;
  step(gs: number, grads: Map<string, number[]>, lr: number) {
    const { o } = this;
    for (const [n, t] of this.p) t.data = t.data.map((v, i) => v - lr * grads.get(n)![i]);
    const end = o.total_step - o.tfinal;
    if (gs < end)
      for (const [n, t] of this.p) {
        const g = grads.get(n)!;
        const ipt = t.data.map((v, i) => Math.abs(v * g[i]));
        const e = this.ema.get(n)!.map((v, i) => o.beta1 * v + (1 - o.beta1) * ipt[i]);
        this.ema.set(n, e);
        this.unc.set(
          n,
          this.unc.get(n)!.map((v, i) => o.beta2 * v + (1 - o.beta2) * Math.abs(ipt[i] - e[i])),
        );
      }
    const init = this.modules.length * o.init_r;
    const target = this.modules.length * o.target_r;
    let budget: number;
    let mask: boolean;
    if (gs <= o.tinit) [budget, mask] = [init, false];
    else if (gs > end) [budget, mask] = [target, true];
    else {
      const c = 1 - (gs - o.tinit) / (end - o.tinit);
      [budget, mask] = [Math.trunc((init - target) * c ** 3 + target), gs % o.deltaT === 0];
    }
    if (gs > end) return this.applyPattern();
    if (mask || gs === end) this.maskToBudget(budget);
  }
  score(n: string) {
    return this.ema.get(n)!.map((v, i) => v * this.unc.get(n)![i]);
  }
  maskToBudget(budget: number) {
    const r = this.o.init_r;
    const trip = new Map<string, number[]>();
    for (const m of this.modules) {
      const [A, B, E] = ['A', 'B', 'E'].map((x) => `${m}.lora_${x}.default`);
      const sA = this.score(A);
      const sB = this.score(B);
      const sE = this.score(E);
      const inF = this.p.get(A)!.shape[1];
      const outF = this.p.get(B)!.shape[0];
      trip.set(
        m,
        Array.from({ length: r }, (_, j) => {
          let a = 0;
          for (let i = 0; i < inF; i++) a += sA[j * inF + i];
          let bb = 0;
          for (let i = 0; i < outF; i++) bb += sB[i * r + j];
          return sE[j] + a / inF + bb / outF;
        }),
      );
    }
    const all = [...trip.values()].flat().sort((x, y) => x - y);
    const k = this.modules.length * r - budget;
    const thr = all[k - 1];
    if (k < all.length) this.minGap = Math.min(this.minGap, (all[k] - thr) / (Math.abs(thr) + 1e-30));
    this.pattern = Object.fromEntries([...trip].map(([m, s]) => [m, s.map((v) => !(v <= thr))]));
    this.applyPattern();
  }
  applyPattern() {
    for (const [m, keep] of Object.entries(this.pattern!)) {
      const E = this.p.get(`${m}.lora_E.default`)!;
      E.data = E.data.map((v, i) => (keep[i] ? v : 0));
    }
  }
}

describe('adalora rank allocator', () => {
  it('matches a float64 RankAllocator: importance EMAs, masks and E over a whole schedule', async () => {
    let verified = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          seed: fc.nat(1000),
          beta1: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
          beta2: fc.double({ min: 0.05, max: 0.95, noNaN: true }),
          deltaT: fc.integer({ min: 1, max: 3 }),
        }),
        async (c) => {
          const o = opts({
            beta1: c.beta1,
            beta2: c.beta2,
            deltaT: c.deltaT,
            tinit: 1,
            tfinal: 2,
            init_lora_weights: false,
          });
          const { graph: forward } = injectAdaLora(testModel(shape), o);
          const step = stepGraph(forward, o);
          const w = bindParams(forward, randomWeights(forward, c.seed), c.seed);
          const store = new MapWeightStore();
          const ref = new Map<string, { shape: readonly number[]; data: number[] }>();
          for (const p of step.params()) {
            const n = String(p.attrs.name);
            const t = p.attrs.role === 'state' ? tensor('f32', p.type.shape) : w.get(n)!;
            store.set(n, t);
            if (p.attrs.role === 'trainable') ref.set(n, { shape: t.shape, data: [...t.data] });
          }
          const exe = await new CpuBackend().compile(step, store);
          const modules = ['model.layers.0.self_attn.q_proj', 'model.layers.0.self_attn.v_proj'];
          const r = new Reference(o, ref, modules);
          const session = startAllocation(forward, o, { steps: o.total_step, log: () => {} });
          const lr = 0.05;
          for (let t = 1; t <= o.total_step; t++) {
            const grads = new Map<string, number[]>();
            const feeds: Record<string, ReturnType<typeof tensor>> = {
              lr: tensor('f32', [], [lr]),
              step: tensor('f32', [], [t]),
            };
            let k = 0;
            for (const [n, p] of ref) {
              const g = p.data.map((_, i) => Math.fround(Math.sin(c.seed + t * 1.3 + i * 0.7 + k++) * 0.5));
              grads.set(n, g);
              feeds[`g:${n}`] = tensor('f32', p.shape, g);
            }
            await exe.run({ feeds });
            await session.afterStep({
              step: t,
              readParam: (n) => exe.readParam(n),
              writeParam: (n, v) => exe.writeParam(n, v),
              log: () => {},
            });
            r.step(t - 1, grads, lr);
            // Two scores closer than f32 can tell apart may order differently: no verdict then.
            if (r.minGap < 1e-4) return;
            for (const [n, p] of ref) {
              const near = (got: ArrayLike<number>, want: number[], what: string) => {
                for (let i = 0; i < want.length; i++)
                  expect(Math.abs(got[i] - want[i]), `${what} ${n}[${i}] at step ${t}`).toBeLessThanOrEqual(
                    1e-5 * (1 + Math.abs(want[i])),
                  );
              };
              near((await exe.readParam(n)).data, p.data, 'param');
              near(
                (await exe.readParam(stateName('adalora_exp_avg_ipt', n))).data,
                r.ema.get(n)!,
                'exp_avg_ipt',
              );
              near(
                (await exe.readParam(stateName('adalora_exp_avg_unc', n))).data,
                r.unc.get(n)!,
                'exp_avg_unc',
              );
            }
            const saved = session.saveOptions!().rank_pattern;
            if (r.pattern)
              expect(saved).toEqual(
                Object.fromEntries(Object.entries(r.pattern).map(([m, k]) => [`${m}.lora_E`, k])),
              );
            else expect(saved).toBeNull();
          }
          // The final allocation keeps exactly the target budget (distinct scores).
          const kept = Object.values(r.pattern!).flat().filter(Boolean).length;
          expect(kept).toBe(modules.length * o.target_r);
          verified++;
        },
      ),
      { numRuns: 8 },
    );
    // Most cases have well-separated scores: the comparison ran to the end.
    expect(verified).toBeGreaterThan(4);
  });
});

describe('adalora orthogonality penalty (AdaLoraModel.forward)', () => {
  it('adds orth_reg_weight x mean ||A A^T - I||_F, ||B^T B - I||_F to loss', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [2, 3]);
    const lin = (m: string, h: Value) =>
      b.atScope(m, () => b.linear(h, b.param(`${m}.weight`, 'f32', [3, 3])));
    const y = lin('model.layers.0.self_attn.v_proj', lin('model.layers.0.self_attn.q_proj', x));
    const base = b.build({ loss: b.sum(y, [0, 1]) });
    const run = (w: number) => {
      const o = opts({ orth_reg_weight: w, init_lora_weights: false });
      const g = injectAdaLora(base, o).graph;
      const weights = bindParams(g, randomWeights(base, 3), 5);
      const feeds = { x: tensor('f32', [2, 3], [0.1, -0.2, 0.3, 0.4, 0.5, -0.6]) };
      return { loss: runGraph(g, feeds, weights, { precision: 'f64' }).loss.data[0], weights };
    };
    const plain = run(0);
    const withReg = run(0.7);
    // Reference: the same A and B (same seeds), in f64.
    const fro = (P: number[][]) =>
      Math.sqrt(P.flat().reduce((s, v, i) => s + (v - (i % 5 === 0 ? 1 : 0)) ** 2, 0));
    let sum = 0;
    for (const m of ['q_proj', 'v_proj']) {
      const A = withReg.weights.get(`model.layers.0.self_attn.${m}.lora_A.default`)!;
      const B = withReg.weights.get(`model.layers.0.self_attn.${m}.lora_B.default`)!;
      const at = (t: typeof A, i: number, j: number) => t.data[i * t.shape[1] + j];
      const AAt = [0, 1, 2, 3].map((i) =>
        [0, 1, 2, 3].map((j) => [0, 1, 2].reduce((s, k) => s + at(A, i, k) * at(A, j, k), 0)),
      );
      const BtB = [0, 1, 2, 3].map((i) =>
        [0, 1, 2, 3].map((j) => [0, 1, 2].reduce((s, k) => s + at(B, k, i) * at(B, k, j), 0)),
      );
      sum += fro(AAt) + fro(BtB);
    }
    expect(withReg.loss - plain.loss).toBeCloseTo((0.7 * sum) / 4, 9);
    // Merged or disabled, the adapter's penalty goes with it (PEFT's merge_and_unload leaves no
    // lora_A / lora_B to regularize): the loss is the base model's again, no adapter param left.
    const g = injectAdaLora(base, opts({ orth_reg_weight: 0.7, init_lora_weights: false })).graph;
    const baseNames = base.params().map((p) => p.attrs.name);
    for (const gone of [mergeAdapters(g, withReg.weights).graph, disableAdapters(g)]) {
      expect(gone.params().map((p) => p.attrs.name)).toEqual(baseNames);
      expect(gone.ofOp('sqrt')).toHaveLength(0);
    }
  });
});

describe('adalora options and recipes: what PEFT refuses', () => {
  const refused = (extra: Record<string, unknown>) => {
    const r = adaloraOptions.safeParse({ total_step: 10, ...extra });
    return r.success ? '' : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
  };
  it('refuses use_dora, LoftQ, a missing total_step, no budgeting phase, target_r >= init_r', () => {
    expect(refused({ use_dora: true })).toMatch(
      /use_dora: AdaLoRA cannot be combined with DoRA: PEFT refuses it/,
    );
    expect(refused({ loftq_config: { loftq_bits: 4 } })).toMatch(/loftq_config: .*LoftQ/);
    expect(refused({ total_step: undefined })).toMatch(/total_step: AdaLoRA needs total_step/);
    expect(refused({ tinit: 6, tfinal: 4 })).toMatch(
      /tinit: tinit 6 >= total_step 10 - tfinal 4 leaves no budgeting phase/,
    );
    expect(refused({ init_r: 4, target_r: 4 })).toMatch(/target_r: target_r 4 must be below init_r 4/);
    expect(refused({ beta1: 1 })).toMatch(/beta1: expected a number in \(0, 1\)/);
    expect(refused({})).toBe('');
  });
  it('refuses adalora with lora or dora in one recipe, and two adalora entries', () => {
    const entries = (...m: string[]) => m.map((method) => ({ method }));
    expect(findConflict(entries('lora', 'adalora'))?.[2]).toMatch(
      /Cannot combine adapters with different peft types/,
    );
    expect(findConflict(entries('adalora', 'dora'))?.[2]).toMatch(/AdaLoRA refuses DoRA too/);
    expect(findConflict(entries('adalora', 'adalora'))?.[2]).toMatch(/only 1 trainable adapter/);
    expect(findConflict(entries('adalora', 'loraplus'))).toBeUndefined();
    expect(() =>
      parseRecipe(
        { methods: [{ method: 'lora' }, { method: 'adalora', total_step: 10 }] },
        { file: 'r.json' },
      ),
    ).toThrow(/r\.json.*different peft types/s);
  });
});
