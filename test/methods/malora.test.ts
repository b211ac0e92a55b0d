// MaLoRA (rank per head / per matrix, src/methods/malora): the allocation's stated
// parameter counts on the bundled model, the budget never exceeded (fast-check), the
// block masks (each head's output reads only its own ranks), merge = forward with masks,
// the masked zeros staying zero through a training step, the PEFT save (plain LoRA with
// the zeros), and the errors a user gets.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend, runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { adapterSites, getMethod, parseRecipe } from '../../src/methods/index.ts';
import {
  allocateRanks,
  injectMalora,
  maloraAllocation,
  maloraHeadStructure,
  maloraOptions,
  maloraPeftAdapter,
  maskedFactors,
} from '../../src/methods/malora/index.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { prepareRun } from '../../src/train/setup.ts';
import { testModel } from './properties.ts';

const MODEL = 'examples/models/tiny-llama';
const model = loadModel(MODEL);
// tiny-llama: hidden 64, 4 query heads, 2 kv heads, head_dim 16, intermediate 128, 2 layers.
const { graph: base, weights: baseW } = modelGraph(
  model,
  { batch: 1, seq: 6 },
  { loss: false, logits: true },
);
const opts = (o: Record<string, unknown>) => maloraOptions.parse(o);
const ids = { input_ids: tensor('i32', [1, 6], [256, 116, 104, 101, 32, 99]) };

describe('malora allocation', () => {
  it('per-head ranks give the stated parameter counts (head_dim read from the attention op)', () => {
    const a = maloraAllocation(base, opts({ granularity: 'head', r: 2 }));
    const q = a.modules.find((m) => m.module === 'model.layers.0.self_attn.q_proj')!;
    const k = a.modules.find((m) => m.module === 'model.layers.0.self_attn.k_proj')!;
    const o = a.modules.find((m) => m.module === 'model.layers.0.self_attn.o_proj')!;
    expect([q.split, q.headDim, q.ranks]).toEqual(['out', 16, [2, 2, 2, 2]]);
    expect([k.split, k.ranks]).toEqual(['out', [2, 2]]); // GQA: 2 kv heads
    expect([o.split, o.ranks]).toEqual(['in', [2, 2, 2, 2]]);
    // q: 4 heads x 2 ranks x (64 in + 16 head rows); k, v: 2 heads x 2 x (64 + 16);
    // o: 4 x 2 x (16 head inputs + 64 out). Per layer 640 + 320 + 320 + 640; 2 layers.
    expect(a.params).toBe(2 * (640 + 320 + 320 + 640));
  });

  it('the graph holds exactly the stated free params: unmasked entries of A and B', () => {
    const o = opts({ granularity: 'head', r: 2, importance: { q_proj: [3, 1, 1, 1] } });
    const { graph, allocation } = injectMalora(base, o, baseW);
    const ones = (t: { data: ArrayLike<number> }) => Array.from(t.data).filter((v) => v !== 0).length;
    let free = 0;
    let stored = 0;
    for (const s of adapterSites(graph)) {
      expect(s.structure).toBe(maloraHeadStructure);
      const [A, B] = s.params.map((n) => graph.params().find((p) => p.attrs.name === n)!.type.shape);
      stored += A[0] * A[1] + B[0] * B[1];
      // With A and B all ones, the masked factors' nonzeros are the free params.
      const onesOf = (name: string) => {
        const shape = name === s.params[0] ? A : B;
        return tensor('f32', shape, new Float32Array(shape[0] * shape[1]).fill(1));
      };
      const { A: mA, B: mB } = maskedFactors(s, onesOf);
      free += ones({ data: mA }) + ones({ data: mB });
    }
    expect(free).toBe(allocation.params);
    // round(r w / mean w) with the mean over all 24 units (q's 3 in both layers): 28 / 24.
    expect(allocation.modules[0].ranks).toEqual([5, 2, 2, 2]);
    expect(allocation.modules[1].ranks).toEqual([2, 2]);
    expect(stored).toBeGreaterThan(free);
  });

  it('per matrix is plain LoRA with rank_pattern (no masks): sum r_m (in + out)', () => {
    const o = opts({ granularity: 'matrix', target_modules: ['q_proj', 'down_proj'], budget: 3000 });
    const { graph, allocation } = injectMalora(base, o, baseW);
    expect(adapterSites(graph).map((s) => s.structure.name)).toEqual(['lora', 'lora', 'lora', 'lora']);
    // q: 64 + 64 = 128 a rank, down: 128 + 64 = 192; r_min 1 each (640), then D'Hondt in turn.
    expect(allocation.params).toBeLessThanOrEqual(3000);
    expect(allocation.params).toBeGreaterThan(3000 - 192);
    for (const m of allocation.modules) expect(m.ranks).toHaveLength(1);
  });

  it('a budget is never exceeded; every rank within [r_min, cap]; no unit could take one more (fast-check)', () => {
    const unit = fc.record({
      cost: fc.integer({ min: 1, max: 300 }),
      cap: fc.integer({ min: 1, max: 40 }),
      weight: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 10, noNaN: true })),
    });
    fc.assert(
      fc.property(
        fc.array(unit, { minLength: 1, maxLength: 30 }),
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 20_000 }),
        (raw, rMin, budget) => {
          const units = raw.map((u) => ({ ...u, cap: Math.max(u.cap, rMin) }));
          const min = units.reduce((s, u) => s + rMin * u.cost, 0);
          if (min > budget) {
            expect(() => allocateRanks(units, { r: 8, r_min: rMin, budget })).toThrow(
              /below the .* parameters/,
            );
            return;
          }
          const ranks = allocateRanks(units, { r: 8, r_min: rMin, budget });
          const used = ranks.reduce((s, r, i) => s + r * units[i].cost, 0);
          expect(used).toBeLessThanOrEqual(budget);
          ranks.forEach((r, i) => {
            expect(r).toBeGreaterThanOrEqual(rMin);
            expect(r).toBeLessThanOrEqual(units[i].cap);
            if (r < units[i].cap && units[i].weight > 0) expect(units[i].cost).toBeGreaterThan(budget - used);
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('on the model, any budget above the minimum is respected, per head and per matrix (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('head', 'matrix'),
        fc.integer({ min: 5000, max: 60_000 }),
        fc.integer({ min: 1, max: 16 }),
        (granularity, budget, rMax) => {
          const a = maloraAllocation(
            base,
            opts({
              granularity,
              budget,
              r_max: rMax,
              target_modules: ['q_proj', 'k_proj', 'o_proj', 'up_proj'],
            }),
          );
          expect(a.params).toBeLessThanOrEqual(budget);
          for (const m of a.modules) for (const r of m.ranks) expect(r).toBeLessThanOrEqual(rMax);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('ranks follow the importance (highest averages)', () => {
    // 4 equal-cost units, importance 4:2:1:1, r_min 1 each (40), room for 8 more ranks:
    // the quotients w / (r + 1) hand them out as A A A B A A B A (ties to the earlier unit).
    const units = [4, 2, 1, 1].map((weight) => ({ cost: 10, cap: 100, weight }));
    expect(allocateRanks(units, { r: 8, r_min: 1, budget: 120 })).toEqual([7, 3, 1, 1]);
    // Without a budget: round(r w / mean w), mean 2: r 4 gives 8, 4, 2, 2.
    expect(allocateRanks(units, { r: 4, r_min: 1, budget: null })).toEqual([8, 4, 2, 2]);
  });
});

describe('malora graph', () => {
  it("a head's output reads only its own ranks; merge equals forward; disable is the base", () => {
    const o = opts({
      granularity: 'head',
      r: 2,
      init_lora_weights: false,
      target_modules: ['q_proj', 'o_proj'],
    });
    const { graph, weights } = injectMalora(base, o, baseW);
    const w = bindParams(graph, weights!, 3);
    const site = adapterSites(graph).find((s) => s.module.endsWith('0.self_attn.q_proj'))!;
    const { B } = maskedFactors(site, (n) => w.get(n)!);
    // B [64, 8]: row block h (16 rows) x column block h' (2 cols) is zero unless h = h'.
    for (let row = 0; row < 64; row++)
      for (let col = 0; col < 8; col++)
        if (Math.floor(row / 16) !== Math.floor(col / 2)) expect(B[row * 8 + col]).toBe(0);
        else expect(B[row * 8 + col]).not.toBe(0);
    const y = runGraph(graph, ids, w).logits.data;
    const y0 = runGraph(base, ids, baseW).logits.data;
    expect(Math.max(...y.map((v, i) => Math.abs(v - y0[i])))).toBeGreaterThan(1e-3);
    const merged = getMethod('malora').merge!(graph, o, { weights: w, log: () => {} });
    const ym = runGraph(merged.graph, ids, merged.weights!).logits.data;
    expect(Math.max(...y.map((v, i) => Math.abs(v - ym[i])))).toBeLessThan(1e-4);
    expect(merged.graph.params().length).toBe(base.params().length);
  });

  it('the masked zeros stay zero after a training step (AdamW with weight decay, cpu)', async () => {
    const recipe = parseRecipe({
      methods: [
        { method: 'malora', granularity: 'head', r: 2, target_modules: ['q_proj', 'v_proj', 'o_proj'] },
      ],
      optimizer: { type: 'adamw', lr: 1e-2, weight_decay: 0.1 },
    });
    const run = prepareRun(model, recipe, { batch: 1, seq: 6 }, { seed: 0 });
    const exe = await new CpuBackend().compile(run.step, run.weights);
    const name = 'model.layers.0.self_attn.q_proj.lora_B.default.weight';
    const oA = 'model.layers.0.self_attn.o_proj.lora_A.default.weight';
    const a0 = await exe.readParam(oA);
    await exe.run({
      feeds: { ...ids, labels: ids.input_ids, lr: tensor('f32', [], [1e-2]), step: tensor('i32', [], [1]) },
      outputs: ['loss'],
    });
    const B = await exe.readParam(name);
    let moved = 0;
    for (let row = 0; row < 64; row++)
      for (let col = 0; col < 8; col++) {
        const v = B.data[row * 8 + col];
        if (Math.floor(row / 16) !== Math.floor(col / 2)) expect(v).toBe(0);
        else if (v !== 0) moved++;
      }
    expect(moved).toBe(64 * 2);
    // o_proj masks A [8, 64]: its masked entries get no gradient, only the decoupled decay.
    const A = await exe.readParam(oA);
    for (let j = 0; j < 8; j++)
      for (let i = 0; i < 64; i++)
        if (Math.floor(j / 2) !== Math.floor(i / 16))
          expect(A.data[j * 64 + i]).toBeCloseTo(a0.data[j * 64 + i] * (1 - 1e-2 * 0.1), 7);
    exe.dispose();
  });

  it('saves as plain PEFT LoRA: rank = sum of head ranks, zeros kept, alpha_pattern keeps the scale', () => {
    const o = opts({
      granularity: 'head',
      r: 2,
      lora_alpha: 8,
      init_lora_weights: false,
      budget: 2000,
      target_modules: ['q_proj'],
    });
    const { graph, weights } = injectMalora(base, o, baseW);
    const w = bindParams(graph, weights!, 5);
    const saved = maloraPeftAdapter(graph, o, (n) => w.get(n)!, null);
    const q0 = 'model.layers.0.self_attn.q_proj';
    const R = saved.weights.get(`${q0}.lora_A.default.weight`)!.shape[0];
    expect(saved.config).toMatchObject({ peft_type: 'LORA', r: 2, lora_alpha: 8 });
    expect((saved.config.rank_pattern as Record<string, number>)[q0]).toBe(R);
    expect((saved.config.alpha_pattern as Record<string, number>)[q0]).toBe((8 * R) / 2);
    // The saved B is the masked one: zero off the head blocks, the trained values on them.
    const B = saved.weights.get(`${q0}.lora_B.default.weight`)!;
    const raw = w.get(`${q0}.lora_B.default.weight`)!;
    const ranks = maloraAllocation(base, o).modules[0].ranks;
    const colHead = ranks.flatMap((r, h) => Array.from({ length: r }, () => h));
    for (let row = 0; row < 64; row++)
      for (let col = 0; col < R; col++)
        expect(B.data[row * R + col]).toBe(
          Math.floor(row / 16) === colHead[col] ? raw.data[row * R + col] : 0,
        );
  });
});

describe('malora errors', () => {
  it('refuses a budget below the minimum, naming it and the minimum', () => {
    // q 64 + 64, k 64 + 32, v 64 + 32, o 64 + 64 per layer, 2 layers: 896 at r_min 1.
    expect(() => maloraAllocation(base, opts({ granularity: 'matrix', budget: 100 }))).toThrow(
      /"budget" 100 is below the 896 parameters that r_min 1 on every unit \(8\) needs/,
    );
  });
  it('refuses a per-head importance list of the wrong length, or on a matrix', () => {
    expect(() =>
      maloraAllocation(base, opts({ granularity: 'head', importance: { k_proj: [1, 2, 3] } })),
    ).toThrow(/importance for model\.layers\.0\.self_attn\.k_proj lists 3 heads; the module has 2/);
    const r = maloraOptions.safeParse({ granularity: 'matrix', importance: { q_proj: [1, 2] } });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].path).toEqual(['importance', 'q_proj']);
  });
  it('head granularity without an attention op or head_dim says to set head_dim; a bad head_dim names the module', () => {
    const plain = testModel({ layers: 1, dim: 4, hidden: 2, seq: 1, bias: false });
    expect(() => maloraAllocation(plain, opts({ granularity: 'head' }))).toThrow(
      /the graph has no attention op to read the head size from; set head_dim/,
    );
    expect(() => maloraAllocation(base, opts({ granularity: 'head', head_dim: 24 }))).toThrow(
      /q_proj has 64 outputs, not a multiple of head_dim 24/,
    );
  });
  it('a recipe without granularity names the key', () => {
    expect(() => parseRecipe({ methods: [{ method: 'malora', r: 4 }] })).toThrow(/methods\[0\]\.granularity/);
  });
});
