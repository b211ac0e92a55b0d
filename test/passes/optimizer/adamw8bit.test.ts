// adamw8bit against a float64 transcription of bitsandbytes' kOptimizerStatic8bit2StateBlockwise
// (and of its 32-bit 'adam' kernel for params under min_8bit_size), run on the CPU interpreter.
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/backends/cpu/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { dynamicMap } from '../../../src/passes/optimizer/ops8bit.ts';
import { encodeDynamic } from '../../../src/quant/index.ts';
import { stepGraph, stepStore } from './helpers.ts';

const SIGNED = dynamicMap('signed');
const UNSIGNED = dynamicMap('unsigned');
const BS = 256;

interface RefState {
  p: number[];
  m: number[];
  v: number[];
  c1: number[];
  c2: number[];
  a1: number[];
  a2: number[];
}

/** One bitsandbytes step in f64; `eight` quantizes the moments between steps. */
function refStep(s: RefState, g: Float32Array, t: number, lr: number, wd: number, eight: boolean): void {
  const [b1, b2, eps] = [0.9, 0.999, 1e-8];
  const n = s.p.length;
  const m = new Array<number>(n);
  const v = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const blk = Math.floor(i / BS);
    const m0 = eight ? SIGNED[s.c1[i]] * s.a1[blk] : s.m[i];
    const v0 = eight ? UNSIGNED[s.c2[i]] * s.a2[blk] : s.v[i];
    const ok = Number.isFinite(g[i]);
    m[i] = ok ? b1 * m0 + (1 - b1) * g[i] : 0;
    v[i] = ok ? b2 * v0 + (1 - b2) * g[i] * g[i] : 0;
    if (!ok) continue;
    const c1 = 1 - b1 ** t;
    const c2 = Math.sqrt(1 - b2 ** t);
    s.p[i] += ((-lr * c2) / c1) * (m[i] / (Math.sqrt(v[i]) + c2 * eps));
    if (wd > 0) s.p[i] *= 1 - lr * wd;
  }
  s.m = m;
  s.v = v;
  if (!eight) return;
  for (let blk = 0; blk * BS < n; blk++) {
    const idx = [...Array(Math.min(BS, n - blk * BS)).keys()].map((j) => blk * BS + j);
    s.a1[blk] = Math.max(0, ...idx.map((i) => Math.abs(m[i])));
    s.a2[blk] = Math.max(0, ...idx.map((i) => Math.abs(v[i])));
    for (const i of idx) {
      let c = s.a1[blk] ? encodeDynamic(SIGNED, m[i] / s.a1[blk]) : 0;
      const sb = (x: number) => x < 0 || Object.is(x, -0);
      if (sb(SIGNED[c]) !== sb(m[i])) c = (c + (m[i] > 0 ? 1 : 255)) & 255;
      s.c1[i] = c;
      s.c2[i] = s.a2[blk] ? encodeDynamic(UNSIGNED, v[i] / s.a2[blk]) : 0;
    }
  }
}

function grads(n: number, t: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + t * 1.7) * (1 + (i % 5)) * 0.1);
}

async function run(n: number, steps: number, o: { min: number; wd: number; lr: number; nanAt?: number }) {
  const g = stepGraph(n, { minEightBitSize: o.min, weightDecay: o.wd });
  const store = stepStore(g, n);
  const p0 = [...store.get('p')!.data];
  const exe = await new CpuBackend().compile(g, store);
  const eight = n >= o.min;
  const ref: RefState = {
    p: [...p0],
    m: Array(n).fill(0),
    v: Array(n).fill(0),
    c1: Array(n).fill(0),
    c2: Array(n).fill(0),
    a1: Array(Math.ceil(n / BS)).fill(0),
    a2: Array(Math.ceil(n / BS)).fill(0),
  };
  for (let t = 1; t <= steps; t++) {
    const gr = grads(n, t);
    if (o.nanAt !== undefined) gr[o.nanAt] = t % 2 ? Number.NaN : Number.POSITIVE_INFINITY;
    await exe.run({
      feeds: { g: tensor('f32', [n], gr), lr: tensor('f32', [], [o.lr]), step: tensor('f32', [], [t]) },
    });
    refStep(ref, gr, t, o.lr, o.wd, eight);
  }
  const read = async (name: string) => [...(await exe.readParam(name)).data];
  return { g, ref, read, p0 };
}

describe('adamw8bit (bitsandbytes AdamW8bit)', () => {
  it('follows the f64 bitsandbytes algorithm over 5 steps (8-bit state, partial last block)', async () => {
    const n = 600;
    const lr = 1e-2;
    const { ref, read } = await run(n, 5, { min: 4096 / 8, wd: 0.01, lr });
    const p = await read('p');
    const c1 = await read('optimizer.exp_avg.p');
    const c2 = await read('optimizer.exp_avg_sq.p');
    const a1 = await read('optimizer.exp_avg_absmax.p');
    const a2 = await read('optimizer.exp_avg_sq_absmax.p');
    // f32 (graph) and f64 (reference) may put a value on different sides of a code midpoint;
    // such a flip changes one state value by one code gap, so codes agree almost everywhere.
    const same1 = c1.filter((c, i) => c === ref.c1[i]).length;
    const same2 = c2.filter((c, i) => c === ref.c2[i]).length;
    expect(same1 / n).toBeGreaterThan(0.99);
    expect(same2 / n).toBeGreaterThan(0.99);
    a1.forEach((a, b) => {
      expect(Math.abs(a - ref.a1[b])).toBeLessThanOrEqual(1e-3 * ref.a1[b]);
    });
    a2.forEach((a, b) => {
      expect(Math.abs(a - ref.a2[b])).toBeLessThanOrEqual(1e-3 * ref.a2[b]);
    });
    // Each step moves p by at most ~lr; a flipped code changes that step by < 2% of it.
    p.forEach((x, i) => {
      expect(Math.abs(x - ref.p[i]), `p[${i}]`).toBeLessThanOrEqual(5 * lr * 0.02);
    });
    const exact = p.filter((x, i) => Math.abs(x - ref.p[i]) <= 1e-6).length;
    expect(exact / n).toBeGreaterThan(0.95);
  });

  it('stays within 8-bit quantization error of unquantized AdamW (same formula, f32 moments)', async () => {
    const n = 600;
    const lr = 1e-2;
    const { read, p0 } = await run(n, 5, { min: 512, wd: 0, lr });
    const p = await read('p');
    const full: RefState = {
      p: [...p0],
      m: Array(n).fill(0),
      v: Array(n).fill(0),
      c1: [],
      c2: [],
      a1: [],
      a2: [],
    };
    for (let t = 1; t <= 5; t++) refStep(full, grads(n, t), t, lr, 0, false);
    const diff = p.map((x, i) => Math.abs(x - full.p[i]));
    const worst = Math.max(...diff);
    const mean = diff.reduce((a, b) => a + b, 0) / n;
    // Measured on this problem: worst 0.097 lr, mean 0.015 lr after 5 steps (each step moves p
    // by up to ~lr). Bound: worst < 0.25 lr, mean < 0.05 lr.
    expect(worst).toBeLessThan(0.25 * lr);
    expect(mean).toBeLessThan(0.05 * lr);
    expect(worst).toBeGreaterThan(0); // the states really are quantized
  });

  it('params under min_8bit_size keep f32 state and follow the 32-bit kernel exactly', async () => {
    const n = 100;
    const lr = 3e-3;
    const { g, ref, read } = await run(n, 4, { min: 4096, wd: 0.1, lr });
    const states = g.params().filter((p) => p.attrs.role === 'state');
    expect(states.map((s) => `${s.attrs.name}:${s.type.dtype}`).sort()).toEqual([
      'optimizer.exp_avg.p:f32',
      'optimizer.exp_avg_sq.p:f32',
    ]);
    const p = await read('p');
    const m = await read('optimizer.exp_avg.p');
    p.forEach((x, i) => {
      expect(x).toBeCloseTo(ref.p[i], 6);
    });
    m.forEach((x, i) => {
      expect(x).toBeCloseTo(ref.m[i], 7);
    });
  });

  it('8-bit state is u8 codes plus one f32 absmax per 256 values (bytes)', () => {
    const n = 5000;
    const g = stepGraph(n, {});
    const states = g.params().filter((p) => p.attrs.role === 'state');
    const bytes = (dt: string, k: number) => (dt === 'u8' ? k : 4 * k);
    const total = states.reduce(
      (s, p) =>
        s +
        bytes(
          p.type.dtype,
          p.type.shape.reduce((a, b) => a * b, 1),
        ),
      0,
    );
    expect(states.map((s) => `${s.attrs.name}:${s.type.dtype}[${s.type.shape}]`).sort()).toEqual([
      'optimizer.exp_avg.p:u8[5000]',
      'optimizer.exp_avg_absmax.p:f32[20]',
      'optimizer.exp_avg_sq.p:u8[5000]',
      'optimizer.exp_avg_sq_absmax.p:f32[20]',
    ]);
    expect(total).toBe(2 * 5000 + 2 * 4 * 20); // vs 8 * 5000 for f32 AdamW state
  });

  it('a NaN or inf gradient leaves that element of p alone and zeroes its moments', async () => {
    const n = 300;
    const { ref, read, p0 } = await run(n, 2, { min: 256, wd: 0.01, lr: 1e-2, nanAt: 7 });
    const p = await read('p');
    expect(p[7]).toBe(Math.fround(p0[7]));
    expect(ref.p[7]).toBe(p0[7]);
    const m = await read('optimizer.exp_avg.p');
    const a1 = await read('optimizer.exp_avg_absmax.p');
    expect(Math.abs(SIGNED[m[7]] * a1[0])).toBeLessThan(1e-3 * a1[0]);
    expect(p.every(Number.isFinite)).toBe(true);
  });
});
