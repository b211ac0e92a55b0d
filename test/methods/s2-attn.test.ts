// S2-Attn (methods/longlora/s2-attn.ts) against a direct reference of the official
// semantics (dvlab-research/LongLoRA llama_attn_replace.py): for every query, the keys it
// may attend, then softmax over them. Random shapes with GQA, both variants; with one
// group the unshifted half is full causal attention; no_wrap never attends across the
// sequence ends while roll does (its last group wraps); gradients by finite differences;
// WebGPU equals the CPU interpreter.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../src/ir/builder.ts';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import { MapWeightStore } from '../../src/ir/weights.ts';
import { type S2Variant, s2Attention } from '../../src/methods/longlora/s2-attn.ts';
import { Rng } from '../../src/util/rng.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { expectClose } from '../ops/case.ts';
import { checkGradients, makeProblem } from '../passes/autodiff/gradcheck.ts';

interface Case {
  B: number;
  H: number;
  Hk: number;
  S: number;
  D: number;
  ratio: number;
  variant: S2Variant;
  seed: number;
}

/** Which key j query i of head h may attend (the official code's groups and shifts). */
function allowed(c: Case, h: number, i: number, j: number): boolean {
  const G = Math.trunc(c.S * c.ratio);
  if (h < c.H / 2) return Math.floor(i / G) === Math.floor(j / G) && j <= i;
  if (c.variant === 'no_wrap') return Math.floor((i + G / 2) / G) === Math.floor((j + G / 2) / G) && j <= i;
  // roll: x'[t] = x[(t + G/2) mod S]; token i sits at t = (i - G/2) mod S.
  const t = (x: number) => (((x - G / 2) % c.S) + c.S) % c.S;
  return Math.floor(t(i) / G) === Math.floor(t(j) / G) && t(j) <= t(i);
}

function reference(c: Case, q: Tensor, k: Tensor, v: Tensor): Float64Array {
  const { B, H, Hk, S, D } = c;
  const out = new Float64Array(B * H * S * D);
  const at = (x: Tensor, heads: number, b: number, h: number, s: number, d: number) =>
    x.data[((b * heads + h) * S + s) * D + d];
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / (H / Hk));
      for (let i = 0; i < S; i++) {
        const w: number[] = [];
        const js: number[] = [];
        for (let j = 0; j < S; j++) {
          if (!allowed(c, h, i, j)) continue;
          let dot = 0;
          for (let d = 0; d < D; d++) dot += at(q, H, b, h, i, d) * at(k, Hk, b, hk, j, d);
          w.push(dot / Math.sqrt(D));
          js.push(j);
        }
        const mx = Math.max(...w);
        const e = w.map((x) => Math.exp(x - mx));
        const z = e.reduce((a, x) => a + x, 0);
        for (let d = 0; d < D; d++)
          out[((b * H + h) * S + i) * D + d] = js.reduce(
            (a, j, n) => a + (e[n] / z) * at(v, Hk, b, hk, j, d),
            0,
          );
      }
    }
  return out;
}

const arbCase: fc.Arbitrary<Case> = fc
  .record({
    B: fc.integer({ min: 1, max: 2 }),
    kvPairs: fc.integer({ min: 1, max: 2 }),
    gqa: fc.constantFrom(1, 2),
    groups: fc.integer({ min: 1, max: 4 }),
    halfG: fc.integer({ min: 1, max: 3 }),
    D: fc.constantFrom(2, 4),
    variant: fc.constantFrom<S2Variant>('roll', 'no_wrap'),
    seed: fc.nat(10_000),
  })
  .map(({ B, kvPairs, gqa, groups, halfG, D, variant, seed }) => {
    const G = 2 * halfG;
    return { B, Hk: 2 * kvPairs, H: 2 * kvPairs * gqa, S: G * groups, D, ratio: 1 / groups, variant, seed };
  });

function build(c: Case) {
  const b = new GraphBuilder();
  const q = b.input('q', 'f32', [c.B, c.H, c.S, c.D]);
  const k = b.input('k', 'f32', [c.B, c.Hk, c.S, c.D]);
  const v = b.input('v', 'f32', [c.B, c.Hk, c.S, c.D]);
  const y = s2Attention(b, q, k, v, { groupSizeRatio: c.ratio, variant: c.variant, scale: null });
  const full = b.attention(q, k, v, undefined, { causal: true });
  const rng = new Rng(c.seed);
  const rand = (shape: number[]) =>
    tensor(
      'f32',
      shape,
      Float64Array.from({ length: shape.reduce((a, x) => a * x, 1) }, () => rng.normal()),
    );
  const feeds = {
    q: rand([c.B, c.H, c.S, c.D]),
    k: rand([c.B, c.Hk, c.S, c.D]),
    v: rand([c.B, c.Hk, c.S, c.D]),
  };
  return { g: b.build({ y, full }), feeds };
}

describe('S2-Attn', () => {
  it('equals the reference of the official semantics (roll and no_wrap, GQA, random shapes)', () => {
    fc.assert(
      fc.property(arbCase, (c) => {
        const { g, feeds } = build(c);
        const got = runGraph(g, feeds, new MapWeightStore(), { precision: 'f64' }).y;
        const want = reference(c, feeds.q, feeds.k, feeds.v);
        for (let i = 0; i < want.length; i++) expect(got.data[i]).toBeCloseTo(want[i], 9);
      }),
      { numRuns: 60 },
    );
  });

  it('equals the official code (test/fixtures/longlora/s2attn.json from scripts/reference/longlora_s2attn.py)', () => {
    const f = JSON.parse(readFileSync('test/fixtures/longlora/s2attn.json', 'utf8'));
    const t = (x: { shape: number[]; data: number[] }) => tensor('f32', x.shape, x.data);
    for (const variant of ['roll', 'no_wrap'] as const) {
      const b = new GraphBuilder();
      const [q, k, v] = (['q', 'k', 'v'] as const).map((n) => b.input(n, 'f32', f[n].shape));
      const y = s2Attention(b, q, k, v, { groupSizeRatio: f.group_size_ratio, variant, scale: null });
      const got = runGraph(b.build({ y }), { q: t(f.q), k: t(f.k), v: t(f.v) }, new MapWeightStore()).y.data;
      const want: number[] = f[variant].data;
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      expect(worst, variant).toBeLessThan(1e-5);
    }
  });

  it('with one group, the unshifted half of the heads is full causal attention', () => {
    const c: Case = { B: 1, H: 4, Hk: 2, S: 6, D: 2, ratio: 1, variant: 'roll', seed: 3 };
    const { g, feeds } = build(c);
    const r = runGraph(g, feeds, new MapWeightStore(), { precision: 'f64' });
    const half = (c.H / 2) * c.S * c.D;
    expect(Array.from(r.y.data.slice(0, half))).toEqual(Array.from(r.full.data.slice(0, half)));
    expect(Array.from(r.y.data.slice(half))).not.toEqual(Array.from(r.full.data.slice(half)));
  });

  it('no_wrap never attends across the sequence ends; roll does, in its last group (as the official roll)', () => {
    const c = { B: 1, H: 2, Hk: 2, S: 8, D: 2, ratio: 0.5, seed: 0 };
    // The shifted head (h = 1): does the first query see the last token (future, across the ends)?
    expect(allowed({ ...c, variant: 'no_wrap' }, 1, 0, 7)).toBe(false);
    expect(allowed({ ...c, variant: 'roll' }, 1, 0, 7)).toBe(true);
    expect(
      [...Array(8).keys()].some((i) =>
        [...Array(8).keys()].some((j) => j > i && allowed({ ...c, variant: 'roll' }, 1, i, j)),
      ),
    ).toBe(true);
    // The graph agrees: changing v at the last token changes the shifted head's first output under roll only.
    for (const variant of ['roll', 'no_wrap'] as const) {
      const { g, feeds } = build({ ...c, variant });
      const y0 = runGraph(g, feeds, new MapWeightStore(), { precision: 'f64' }).y.data;
      const v2 = { ...feeds.v, data: Float64Array.from(feeds.v.data) };
      v2.data[(1 * c.S + 7) * c.D] += 1; // kv head 1, the last token
      const y1 = runGraph(g, { ...feeds, v: v2 }, new MapWeightStore(), { precision: 'f64' }).y.data;
      const first = (1 * c.S + 0) * c.D;
      expect(y1[first] !== y0[first], variant).toBe(variant === 'roll');
    }
  });

  it('gradients of q, k, v by finite differences (f64), both variants', () => {
    for (const variant of ['roll', 'no_wrap'] as const) {
      const p = makeProblem(5, (m) => {
        const q = m.v([1, 2, 8, 2]);
        const k = m.v([1, 2, 8, 2]);
        const v = m.v([1, 2, 8, 2]);
        return s2Attention(m.b, q, k, v, { groupSizeRatio: 0.5, variant, scale: null });
      });
      checkGradients(p, 5);
    }
  });

  it('refuses a group size that does not divide the sequence, naming the numbers', () => {
    const b = new GraphBuilder();
    const x = b.input('x', 'f32', [1, 2, 6, 2]);
    expect(() => s2Attention(b, x, x, x, { groupSizeRatio: 0.25, variant: 'roll', scale: null })).toThrow(
      /group size 1 \(seq 6 x group_size_ratio 0\.25\) must be even, at least 2, and divide the sequence length/,
    );
  });
});

await gpuSuite('S2-Attn on webgpu', ({ backend }) => {
  it('equals the cpu interpreter (both variants, GQA)', async () => {
    for (const variant of ['roll', 'no_wrap'] as const) {
      const c: Case = { B: 2, H: 4, Hk: 2, S: 12, D: 4, ratio: 1 / 3, variant, seed: 9 };
      const { g, feeds } = build(c);
      const want = runGraph(g, feeds, new MapWeightStore()).y;
      const exe = await backend.compile(g, new MapWeightStore());
      try {
        expectClose((await exe.run({ feeds, outputs: ['y'] })).y, want, 1e-5, variant);
      } finally {
        exe.dispose();
      }
    }
  });
});
