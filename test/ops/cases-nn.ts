// Cases for matmul, linear, rope and attention. References compute each output
// element from the definitions (explicit transposes, explicit GQA head mapping).
import fc from 'fast-check';
import { Rng } from '../../src/util/rng.ts';
import {
  at,
  broadcastFrom,
  build,
  type CaseInput,
  type OpCase,
  opCase,
  pick,
  randTensor,
  readBroadcast,
  seedArb,
  shapeArb,
} from './case.ts';

const small = fc.integer({ min: 1, max: 5 });

export const nnCases = {
  matmul: {
    arb: fc
      .record({ seed: seedArb, batch: shapeArb(0, 2, 3), m: small, k: small, n: small })
      .map(({ seed, batch, m, k, n }) => {
        const rng = new Rng(seed);
        const [ta, tb] = [rng.next() < 0.5, rng.next() < 0.5];
        let [ba, bb] = [broadcastFrom(rng, batch), [...batch]];
        if (rng.next() < 0.5) [ba, bb] = [bb, ba];
        const a = randTensor(rng, 'f32', [...ba, ...(ta ? [k, m] : [m, k])]);
        const b = randTensor(rng, 'f32', [...bb, ...(tb ? [n, k] : [k, n])]);
        return opCase('matmul', [a, b], { transpose_a: ta, transpose_b: tb });
      }),
    reference: (c) => {
      const [a, b] = c.inputs;
      const ta = c.attrs.transpose_a as boolean;
      const tb = c.attrs.transpose_b as boolean;
      const kk = ta ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
      return build('f32', c.out.shape, (idx) => {
        const batch = idx.slice(0, -2);
        const [i, j] = idx.slice(-2);
        let s = 0;
        for (let k = 0; k < kk; k++) {
          s +=
            readBroadcast(a, [...batch, ...(ta ? [k, i] : [i, k])]) *
            readBroadcast(b, [...batch, ...(tb ? [j, k] : [k, j])]);
        }
        return s;
      });
    },
  },
  linear: {
    arb: fc
      .record({ seed: seedArb, lead: shapeArb(0, 2), inF: small, outF: small })
      .map(({ seed, lead, inF, outF }) => {
        const rng = new Rng(seed);
        const ins: CaseInput[] = [
          { t: randTensor(rng, 'f32', [...lead, inF]) },
          { t: randTensor(rng, 'f32', [outF, inF]), as: 'param' },
        ];
        if (rng.next() < 0.5) ins.push({ t: randTensor(rng, 'f32', [outF]), as: 'param' });
        return opCase('linear', ins);
      }),
    reference: (c) => {
      const [x, w, b] = c.inputs;
      const inF = w.shape[1];
      return build('f32', c.out.shape, (idx) => {
        const o = idx[idx.length - 1];
        let s = b ? at(b, o) : 0;
        for (let i = 0; i < inF; i++) s += at(x, ...idx.slice(0, -1), i) * at(w, o, i);
        return s;
      });
    },
  },
  rope: {
    arb: fc
      .record({
        seed: seedArb,
        b: small,
        h: fc.integer({ min: 1, max: 3 }),
        s: small,
        half: fc.integer({ min: 1, max: 4 }),
      })
      .map(({ seed, b, h, s, half }) => {
        const rng = new Rng(seed);
        const perBatch = rng.next() < 0.5;
        const maxPos = pick(rng, [8, 200, 3000]);
        const pos = randTensor(rng, 'i32', perBatch ? [b, s] : [s], { lo: 0, hi: maxPos });
        const layoutIn = pick(rng, ['bhsd', 'bshd'] as const);
        return opCase(
          'rope',
          [randTensor(rng, 'f32', layoutIn === 'bshd' ? [b, s, h, 2 * half] : [b, h, s, 2 * half]), pos],
          {
            theta: pick(rng, [10000, 500000, 100]),
            scaling_factor: pick(rng, [1, 2, 0.5, 8]),
            inverse: rng.next() < 0.3,
            layout_in: layoutIn,
            layout_out: pick(rng, ['bhsd', 'bshd'] as const),
          },
        );
      }),
    // 1e-4: angles up to 3000 rad, cos/sin in f64 on the CPU but likely f32 on a GPU.
    tol: 1e-4,
    reference: (c) => {
      const [x, pos] = c.inputs;
      const d = x.shape[3];
      const half = d / 2;
      const { theta, scaling_factor, inverse, layout_in, layout_out } = c.attrs as {
        theta: number;
        scaling_factor: number;
        inverse: boolean;
        layout_in: 'bhsd' | 'bshd';
        layout_out: 'bhsd' | 'bshd';
      };
      // Element (b, h, s, k) of x whatever its layout.
      const xs = (bb: number, hh: number, ss: number, k: number) =>
        layout_in === 'bshd' ? at(x, bb, ss, hh, k) : at(x, bb, hh, ss, k);
      return build('f32', c.out.shape, (idx) => {
        const [bb, hh, ss, k] = layout_out === 'bshd' ? [idx[0], idx[2], idx[1], idx[3]] : idx;
        const p = pos.shape.length === 2 ? at(pos, bb, ss) : at(pos, ss);
        const i = k % half;
        const angle = ((inverse ? -p : p) / scaling_factor) * theta ** (-(2 * i) / d);
        // rotate_half(x) = cat(-x2, x1)
        const rotated = k < half ? -xs(bb, hh, ss, k + half) : xs(bb, hh, ss, k - half);
        return xs(bb, hh, ss, k) * Math.cos(angle) + rotated * Math.sin(angle);
      });
    },
  },
  attention: {
    arb: fc
      .record({
        seed: seedArb,
        b: fc.integer({ min: 1, max: 2 }),
        hkv: fc.integer({ min: 1, max: 3 }),
        group: fc.integer({ min: 1, max: 3 }),
        s: small,
        t: small,
        d: fc.integer({ min: 1, max: 4 }),
        dv: fc.integer({ min: 1, max: 4 }),
      })
      .map(({ seed, b, hkv, group, s, t, d, dv }) => {
        const rng = new Rng(seed);
        const hq = hkv * group;
        const ins = [
          randTensor(rng, 'f32', [b, hq, s, d]),
          randTensor(rng, 'f32', [b, hkv, t, d]),
          randTensor(rng, 'f32', [b, hkv, t, dv]),
        ];
        if (rng.next() < 0.5) {
          const mask = randTensor(rng, 'f32', broadcastFrom(rng, [b, hq, s, t]), { lo: -2, hi: 2 });
          for (let i = 0; i < mask.data.length; i++)
            if (rng.next() < 0.3) mask.data[i] = Number.NEGATIVE_INFINITY;
          ins.push(mask);
        }
        return opCase('attention', ins, {
          causal: rng.next() < 0.6,
          scale: rng.next() < 0.5 ? null : rng.uniform(0.1, 2),
        });
      }),
    reference: (c) => {
      const [q, k, v, mask] = c.inputs;
      const [, hq, s, d] = q.shape;
      const [, hkv, t] = k.shape;
      const scale = (c.attrs.scale as number | null) ?? 1 / Math.sqrt(d);
      return build('f32', c.out.shape, ([bb, h, i, e]) => {
        const kvh = Math.floor((h * hkv) / hq); // repeat_kv: query head h uses kv head h / (hq / hkv)
        const scores: number[] = [];
        for (let j = 0; j < t; j++) {
          if (c.attrs.causal && j - (t - s) > i) {
            scores.push(-Infinity);
            continue;
          }
          let dot = 0;
          for (let x = 0; x < d; x++) dot += at(q, bb, h, i, x) * at(k, bb, kvh, j, x);
          scores.push(dot * scale + (mask ? readBroadcast(mask, [bb, h, i, j]) : 0));
        }
        const m = Math.max(...scores);
        if (m === -Infinity) return 0;
        const ws = scores.map((x) => Math.exp(x - m));
        const z = ws.reduce((p, x) => p + x, 0);
        return ws.reduce((acc, w, j) => acc + (w / z) * at(v, bb, kvh, j, e), 0);
      });
    },
  },
  attention_softmax: {
    arb: fc
      .record({ seed: seedArb, lead: shapeArb(0, 2, 3), s: small, t: small })
      .map(({ seed, lead, s, t }) => {
        const rng = new Rng(seed);
        const x = randTensor(rng, 'f32', [...lead, s, t], { lo: -3, hi: 3 });
        // -inf scores (an additive mask), whole rows of them now and then.
        for (let i = 0; i < x.data.length; i++) if (rng.next() < 0.2) x.data[i] = Number.NEGATIVE_INFINITY;
        if (rng.next() < 0.3) x.data.fill(Number.NEGATIVE_INFINITY, 0, t);
        return opCase('attention_softmax', [x], { causal: rng.next() < 0.6 });
      }),
    reference: (c) => {
      const [x] = c.inputs;
      const [s, t] = x.shape.slice(-2);
      return build('f32', c.out.shape, (idx) => {
        const i = idx[idx.length - 2];
        const j = idx[idx.length - 1];
        const row = idx.slice(0, -1);
        const counts = (k: number) => !c.attrs.causal || k - (t - s) <= i;
        if (!counts(j)) return 0;
        const xs = Array.from({ length: t }, (_, k) =>
          counts(k) ? at(x, ...row, k) : Number.NEGATIVE_INFINITY,
        );
        const m = Math.max(...xs);
        if (m === Number.NEGATIVE_INFINITY) return 0;
        const z = xs.reduce((a, v) => a + Math.exp(v - m), 0);
        return Math.exp(xs[j] - m) / z;
      });
    },
  },
} satisfies Record<string, OpCase>;
