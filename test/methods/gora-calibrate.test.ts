// goraCalibrate with given gradients (no training): what it writes into the lora entry
// (rank_pattern, alpha_pattern or none with dynamic_scaling, rank 0 -> exclude_modules),
// the init it returns (s B A = -(gamma / scale_rank) G P_A, the lr rule of scale_by_lr),
// and the recipe mistakes it refuses.
import { describe, expect, it } from 'vitest';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import { goraCalibrate, goraOptions } from '../../src/methods/gora/index.ts';
import { type LoraOptions, loraOptions } from '../../src/methods/lora/index.ts';
import { matmul } from '../../src/methods/pissa/index.ts';
import { loadModel, modelGraph } from '../../src/models/llama/index.ts';
import { Rng } from '../../src/util/rng.ts';

const model = loadModel('examples/models/tiny-llama');
const base = modelGraph(model, { batch: 1, seq: 8 }, { loss: true, logits: false });
const shapes = new Map(base.graph.params().map((p) => [String(p.attrs.name), p.type.shape]));

/** Seeded gradients; q_proj's are 100x larger (so it is the most important). */
function ctx(lora: Record<string, unknown>, seen: string[] = []) {
  return {
    graph: base.graph,
    weights: base.weights,
    next: { method: 'lora', options: loraOptions.parse(lora) },
    gradients: async (params: readonly string[], n: number) => {
      seen.push(`${params.length}x${n}`);
      const out = new Map<string, Tensor>();
      for (const p of params) {
        const rng = new Rng(p.length * 7919 + n);
        const s = shapes.get(p)!;
        const k = p.includes('q_proj') ? 100 : 1;
        out.set(
          p,
          tensor(
            'f32',
            [...s],
            Float32Array.from({ length: s[0] * s[1] }, () => k * rng.normal()),
          ),
        );
      }
      return out;
    },
    log: () => {},
  };
}

const lora = { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'] };

describe('goraCalibrate', () => {
  it('fills rank_pattern / alpha_pattern (alpha r_i / r) and returns A, B with s B A = -(gamma / r) G P_A', async () => {
    const seen: string[] = [];
    const c = ctx(lora, seen);
    const res = await goraCalibrate(goraOptions.parse({ n_steps: 3 }), c);
    expect(seen).toEqual(['6x3']);
    const next = res.next as LoraOptions;
    expect(Object.keys(next.rank_pattern)).toHaveLength(6);
    for (const [m, r] of Object.entries(next.rank_pattern)) {
      expect(r).toBeGreaterThanOrEqual(2); // r / 2
      expect(r).toBeLessThanOrEqual(16); // 4 r
      expect(next.alpha_pattern[m]).toBeCloseTo((8 * r) / 4, 12);
    }
    expect(next.rank_pattern['model.layers.0.self_attn.q_proj']).toBeGreaterThan(
      next.rank_pattern['model.layers.0.self_attn.v_proj'],
    );
    // B A applied to A^T's columns gives back the gradient on A's row space: (s B A) A^T = -(gamma / r) G A^T.
    const m = 'model.layers.1.mlp.down_proj';
    const ri = next.rank_pattern[m];
    const A = Float64Array.from(res.init!.get(`${m}.lora_A.default.weight`)!.data);
    const B = Float64Array.from(res.init!.get(`${m}.lora_B.default.weight`)!.data);
    const G = Float64Array.from((await c.gradients([`${m}.weight`], 3)).get(`${m}.weight`)!.data);
    const [out, inF] = [64, 128];
    const s = 8 / 4;
    const lhs = matmul(matmul(B, A, out, ri, inF), A, out, inF, ri, { transB: true });
    const rhs = matmul(G, A, out, inF, ri, { transB: true });
    for (let i = 0; i < lhs.length; i++) expect(s * lhs[i]).toBeCloseTo((-0.02 / 4) * rhs[i], 5);
  });

  it('dynamic_scaling: no alpha_pattern (scale alpha / r_i); scale_by_lr: s B A = -lr sqrt(in / r_i) G P_A', async () => {
    const c = ctx(lora);
    const res = await goraCalibrate(
      goraOptions.parse({ dynamic_scaling: true, scale_by_lr: true, lr: 0.01 }),
      c,
    );
    const next = res.next as LoraOptions;
    expect(next.alpha_pattern).toEqual({});
    const m = 'model.layers.0.self_attn.v_proj';
    const ri = next.rank_pattern[m];
    const [out, inF] = [32, 64];
    const A = Float64Array.from(res.init!.get(`${m}.lora_A.default.weight`)!.data);
    const B = Float64Array.from(res.init!.get(`${m}.lora_B.default.weight`)!.data);
    const G = Float64Array.from((await c.gradients([`${m}.weight`], 8)).get(`${m}.weight`)!.data);
    const lhs = matmul(matmul(B, A, out, ri, inF), A, out, inF, ri, { transB: true });
    const rhs = matmul(G, A, out, inF, ri, { transB: true });
    const want = -0.01 * Math.sqrt(inF / ri);
    for (let i = 0; i < lhs.length; i++) expect((8 / ri) * lhs[i]).toBeCloseTo(want * rhs[i], 5);
  });

  it('min_rank 0: a weight whose share is below one rank gets none and goes to exclude_modules', async () => {
    const res = await goraCalibrate(goraOptions.parse({ min_rank: 0, max_rank: 64 }), ctx({ ...lora, r: 1 }));
    const next = res.next as LoraOptions;
    expect(next.exclude_modules).toContain('model.layers.0.mlp.down_proj');
    expect(Object.keys(next.rank_pattern)).not.toContain('model.layers.0.mlp.down_proj');
  });

  it('init_method vanilla: ranks only, no init values', async () => {
    const res = await goraCalibrate(goraOptions.parse({ init_method: 'vanilla' }), ctx(lora));
    expect(res.init!.size).toBe(0);
  });

  it('refuses what it cannot honour, saying what to do', async () => {
    const o = goraOptions.parse({});
    await expect(goraCalibrate(o, ctx({ ...lora, rank_pattern: { q_proj: 8 } }))).rejects.toThrow(
      /the lora entry sets rank_pattern, which GoRA computes; remove it/,
    );
    await expect(goraCalibrate(o, ctx({ ...lora, use_rslora: true }))).rejects.toThrow(/use_rslora/);
    await expect(
      goraCalibrate(o, { ...ctx(lora), next: { method: 'loraplus', options: {} } }),
    ).rejects.toThrow(/the entry after it must be the lora entry .* \(got 'loraplus'\)/);
    expect(() => goraOptions.parse({ min_rank: 9, max_rank: 4 })).toThrow(/min_rank 9 is above max_rank 4/);
    expect(() => goraOptions.parse({ importance: 'x' })).toThrow();
  });
});
