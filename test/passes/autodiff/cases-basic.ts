// Gradient-check problems for elementwise ops and reductions. Each case draws its
// shapes (size 1 and odd sizes included) and values from the Maker's seeded generator;
// values stay off kinks and outside the domains where a derivative is undefined.
import type { Value } from '../../../src/ir/builder.ts';
import type { Shape } from '../../../src/ir/shape.ts';
import type { Maker } from './gradcheck.ts';

export type GradCase = (m: Maker) => Value;

/** 1 often, otherwise 1..max (odd sizes common). */
export function dim(m: Maker, max = 4): number {
  return m.rng.next() < 0.3 ? 1 : m.int(1, max);
}

export function shape(m: Maker, minRank = 0, maxRank = 3, max = 4): number[] {
  return Array.from({ length: m.int(minRank, maxRank) }, () => dim(m, max));
}

/** A shape that broadcasts to `full`: leading axes dropped, some axes set to 1. */
export function broadcastFrom(m: Maker, full: Shape): number[] {
  return full.slice(m.int(0, full.length)).map((d) => (m.rng.next() < 0.3 ? 1 : d));
}

/** Two broadcast-compatible shapes, in random order. */
function pair(m: Maker): [number[], number[]] {
  const full = shape(m);
  const other = broadcastFrom(m, full);
  return m.rng.next() < 0.5 ? [full, other] : [other, full];
}

/** Random sign times a magnitude in [lo, hi]: away from 0. */
const awayFromZero = (m: Maker, s: Shape, lo = 0.5, hi = 2): Value => {
  const v = m.v(s, { lo, hi });
  return m.rng.next() < 0.5 ? v : m.b.neg(v);
};

function binary(op: 'add' | 'sub' | 'mul' | 'maximum' | 'minimum'): GradCase {
  return (m) => {
    const [sa, sb] = pair(m);
    return m.b[op](m.v(sa), m.v(sb));
  };
}

function unary(op: 'neg' | 'abs' | 'exp' | 'relu' | 'sigmoid' | 'tanh' | 'silu'): GradCase {
  return (m) => m.b.unary(op, m.v(shape(m)));
}

function positive(op: 'log' | 'sqrt' | 'rsqrt'): GradCase {
  return (m) => m.b.unary(op, m.v(shape(m), { lo: 0.3, hi: 3 }));
}

function reduction(op: 'sum' | 'mean' | 'max'): GradCase {
  return (m) => {
    const s = shape(m, 1, 3);
    const axes = s.map((_, i) => i).filter(() => m.rng.next() < 0.5);
    const signed = axes.map((a) => (m.rng.next() < 0.5 ? a : a - s.length));
    return m.b[op](m.v(s), signed, m.rng.next() < 0.5);
  };
}

export const basicCases: Record<string, GradCase> = {
  add: binary('add'),
  sub: binary('sub'),
  mul: binary('mul'),
  div: (m) => {
    const [sa, sb] = pair(m);
    return m.b.div(m.v(sa), awayFromZero(m, sb));
  },
  pow: (m) => {
    const [sa, sb] = pair(m);
    return m.b.pow(m.v(sa, { lo: 0.5, hi: 2 }), m.v(sb, { lo: -2, hi: 2 }));
  },
  maximum: binary('maximum'),
  minimum: binary('minimum'),
  neg: unary('neg'),
  abs: unary('abs'),
  exp: unary('exp'),
  log: positive('log'),
  sqrt: positive('sqrt'),
  rsqrt: positive('rsqrt'),
  relu: unary('relu'),
  sigmoid: unary('sigmoid'),
  tanh: unary('tanh'),
  silu: unary('silu'),
  gelu: (m) => m.b.gelu(m.v(shape(m), { lo: -4, hi: 4 }), m.pick(['none', 'tanh'] as const)),
  scale: (m) => m.b.scale(m.v(shape(m)), m.rng.uniform(-3, 3)),
  where: (m) => {
    const full = shape(m);
    const cond = m.input(broadcastFrom(m, full), { lo: -1, hi: 1 });
    const [sa, sb] = m.rng.next() < 0.5 ? [full, broadcastFrom(m, full)] : [broadcastFrom(m, full), full];
    return m.b.where(m.b.greater(cond, m.b.const(0)), m.v(sa), m.v(sb));
  },
  cast: (m) => m.b.cast(m.v(shape(m)), m.pick(['f16', 'bf16', 'f32'] as const)),
  dropout: (m) => {
    const x = m.v(shape(m, 1, 3, 5));
    const step = m.rng.next() < 0.5 ? m.ints([], 0, 1000, m.pick(['i32', 'u32'] as const)) : undefined;
    return m.b.dropout(x, m.pick([0, 0.1, 0.5, 0.7]), m.int(0, 2 ** 31), step);
  },
  sum: reduction('sum'),
  mean: reduction('mean'),
  max: reduction('max'),
  softmax: (m) => {
    const s = shape(m, 1, 3);
    return m.b.softmax(m.v(s), m.int(-s.length, s.length - 1));
  },
  log_softmax: (m) => {
    const s = shape(m, 1, 3);
    return m.b.logSoftmax(m.v(s), m.int(-s.length, s.length - 1));
  },
  rmsnorm: (m) => {
    const s = shape(m, 1, 3);
    return m.b.rmsnorm(m.v(s), m.v([s[s.length - 1]]), m.pick([1e-6, 1e-5, 0.1]));
  },
  layernorm: (m) => {
    const s = shape(m, 1, 3);
    const d = s[s.length - 1];
    return m.b.layernorm(m.v(s), m.v([d]), m.rng.next() < 0.5 ? m.v([d]) : undefined, m.pick([1e-5, 0.1]));
  },
  cross_entropy: (m) => {
    const n = dim(m, 5);
    const v = dim(m, 5);
    // Row 0 always counts, so 'mean' never divides by zero; others are ignored at random.
    const ignore = m.pick([-100, -1]);
    const ids = Array.from({ length: n }, (_, i) => (i > 0 && m.rng.next() < 0.3 ? ignore : m.int(0, v - 1)));
    const labels = m.intFeed([n], ids);
    return m.b.crossEntropy(m.v([n, v], { lo: -3, hi: 3 }), labels, {
      ignore_index: ignore,
      reduction: m.pick(['mean', 'sum', 'none'] as const),
    });
  },
  // Ops without a derivative: a gradient still flows around them, never through them.
  sign: (m) => {
    const x = m.v(shape(m));
    return m.b.mul(x, m.b.sign(x));
  },
  greater: (m) => {
    const [sa, sb] = pair(m);
    const x = m.v(sa);
    return m.b.mul(x, m.b.greater(x, m.v(sb)));
  },
  equal: (m) => {
    const x = m.v(shape(m));
    return m.b.mul(x, m.b.equal(x, x));
  },
};
