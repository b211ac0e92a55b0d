// malora-moe (the MALoRA paper's mixture of asymmetric low-rank experts): the forward equals
// a float64 reference written from the definition (per token: router softmax, the top_k
// experts renormalised, sum_t g_t U_t P_t S x), for any sizes and any top_k; gradients equal
// finite differences; param counts are the stated formula and below a symmetric mixture's;
// merge is refused naming the router; disabling gives the base model back; the saved
// MALORA_MOE folder reloads to the same outputs, and bad folders fail naming the key.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { readPeftAdapter } from '../../src/io/peft/index.ts';
import { writeSafetensors } from '../../src/io/safetensors/write.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Graph } from '../../src/ir/graph.ts';
import type { Tensor } from '../../src/ir/tensor.ts';
import { bindParams, LayeredWeightStore, MapWeightStore, type WeightStore } from '../../src/ir/weights.ts';
import { disableAdapters, mergeAdapters } from '../../src/methods/index.ts';
import {
  maloraMoe,
  maloraMoeOptions,
  moeModuleParams,
  moeParamNames,
  moloraModuleParams,
} from '../../src/methods/malora-moe/index.ts';
import { attachPeftAdapter, saveMethodAdapter } from '../../src/models/adapters.ts';
import { checkGradients, OUT } from '../passes/autodiff/gradcheck.ts';

const M = 'model.layers.0.self_attn.q_proj';

/** One linear module at M: y = x W^T, x [1, seq, in]. */
function oneLinear(seq: number, inF: number, outF: number): Graph {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [1, seq, inF]);
  const y = b.atScope(M, () => b.linear(x, b.param(`${M}.weight`, 'f32', [outF, inF])));
  return b.build({ y });
}

function randomTensor(shape: number[], seed: number): Tensor {
  let s = seed * 2654435761 + 1;
  const data = new Float64Array(shape.reduce((a, b) => a * b, 1)).map(() => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return (s / 2 ** 31) * 2 - 1;
  });
  return { dtype: 'f32', shape, data };
}

/** The mixture's output from its definition, in f64 (row-major tensors). */
function reference(
  x: Tensor,
  w: WeightStore,
  o: { num_experts: number; top_k: number; r: number; shared_rank: number; lora_alpha: number },
): number[] {
  const n = moeParamNames(M, 'default');
  const [W, S, P, U, R] = [`${M}.weight`, n.S, n.P, n.up, n.router].map((k) => w.get(k)!);
  const [outF, inF] = W.shape;
  const { num_experts: E, top_k: k, r, shared_rank: d } = o;
  const seq = x.shape[1];
  const out: number[] = [];
  for (let t = 0; t < seq; t++) {
    const xt = Array.from({ length: inF }, (_, i) => x.data[t * inF + i]);
    const logits = Array.from({ length: E }, (_, e) =>
      xt.reduce((a, v, i) => a + R.data[e * inF + i] * v, 0),
    );
    const mx = Math.max(...logits);
    const ex = logits.map((l) => Math.exp(l - mx));
    const p = ex.map((v) => v / ex.reduce((a, b) => a + b, 0));
    const top = [...p.keys()].sort((a, b) => logits[b] - logits[a]).slice(0, k);
    const z = top.reduce((a, e) => a + p[e], 0);
    const s = Array.from({ length: d }, (_, j) => xt.reduce((a, v, i) => a + S.data[j * inF + i] * v, 0));
    for (let oi = 0; oi < outF; oi++) {
      let y = xt.reduce((a, v, i) => a + W.data[oi * inF + i] * v, 0);
      for (const e of top) {
        let acc = 0;
        for (let j = 0; j < r; j++) {
          const row = e * r + j;
          const h = s.reduce((a, v, q) => a + P.data[row * d + q] * v, 0);
          acc += U.data[oi * E * r + row] * h;
        }
        y += (o.lora_alpha / r) * (p[e] / z) * acc;
      }
      out.push(y);
    }
  }
  return out;
}

function adapted(c: {
  seq: number;
  inF: number;
  outF: number;
  E: number;
  k: number;
  r: number;
  d: number;
  seed: number;
}) {
  const base = oneLinear(c.seq, c.inF, c.outF);
  const o = maloraMoeOptions.parse({
    num_experts: c.E,
    top_k: c.k,
    r: c.r,
    shared_rank: c.d,
    lora_alpha: 3,
    target_modules: ['q_proj'],
    init_lora_weights: false,
  });
  const g = maloraMoe.apply(base, o, { log: () => {} }).graph;
  const given = new MapWeightStore();
  given.set(`${M}.weight`, randomTensor([c.outF, c.inF], c.seed));
  const w = bindParams(g, given, c.seed);
  const x = randomTensor([1, c.seq, c.inF], c.seed + 7);
  return { base, g, o, w, x, given };
}

const arbCase = fc
  .record({
    seq: fc.integer({ min: 1, max: 3 }),
    inF: fc.integer({ min: 1, max: 5 }),
    outF: fc.integer({ min: 1, max: 5 }),
    E: fc.integer({ min: 1, max: 4 }),
    r: fc.integer({ min: 1, max: 3 }),
    d: fc.integer({ min: 1, max: 4 }),
    seed: fc.nat(10_000),
    kFrac: fc.double({ min: 0, max: 1, noNaN: true }),
  })
  .map(({ kFrac, ...c }) => ({ ...c, k: 1 + Math.min(c.E - 1, Math.floor(kFrac * c.E)) }));

describe('malora-moe', () => {
  it('equals the definition in float64: router softmax, top_k renormalised, sum of U_t P_t S x', () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        const a = adapted(c);
        const y = runGraph(a.g, { x: a.x }, a.w, { precision: 'f64' }).y.data;
        const want = reference(a.x, a.w, a.o);
        for (let i = 0; i < want.length; i++)
          expect(Math.abs(y[i] - want[i])).toBeLessThan(1e-9 * (1 + Math.abs(want[i])));
      }),
      { numRuns: 40 },
    );
  });

  it('gradients of every part (subspace, private projections, up-projections, router) equal finite differences', () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        const a = adapted(c);
        checkGradients(
          {
            graph: a.g.with(a.g.nodes, [{ name: OUT, id: a.g.output('y').id }]),
            weights: a.w,
            feeds: { x: a.x },
          },
          c.seed,
        );
      }),
      { numRuns: 10 },
    );
  });

  it('adds the stated params, fewer than a symmetric mixture of LoRA experts of the same rank', () => {
    const a = adapted({ seq: 1, inF: 64, outF: 64, E: 4, k: 2, r: 8, d: 16, seed: 1 });
    const added = a.g
      .params()
      .filter((p) => p.attrs.role === 'trainable')
      .reduce((s, p) => s + p.type.shape.reduce((x, y) => x * y, 1), 0);
    expect(added).toBe(moeModuleParams(a.o, 64, 64));
    expect(added).toBe(16 * 64 + 4 * 8 * 16 + 64 * 32 + 4 * 64);
    expect(added).toBeLessThan(moloraModuleParams(a.o, 64, 64));
  });

  it('refuses to merge, naming the router; disabling gives the base output back', () => {
    const a = adapted({ seq: 2, inF: 3, outF: 4, E: 3, k: 2, r: 2, d: 2, seed: 3 });
    expect(() => mergeAdapters(a.g, a.w)).toThrow(
      /malora-moe adapter 'default' on model\.layers\.0\.self_attn\.q_proj cannot be merged: its router weighs the experts per token/,
    );
    expect(() => maloraMoe.merge!(a.g, a.o, { log: () => {} })).toThrow(/cannot be merged/);
    const off = runGraph(disableAdapters(a.g), { x: a.x }, a.w, { precision: 'f64' }).y.data;
    const base = runGraph(a.base, { x: a.x }, a.given, { precision: 'f64' }).y.data;
    expect(Array.from(off)).toEqual(Array.from(base));
  });

  it('the saved MALORA_MOE folder reloads to the same outputs; bad folders fail naming the file and key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-moe-'));
    const a = adapted({ seq: 3, inF: 5, outF: 4, E: 3, k: 2, r: 2, d: 3, seed: 11 });
    const saved = saveMethodAdapter(dir, a.g, (n) => a.w.get(n)!, 'malora-moe', a.o, 'base');
    const cfg = JSON.parse(readFileSync(join(saved, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'MALORA_MOE', num_experts: 3, top_k: 2, r: 2, shared_rank: 3 });
    const read = readPeftAdapter(dir);
    expect([...read.weights.keys()].sort()).toEqual(Object.values(moeParamNames(M, 'default')).sort());
    const att = attachPeftAdapter(a.base, a.given, dir);
    const want = runGraph(a.g, { x: a.x }, a.w, { precision: 'f64' }).y.data;
    const got = runGraph(att.graph, { x: a.x }, att.weights, { precision: 'f64' }).y.data;
    for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i])).toBeLessThan(1e-6);

    const bad = (edit: (cfg: Record<string, unknown>, tensors: Map<string, Tensor>) => void) => {
      const d = mkdtempSync(join(tmpdir(), 'peftc-moe-bad-'));
      const c = { ...cfg };
      const st = new Map<string, Tensor>();
      for (const [k, v] of read.weights)
        st.set(`base_model.model.${k.replace(/\.default\.weight$/, '.weight')}`, v);
      edit(c, st);
      writeFileSync(join(d, 'adapter_config.json'), JSON.stringify(c));
      writeSafetensors(join(d, 'adapter_model.safetensors'), st, { format: 'pt' });
      return d;
    };
    const P = `base_model.model.${M}`;
    expect(() =>
      readPeftAdapter(bad((_, st) => st.set(`${P}.lora_P.weight`, randomTensor([5, 3], 1)))),
    ).toThrow(
      /adapter_model\.safetensors: .*lora_P\.weight.*has shape \[5,3\], but num_experts x r = 3 x 2 and shared_rank = 3 give \[6,3\]/,
    );
    expect(() => readPeftAdapter(bad((_, st) => st.delete(`${P}.lora_router.weight`)))).toThrow(
      /\.lora_[SP]\.weight': has no matching lora_router for module 'model\.layers\.0\.self_attn\.q_proj'/,
    );
    expect(() => readPeftAdapter(bad((c) => Object.assign(c, { top_k: 4 })))).toThrow(
      /adapter_config\.json.*top_k.*top_k 4 exceeds num_experts 3/,
    );
    expect(() => readPeftAdapter(bad((c) => Object.assign(c, { peft_type: 'LORA' })))).toThrow(
      /a MALoRA mixture's tensor .* in this LORA adapter; is its peft_type 'MALORA_MOE'\?/,
    );
    // Config and weights agree but the model lacks the module: attaching names the target.
    expect(() =>
      attachPeftAdapter(
        a.base,
        a.given,
        bad((c) => Object.assign(c, { target_modules: ['v_proj'] })),
      ),
    ).toThrow(/adapter_config\.json.*target modules \["v_proj"\] not found/);
    expect(new LayeredWeightStore([a.given]).has(`${M}.weight`)).toBe(true);
  });
});
