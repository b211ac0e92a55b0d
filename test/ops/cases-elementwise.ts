// Cases for the elementwise ops (broadcasting binary ops, unary math, where, cast, dropout).
import fc from 'fast-check';
import type { DType } from '../../src/ir/dtype.ts';
import { isFloat } from '../../src/ir/dtype.ts';
import { hash32, Rng } from '../../src/util/rng.ts';
import {
  broadcastFrom,
  build,
  type Case,
  type OpCase,
  opCase,
  pick,
  type Range,
  randTensor,
  readBroadcast,
  seedArb,
  shapeArb,
  tensorOf,
} from './case.ts';

/** Two inputs whose shapes broadcast to a random shape (either side may be the smaller). */
function binaryCase(op: string, dtypes: readonly DType[], ra: Range = {}, rb: Range = {}) {
  return fc.record({ seed: seedArb, shape: shapeArb(0, 4) }).map(({ seed, shape }) => {
    const rng = new Rng(seed);
    const dtype = pick(rng, dtypes);
    let [sa, sb] = [broadcastFrom(rng, shape), [...shape]];
    if (rng.next() < 0.5) [sa, sb] = [sb, sa];
    return opCase(op, [randTensor(rng, dtype, sa, ra), randTensor(rng, dtype, sb, rb)]);
  });
}

function binary(
  op: string,
  f: (a: number, b: number) => number,
  dtypes: readonly DType[] = ['f32'],
  ra?: Range,
  rb?: Range,
): OpCase {
  return {
    arb: binaryCase(op, dtypes, ra, rb),
    reference: (c) =>
      build(c.out.dtype, c.out.shape, (i) => f(readBroadcast(c.inputs[0], i), readBroadcast(c.inputs[1], i))),
  };
}

function unary(
  op: string,
  f: (x: number, c: Case) => number,
  dtypes: readonly DType[] = ['f32'],
  range?: Range,
  attrs?: (rng: Rng) => Record<string, number | string | boolean>,
): OpCase {
  return {
    arb: fc.record({ seed: seedArb, shape: shapeArb(0, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      return opCase(op, [randTensor(rng, pick(rng, dtypes), shape, range)], attrs?.(rng));
    }),
    reference: (c) => build(c.out.dtype, c.out.shape, (i) => f(readBroadcast(c.inputs[0], i), c)),
  };
}

/** erf by composite Simpson integration of 2/sqrt(pi) exp(-t^2) (independent of any series). */
export function erfBySimpson(x: number): number {
  const n = 2000;
  const h = x / n;
  let s = 1 + Math.exp(-x * x);
  for (let k = 1; k < n; k++) s += (k % 2 ? 4 : 2) * Math.exp(-((k * h) ** 2));
  return ((s * h) / 3) * (2 / Math.sqrt(Math.PI));
}

/** What storing v into an integer dtype gives after truncation toward zero. */
function toInt(v: number, dtype: DType): number {
  const t = Math.trunc(v);
  if (dtype === 'i32') return t | 0;
  if (dtype === 'u32') return t >>> 0;
  if (dtype === 'u8') return ((t % 256) + 256) % 256;
  return t;
}

const intAndFloat: DType[] = ['f32', 'i32'];
const positive = { lo: 0.05, hi: 5 };

export const elementwiseCases = {
  add: binary('add', (a, b) => a + b, intAndFloat),
  sub: binary('sub', (a, b) => a - b, intAndFloat),
  mul: binary('mul', (a, b) => a * b, intAndFloat),
  div: binary('div', (a, b) => a / b, ['f32'], {}, positive),
  pow: binary('pow', (a, b) => Math.exp(b * Math.log(a)), ['f32'], { lo: 0.1, hi: 3 }, { lo: -2, hi: 2 }),
  maximum: binary('maximum', (a, b) => Math.max(a, b), intAndFloat),
  minimum: binary('minimum', (a, b) => Math.min(a, b), intAndFloat),
  greater: binary(
    'greater',
    (a, b) => Number(a > b),
    intAndFloat,
    { int: true, lo: -2, hi: 2 },
    { int: true, lo: -2, hi: 2 },
  ),
  equal: binary(
    'equal',
    (a, b) => Number(a === b),
    intAndFloat,
    { int: true, lo: -2, hi: 2 },
    { int: true, lo: -2, hi: 2 },
  ),
  neg: unary('neg', (x) => -x, intAndFloat),
  abs: unary('abs', (x) => (x < 0 ? -x : x), intAndFloat),
  exp: unary('exp', (x) => Math.E ** x),
  log: unary('log', (x) => Math.log2(x) / Math.LOG2E, ['f32'], positive),
  sqrt: unary('sqrt', (x) => x ** 0.5, ['f32'], { lo: 0, hi: 5 }),
  rsqrt: unary('rsqrt', (x) => x ** -0.5, ['f32'], positive),
  relu: unary('relu', (x) => Math.max(x, 0)),
  sigmoid: unary('sigmoid', (x) => Math.exp(x) / (Math.exp(x) + 1)),
  tanh: unary('tanh', (x) => (Math.exp(2 * x) - 1) / (Math.exp(2 * x) + 1)),
  silu: unary('silu', (x) => (x * Math.exp(x)) / (Math.exp(x) + 1)),
  sign: unary('sign', (x) => (x > 0 ? 1 : x < 0 ? -1 : 0), intAndFloat, { int: true, lo: -2, hi: 2 }),
  gelu: unary(
    'gelu',
    (x, c) =>
      c.attrs.approximate === 'tanh'
        ? 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x ** 3)))
        : x * 0.5 * (1 + erfBySimpson(x / Math.SQRT2)),
    ['f32'],
    { lo: -5, hi: 5 },
    (rng) => ({ approximate: pick(rng, ['none', 'tanh']) }),
  ),
  scale: unary(
    'scale',
    (x, c) => x * Number(c.attrs.factor),
    ['f32'],
    {},
    (rng) => ({ factor: rng.uniform(-4, 4) }),
  ),
  cast: {
    arb: fc.record({ seed: seedArb, shape: shapeArb(0, 3) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      const from = pick(rng, ['f32', 'i32', 'u32'] as const);
      const to = pick(rng, ['f32', 'f16', 'bf16', 'i32', 'u32', 'u8'] as const);
      const range = from === 'u32' ? { lo: 0, hi: 300 } : { lo: -300, hi: 300 };
      return opCase('cast', [randTensor(rng, from, shape, range)], { dtype: to });
    }),
    reference: (c) =>
      build(c.out.dtype, c.out.shape, (i) => {
        const v = readBroadcast(c.inputs[0], i);
        return isFloat(c.out.dtype) ? v : toInt(v, c.out.dtype);
      }),
  },
  where: {
    arb: fc.record({ seed: seedArb, shape: shapeArb(0, 4) }).map(({ seed, shape }) => {
      const rng = new Rng(seed);
      const dtype = pick(rng, intAndFloat);
      const shapes = [broadcastFrom(rng, shape), broadcastFrom(rng, shape), broadcastFrom(rng, shape)];
      shapes[Math.floor(rng.next() * 3)] = [...shape]; // one of them spans the full shape
      const cond = randTensor(rng, pick(rng, ['f32', 'i32'] as const), shapes[0], {
        int: true,
        lo: -1,
        hi: 1,
      });
      return opCase('where', [cond, randTensor(rng, dtype, shapes[1]), randTensor(rng, dtype, shapes[2])]);
    }),
    reference: (c) =>
      build(c.out.dtype, c.out.shape, (i) =>
        readBroadcast(c.inputs[0], i) === 0 ? readBroadcast(c.inputs[2], i) : readBroadcast(c.inputs[1], i),
      ),
  },
  dropout: {
    arb: fc
      .record({
        seed: seedArb,
        shape: shapeArb(0, 4, 6),
        p: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 0.9, noNaN: true })),
        step: fc.option(fc.nat()),
      })
      .map(({ seed, shape, p, step }) => {
        const rng = new Rng(seed);
        const x = randTensor(rng, 'f32', shape);
        const ins = step === null ? [x] : [tensorOf(pick(rng, ['u32', 'i32'] as const), [], [step])];
        return opCase('dropout', step === null ? ins : [x, ...ins], { p, seed: seed % 1000 });
      }),
    // The spec (see the brief): keep iff hash32(seed ^ imul(step, 0x9e3779b1), i) >= floor(p * 2^32).
    reference: (c) => {
      const { p, seed } = c.attrs as { p: number; seed: number };
      const step = c.inputs[1]?.data[0] ?? 0;
      const key = (seed ^ Math.imul(step, 0x9e3779b1)) >>> 0;
      const x = c.inputs[0];
      const out = build('f32', x.shape, () => 0);
      for (let i = 0; i < x.data.length; i++) {
        out.data[i] = hash32(key, i) >= Math.floor(p * 4294967296) ? x.data[i] / (1 - p) : 0;
      }
      return out;
    },
  },
} satisfies Record<string, OpCase>;
