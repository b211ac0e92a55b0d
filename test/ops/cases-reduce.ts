// Cases for reductions, softmax-likes, norms and cross-entropy. The references walk,
// for each output element, over the input elements that belong to it.
import fc from 'fast-check';
import type { DType } from '../../src/ir/dtype.ts';
import type { Tensor } from '../../src/ir/tensor.ts';
import { Rng } from '../../src/util/rng.ts';
import {
  at,
  build,
  type Case,
  type OpCase,
  opCase,
  pick,
  randTensor,
  seedArb,
  shapeArb,
  tensorOf,
  unravel,
} from './case.ts';

const normAxis = (a: number, r: number) => (a < 0 ? a + r : a);

/** Input elements (as multi-indices and values) that reduce into the output element `outIdx`. */
function members(x: Tensor, axes: number[], keepdims: boolean, outIdx: number[]): number[] {
  const vals: number[] = [];
  for (let f = 0; f < x.data.length; f++) {
    const idx = unravel(f, x.shape);
    const kept = keepdims
      ? idx.map((v, a) => (axes.includes(a) ? 0 : v))
      : idx.filter((_, a) => !axes.includes(a));
    if (kept.every((v, a) => v === outIdx[a])) vals.push(x.data[f]);
  }
  return vals;
}

function reduction(op: string, dtypes: DType[], f: (vals: number[]) => number): OpCase {
  return {
    arb: fc.record({ seed: seedArb, shape: shapeArb(1, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      const r = shape.length;
      // A random subset of axes (possibly empty), each written positive or negative.
      const axes = shape
        .map((_, a) => a)
        .filter(() => rng.next() < 0.5)
        .map((a) => (rng.next() < 0.5 ? a - r : a));
      return opCase(op, [randTensor(rng, pick(rng, dtypes), shape)], { axes, keepdims: rng.next() < 0.5 });
    }),
    reference: (c) => {
      const x = c.inputs[0];
      const axes = (c.attrs.axes as number[]).map((a) => normAxis(a, x.shape.length));
      return build(c.out.dtype, c.out.shape, (i) => f(members(x, axes, c.attrs.keepdims as boolean, i)));
    },
  };
}

/** The line of x through `idx` along `axis`. */
function line(x: Tensor, idx: number[], axis: number): number[] {
  return Array.from({ length: x.shape[axis] }, (_, k) => at(x, ...idx.map((v, a) => (a === axis ? k : v))));
}

function softmaxLike(op: string, log: boolean): OpCase {
  return {
    arb: fc.record({ seed: seedArb, shape: shapeArb(1, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      const axis = Math.floor(rng.uniform(-shape.length, shape.length));
      return opCase(op, [randTensor(rng, 'f32', shape, { lo: -8, hi: 8 })], { axis });
    }),
    reference: (c) => {
      const x = c.inputs[0];
      const axis = normAxis(c.attrs.axis as number, x.shape.length);
      return build('f32', x.shape, (i) => {
        const xs = line(x, i, axis);
        const denom = xs.reduce((s, v) => s + Math.exp(v), 0);
        const v = at(x, ...i);
        return log ? v - Math.log(denom) : Math.exp(v) / denom;
      });
    },
  };
}

function normCase(op: 'rmsnorm' | 'layernorm') {
  return fc.record({ seed: seedArb, shape: shapeArb(1, 3, 6) }).map(({ seed, shape }) => {
    const rng = new Rng(seed);
    const d = shape[shape.length - 1];
    const ins = [randTensor(rng, 'f32', shape), { t: randTensor(rng, 'f32', [d]), as: 'param' as const }];
    if (op === 'layernorm' && rng.next() < 0.7) ins.push({ t: randTensor(rng, 'f32', [d]), as: 'param' });
    return opCase(op, ins, { eps: pick(rng, [1e-5, 1e-6, 0.1]) });
  });
}

function rowOf(c: Case, i: number[]): number[] {
  return line(c.inputs[0], i, i.length - 1);
}

export const reduceCases = {
  sum: reduction('sum', ['f32', 'i32'], (v) => v.reduce((s, x) => s + x, 0)),
  mean: reduction('mean', ['f32'], (v) => v.reduce((s, x) => s + x, 0) / v.length),
  max: reduction('max', ['f32', 'i32'], (v) => v.reduce((m, x) => Math.max(x, m), -Infinity)),
  softmax: softmaxLike('softmax', false),
  log_softmax: softmaxLike('log_softmax', true),
  rmsnorm: {
    arb: normCase('rmsnorm'),
    reference: (c) =>
      build('f32', c.out.shape, (i) => {
        const row = rowOf(c, i);
        const ms = row.reduce((s, v) => s + v * v, 0) / row.length;
        return (
          (at(c.inputs[0], ...i) / Math.sqrt(ms + (c.attrs.eps as number))) * at(c.inputs[1], i[i.length - 1])
        );
      }),
  },
  layernorm: {
    arb: normCase('layernorm'),
    reference: (c) =>
      build('f32', c.out.shape, (i) => {
        const row = rowOf(c, i);
        const mu = row.reduce((s, v) => s + v, 0) / row.length;
        const variance = row.reduce((s, v) => s + (v - mu) ** 2, 0) / row.length;
        const j = i[i.length - 1];
        const bias = c.inputs[2] ? at(c.inputs[2], j) : 0;
        return (
          ((at(c.inputs[0], ...i) - mu) / Math.sqrt(variance + (c.attrs.eps as number))) *
            at(c.inputs[1], j) +
          bias
        );
      }),
  },
  cross_entropy: {
    arb: fc
      .record({ seed: seedArb, n: fc.integer({ min: 1, max: 6 }), v: fc.integer({ min: 1, max: 7 }) })
      .map(({ seed, n, v }) => {
        const rng = new Rng(seed);
        const ignore = pick(rng, [-100, -1, 0]);
        const labels = Array.from({ length: n }, () =>
          rng.next() < 0.25 ? ignore : Math.floor(rng.next() * v),
        );
        return opCase(
          'cross_entropy',
          [randTensor(rng, 'f32', [n, v], { lo: -6, hi: 6 }), tensorOf('i32', [n], labels)],
          {
            ignore_index: ignore,
            reduction: pick(rng, ['mean', 'sum', 'none']),
          },
        );
      }),
    reference: (c) => {
      const [logits, labels] = c.inputs;
      const [n, v] = logits.shape;
      const losses: number[] = [];
      const counted: boolean[] = [];
      for (let r = 0; r < n; r++) {
        const y = labels.data[r];
        counted.push(y !== c.attrs.ignore_index);
        let z = 0;
        for (let j = 0; j < v; j++) z += Math.exp(at(logits, r, j));
        losses.push(counted[r] ? -Math.log(Math.exp(at(logits, r, y)) / z) : 0);
      }
      if (c.attrs.reduction === 'none') return build('f32', [n], ([r]) => losses[r]);
      const total = losses.reduce((s, x) => s + x, 0);
      const count = counted.filter(Boolean).length;
      return build('f32', [], () => (c.attrs.reduction === 'sum' ? total : total / count));
    },
  },
  cross_entropy_grad: {
    arb: fc
      .record({ seed: seedArb, n: fc.integer({ min: 1, max: 6 }), v: fc.integer({ min: 1, max: 7 }) })
      .map(({ seed, n, v }) => {
        const rng = new Rng(seed);
        const ignore = pick(rng, [-100, -1, 0]);
        // Some ignored rows, and now and then a label outside [0, V) (counted, nothing hot).
        const labels = Array.from({ length: n }, () =>
          rng.next() < 0.25 ? ignore : rng.next() < 0.1 ? v + 3 : Math.floor(rng.next() * v),
        );
        const reduction = pick(rng, ['mean', 'sum', 'none'] as const);
        return opCase(
          'cross_entropy_grad',
          [
            randTensor(rng, 'f32', [n, v], { lo: -6, hi: 6 }),
            tensorOf('i32', [n], labels),
            randTensor(rng, 'f32', reduction === 'none' ? [n] : [], { lo: -2, hi: 2 }),
          ],
          { ignore_index: ignore, reduction },
        );
      }),
    reference: (c) => {
      const [logits, labels, cot] = c.inputs;
      const [n, v] = logits.shape;
      const counts = (r: number) => labels.data[r] !== c.attrs.ignore_index;
      const rows = Array.from({ length: n }, (_, r) => r).filter(counts).length;
      return build('f32', [n, v], ([r, j]) => {
        if (!counts(r)) return 0;
        let z = 0;
        for (let k = 0; k < v; k++) z += Math.exp(at(logits, r, k));
        const g =
          c.attrs.reduction === 'none'
            ? at(cot, r)
            : c.attrs.reduction === 'sum'
              ? at(cot)
              : at(cot) / Math.max(rows, 1);
        return (Math.exp(at(logits, r, j)) / z - (labels.data[r] === j ? 1 : 0)) * g;
      });
    },
  },
} satisfies Record<string, OpCase>;
