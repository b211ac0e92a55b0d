// fast-check arbitraries for random VALID small graphs, built with GraphBuilder.
// fast-check generates a plan (input shapes plus a list of small integer "steps")
// and `buildPlan` interprets each step as an op on values built so far, choosing
// operands and attrs so shapes stay valid. Plans shrink well: fewer steps, smaller
// numbers. Values stay tame on inputs in [-1, 1] (see feeds.ts): exp only after tanh,
// log/sqrt/rsqrt/pow/div only of |x| + 0.5 or |x| + 1.
import fc from 'fast-check';
import { GraphBuilder, type Value } from '../../src/ir/builder.ts';
import type { Graph, ParamRole } from '../../src/ir/graph.ts';
import type { InitSpec } from '../../src/ir/ops/index.ts';
import { broadcastShapes, numel, type Shape } from '../../src/ir/shape.ts';

export { indexBound, randomFeeds, randomWeights } from './feeds.ts';

export interface ArbGraphOptions {
  /** Stop adding ops once the graph has this many nodes (default 16; a step may add a few). */
  readonly maxNodes?: number;
  /** Only float tensors: no i32 inputs, gather/embedding/rope/cross_entropy/cast. */
  readonly floatOnly?: boolean;
}

/** One step of a plan: which op, and numbers its interpreter turns into operands and attrs. */
export interface Step {
  readonly op: number;
  readonly a: number;
  readonly b: number;
  readonly c: number;
  readonly scope: number;
}

export interface GraphPlan {
  readonly inputs: readonly (readonly number[])[];
  readonly steps: readonly Step[];
  readonly outputs: readonly number[];
}

/** HF-like module paths; the last ones need JSON quoting in the text IR. */
export const SCOPES = [
  '',
  'model.embed_tokens',
  'model.layers.0.self_attn.q_proj',
  'model.layers.0.self_attn.k_proj',
  'model.layers.0.self_attn',
  'model.layers.0.mlp.up_proj',
  'model.layers.0.mlp.down_proj',
  'model.layers.1.mlp.gate_proj',
  'model.layers.1.input_layernorm',
  'model.norm',
  'lm_head',
  'base_model.model.model.layers.0.self_attn.v_proj.lora_A.default',
  'blocks[0] attn',
  'model.layers.0."odd"',
] as const;

const ROLES: readonly ParamRole[] = ['frozen', 'trainable', 'state'];
const INITS: readonly InitSpec[] = [
  { kind: 'given' },
  { kind: 'zeros' },
  { kind: 'ones' },
  { kind: 'normal', std: 0.02 },
  { kind: 'normal', std: 0.5, mean: 0.1 },
  { kind: 'uniform', low: -1, high: 1 },
  { kind: 'kaiming_uniform', a: Math.sqrt(5) },
];
const OUTPUT_NAMES = ['loss', 'logits', 'hidden_states', 'out.aux', 'h'];
/** Keep every tensor small so CPU and GPU tests stay fast. */
const MAX_NUMEL = 256;

const arbShape = fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 });
const arbStep: fc.Arbitrary<Step> = fc.record({
  op: fc.nat({ max: 999 }),
  a: fc.nat({ max: 999 }),
  b: fc.nat({ max: 999 }),
  c: fc.nat({ max: 999 }),
  scope: fc.nat({ max: 999 }),
});

export function arbGraphPlan(opts: ArbGraphOptions = {}): fc.Arbitrary<GraphPlan> {
  return fc.record({
    inputs: fc.array(arbShape, { minLength: 1, maxLength: 3 }),
    steps: fc.array(arbStep, { minLength: 1, maxLength: opts.maxNodes ?? 16 }),
    outputs: fc.array(fc.nat({ max: 999 }), { maxLength: 3 }),
  });
}

/** Random valid graphs (verified by the builder) with scopes, params and 1-4 named outputs. */
export function arbGraph(opts: ArbGraphOptions = {}): fc.Arbitrary<Graph> {
  return arbGraphPlan(opts).map((p) => buildPlan(p, opts));
}

/** Interprets a plan; deterministic, so a failing plan reproduces. */
export function buildPlan(plan: GraphPlan, opts: ArbGraphOptions = {}): Graph {
  const gen = new Gen(opts);
  for (const s of plan.inputs) gen.add(gen.input('x', 'f32', s));
  const ops = opts.floatOnly ? FLOAT_OPS : ALL_OPS;
  for (const step of plan.steps) {
    if (gen.b.built.length >= (opts.maxNodes ?? 16)) break;
    const v = gen.b.atScope(SCOPES[step.scope % SCOPES.length], () => ops[step.op % ops.length](gen, step));
    if (v) gen.add(v);
  }
  const outs: [string, Value][] = [['y', gen.all[gen.all.length - 1]]];
  plan.outputs.forEach((k, i) => {
    const name = OUTPUT_NAMES[(k + i) % OUTPUT_NAMES.length];
    if (!outs.some(([n]) => n === name)) outs.push([name, gen.all[k % gen.all.length]]);
  });
  return gen.b.build(outs);
}

/** Generator state: the builder, the values ops may read, and fresh names. */
class Gen {
  readonly b = new GraphBuilder();
  /** Float values of rank >= 1 and at most MAX_NUMEL elements: operands for later steps. */
  readonly pool: Value[] = [];
  /** Every step result (scalars too): candidates for outputs. */
  readonly all: Value[] = [];
  private readonly names = new Set<string>();
  private inputs = 0;

  constructor(readonly opts: ArbGraphOptions) {}

  add(v: Value): void {
    this.all.push(v);
    const { shape, dtype } = v.type;
    if (shape.length > 0 && numel(shape) <= MAX_NUMEL && dtype === 'f32') this.pool.push(v);
  }

  input(prefix: string, dtype: 'f32' | 'i32', shape: Shape): Value {
    return this.b.input(`${prefix}${this.inputs++}`, dtype, shape);
  }

  pick(k: number): Value {
    return this.pool[k % this.pool.length];
  }

  /** A value of rank >= r, preferring the one `k` points at. */
  pickRank(k: number, r: number): Value | null {
    for (let i = 0; i < this.pool.length; i++) {
      const v = this.pool[(k + i) % this.pool.length];
      if (v.type.shape.length >= r) return v;
    }
    return null;
  }

  param(shape: Shape, k: number, suffix = 'weight'): Value {
    const base = `${this.b.scope || 'model'}.${suffix}`;
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return this.b.param(name, 'f32', shape, ROLES[k % ROLES.length], INITS[(k >> 2) % INITS.length]);
  }

  intInput(shape: Shape): Value {
    return this.input('ids', 'i32', shape);
  }

  /** A partner for a broadcasting binary op: an existing value or a new param/const/input. */
  partner(a: Value, s: Step): Value {
    if (s.b % 3 !== 0) {
      for (let i = 0; i < this.pool.length; i++) {
        const v = this.pool[(s.b + i) % this.pool.length];
        if (broadcastsWithin(a.type.shape, v.type.shape)) return v;
      }
    }
    const full = a.type.shape;
    const keep = s.c % (full.length + 1);
    const shape = full.slice(full.length - keep).map((d, i) => ((s.c >> i) & 1 ? 1 : d));
    switch (s.b % 4) {
      case 0:
        return this.b.const(((s.c % 7) - 3) / 4, []);
      case 1:
        return this.b.const(
          Array.from({ length: numel(shape) }, (_, i) => ((i % 5) - 2) / 2),
          shape,
        );
      case 2:
        return this.param(shape, s.c, 'bias');
      default:
        return this.input('x', 'f32', shape);
    }
  }

  /** |x| + c: a positive value for log/sqrt/rsqrt/pow/div. */
  positive(x: Value, c: number): Value {
    return this.b.add(this.b.unary('abs', x), this.b.const(c));
  }
}

function broadcastsWithin(a: Shape, b: Shape): boolean {
  try {
    return numel(broadcastShapes(a, b)) <= MAX_NUMEL;
  } catch {
    return false;
  }
}

type OpGen = (g: Gen, s: Step) => Value | null;

const SAFE_UNARY = ['neg', 'abs', 'relu', 'sigmoid', 'tanh', 'silu'] as const;
const POS_UNARY = ['log', 'sqrt', 'rsqrt'] as const;
const BINARY = ['add', 'sub', 'mul', 'maximum', 'minimum'] as const;

const unary: OpGen = (g, s) => g.b.unary(SAFE_UNARY[s.b % SAFE_UNARY.length], g.pick(s.a));
const gelu: OpGen = (g, s) => g.b.gelu(g.pick(s.a), s.b % 2 ? 'tanh' : 'none');
const scale: OpGen = (g, s) => g.b.scale(g.pick(s.a), ((s.b % 9) - 4) / 4);
const expTanh: OpGen = (g, s) => g.b.exp(g.b.unary('tanh', g.pick(s.a)));
const posUnary: OpGen = (g, s) => g.b.unary(POS_UNARY[s.b % POS_UNARY.length], g.positive(g.pick(s.a), 0.5));

const binary: OpGen = (g, s) => {
  const a = g.pick(s.a);
  const b = g.partner(a, s);
  const op = BINARY[s.op % BINARY.length];
  return s.c % 2 ? g.b[op](a, b) : g.b[op](b, a);
};
const divPow: OpGen = (g, s) => {
  const a = g.pick(s.a);
  const b = g.partner(a, s);
  return s.c % 2 ? g.b.div(a, g.positive(b, 1)) : g.b.pow(g.positive(a, 0.5), g.b.unary('tanh', b));
};
const whereGreater: OpGen = (g, s) => {
  const a = g.pick(s.a);
  const b = g.partner(a, s);
  return g.b.where(g.b.greater(a, b), a, b);
};

const matmul: OpGen = (g, s) => {
  const a = g.pickRank(s.a, 2);
  if (!a) return null;
  const transpose_a = s.b % 2 === 1;
  const transpose_b = (s.b >> 1) % 2 === 1;
  const sh = a.type.shape;
  const r = sh.length;
  const k = transpose_a ? sh[r - 2] : sh[r - 1];
  if (s.c % 3 === 0) {
    // a @ aᵀ (or aᵀ @ a): reuse an existing value as the right operand.
    return g.b.matmul(a, a, { transpose_a, transpose_b: !transpose_a });
  }
  const n = 1 + (s.c % 4);
  const batch = s.c % 3 === 1 ? [] : sh.slice(0, -2).map((d, i) => ((s.c >> i) & 1 ? 1 : d));
  const b = g.param([...batch, ...(transpose_b ? [n, k] : [k, n])], s.c);
  return g.b.matmul(a, b, { transpose_a, transpose_b });
};

const linear: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const inF = x.type.shape[x.type.shape.length - 1];
  const out = 1 + (s.b % 5);
  const w = g.param([out, inF], s.c);
  return g.b.linear(x, w, s.c % 2 ? g.param([out], s.c >> 1, 'bias') : undefined);
};

const reduce: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const r = x.type.shape.length;
  const axes = [...Array(r).keys()].filter((i) => (s.b >> i) & 1).map((i) => (s.c % 2 ? i - r : i));
  if (axes.length === 0) axes.push(r - 1);
  const op = (['sum', 'mean', 'max'] as const)[s.op % 3];
  return g.b[op](x, axes, (s.c >> 1) % 2 === 1);
};

const softmax: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const axis = (s.b % x.type.shape.length) - (s.c % 2 ? x.type.shape.length : 0);
  return s.op % 2 ? g.b.softmax(x, axis) : g.b.logSoftmax(x, axis);
};

const reshape: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const sh = [...x.type.shape];
  const r = sh.length;
  switch (s.b % 4) {
    case 0:
      return g.b.reshape(x, [-1]);
    case 1: // merge the last two axes
      return r >= 2 ? g.b.reshape(x, [...sh.slice(0, -2), s.c % 2 ? -1 : sh[r - 2] * sh[r - 1]]) : null;
    case 2: {
      // split an axis into two factors
      const ax = s.c % r;
      const d = sh[ax];
      const f = [...Array(d).keys()].slice(2).find((q) => d % q === 0);
      if (f === undefined) return g.b.reshape(x, [...sh.slice(0, ax), 1, ...sh.slice(ax)]);
      return g.b.reshape(x, [...sh.slice(0, ax), f, s.c % 2 ? -1 : d / f, ...sh.slice(ax + 1)]);
    }
    default: // add a unit axis
      return r < 5 ? g.b.reshape(x, [1, ...sh]) : null;
  }
};

const transpose: OpGen = (g, s) => {
  const x = g.pickRank(s.a, 2);
  if (!x) return null;
  const r = x.type.shape.length;
  if (s.op % 2) return g.b.transpose(x, s.b % r, -1 - (s.c % r));
  const perm = [...Array(r).keys()];
  for (let i = r - 1; i > 0; i--) {
    const j = (s.b + s.c * i) % (i + 1);
    [perm[i], perm[j]] = [perm[j], perm[i]];
  }
  return g.b.permute(x, perm);
};

const slice: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const ax = s.b % x.type.shape.length;
  const d = x.type.shape[ax];
  const start = s.c % d;
  return g.b.slice(x, s.op % 2 ? ax : ax - x.type.shape.length, start, start + 1 + (s.b % (d - start)));
};

const concat: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const sh = x.type.shape;
  const ax = s.b % sh.length;
  const same = g.pool.filter(
    (v) =>
      v !== x && v.type.shape.length === sh.length && v.type.shape.every((d, i) => i === ax || d === sh[i]),
  );
  const other = same.length ? same[s.c % same.length] : x;
  return g.b.concat(s.c % 3 === 2 ? [x, other, x] : [x, other], ax);
};

const norm: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const last = x.type.shape[x.type.shape.length - 1];
  const w = g.param([last], s.c);
  const eps = [1e-5, 1e-6, 0.5][s.b % 3];
  if (s.op % 2) return g.b.rmsnorm(x, w, eps);
  return g.b.layernorm(x, w, s.c % 2 ? g.param([last], s.b, 'bias') : undefined, eps);
};

const misc: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const r = x.type.shape.length;
  switch (s.b % 3) {
    case 0:
      return g.b.roll(x, (s.c % 7) - 3, s.c % r);
    case 1:
      return g.b.dropout(x, [0, 0.1, 0.5][s.c % 3], s.c);
    default:
      return g.b.broadcastTo(x, [1 + (s.c % 2), ...x.type.shape]);
  }
};

const attention: OpGen = (g, s) => {
  const x = g.pickRank(s.a, 4);
  if (x?.type.shape.length !== 4) {
    // Make a [batch, heads, seq, head_dim] input for it instead.
    const q = g.input('q', 'f32', [1, 2, 1 + (s.b % 3), 2]);
    return g.b.attention(q, q, q, undefined, { causal: s.c % 2 === 0 });
  }
  // GQA with one kv head (divides any head count), or plain multi-head.
  const kv = s.b % 2 ? g.b.slice(x, 1, 0, 1) : x;
  const [b, h, t] = x.type.shape;
  const mask = s.c % 3 === 0 ? g.b.const(0, [b, h, t, t]) : undefined;
  return g.b.attention(x, kv, kv, mask, { causal: s.c % 2 === 0, scale: s.c % 5 ? null : 0.5 });
};

// Ops with integer inputs: left out when floatOnly.
const embedding: OpGen = (g, s) => {
  const vocab = 2 + (s.b % 5);
  const table = g.param([vocab, 1 + (s.c % 4)], s.c, 'embed.weight');
  const ids = g.intInput([1 + (s.a % 2), 1 + (s.b % 3)]);
  if (s.op % 2) return g.b.embedding(table, ids);
  const x = g.pick(s.a);
  const ax = s.c % x.type.shape.length;
  return g.b.gather(x, g.intInput([1 + (s.b % 3)]), ax);
};
const ropeOp: OpGen = (g, s) => {
  let x = g.pickRank(s.a, 4);
  if (x?.type.shape.length !== 4 || x.type.shape[3] % 2)
    x = g.input('q', 'f32', [1, 1 + (s.b % 2), 1 + (s.c % 3), 4]);
  const pos = g.intInput([x.type.shape[2]]);
  return g.b.rope(x, pos, { theta: [10000, 500][s.b % 2], scaling_factor: [1, 2][s.c % 2] });
};
const crossEntropy: OpGen = (g, s) => {
  const x = g.pick(s.a);
  const logits = x.type.shape.length === 2 ? x : g.b.reshape(x, [-1, x.type.shape[x.type.shape.length - 1]]);
  const labels = g.intInput([logits.type.shape[0]]);
  return g.b.crossEntropy(logits, labels, { reduction: (['mean', 'sum', 'none'] as const)[s.b % 3] });
};
const castRoundTrip: OpGen = (g, s) => g.b.cast(g.b.cast(g.pick(s.a), s.b % 2 ? 'f16' : 'bf16'), 'f32');

const FLOAT_OPS: readonly OpGen[] = [
  unary,
  unary,
  gelu,
  scale,
  expTanh,
  posUnary,
  binary,
  binary,
  binary,
  divPow,
  whereGreater,
  matmul,
  matmul,
  linear,
  linear,
  reduce,
  softmax,
  reshape,
  reshape,
  transpose,
  slice,
  concat,
  norm,
  misc,
  attention,
];
const ALL_OPS: readonly OpGen[] = [...FLOAT_OPS, embedding, ropeOp, crossEntropy, castRoundTrip];
