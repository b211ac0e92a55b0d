// The math ops (unary and broadcasting binary elementwise ops), each defined once with
// every aspect side by side: the type rule (here), the CPU kernel's scalar function, the
// WGSL expression (which the WebGPU elementwise kernels and the fused kernels compose) and
// the derivative. backends/cpu/elementwise.ts, backends/webgpu/kernels/elementwise.ts and
// passes/autodiff/rules/elementwise.ts build their tables from this list; adding a math op
// is one entry here (see src/ir/ops/README.md).
//
// Ops with attrs or kernels of their own shape (gelu, scale, where, cast, dropout,
// broadcast_to) keep their rows in the family tables.
import { z } from 'zod';
import type { GraphBuilder, Value } from '../builder.ts';
import { isFloat } from '../dtype.ts';
import type { TensorType } from '../graph.ts';
import { broadcastShapes, ShapeError } from '../shape.ts';
import { defineOp, type OpDef } from './def.ts';

/** Compute types a WGSL expression is written for. */
export type ComputeType = 'f32' | 'i32' | 'u32';

/** What a derivative rule sees of the node (autodiff's VjpContext has at least this). */
export interface GradContext {
  readonly b: GraphBuilder;
  readonly inputs: readonly Value[];
  readonly out: Value;
  /** Cotangent of the output. */
  readonly cot: Value;
}

/** The cotangent of one input, shaped like the output (autodiff sums broadcast axes away). */
export type LocalGrad = (c: GradContext) => Value;

/** Piecewise-constant ops: no gradient flows through them. */
export interface NoGrad {
  readonly none: string;
}

interface MathBase extends OpDef<Record<string, never>> {
  /** WGSL vec4 operands give the same expression per lane (the map kernel's vec4 path). */
  readonly vec4: (ct: ComputeType) => boolean;
}

export interface UnaryMathDef extends MathBase {
  readonly kind: 'unary';
  readonly cpu: (x: number) => number;
  readonly wgsl: (x: string, ct: ComputeType) => string;
  readonly grad: LocalGrad | NoGrad;
}

export interface BinaryMathDef extends MathBase {
  readonly kind: 'binary';
  /** On float inputs; `cpuInt` (default the same) on integer inputs. */
  readonly cpu: (a: number, b: number) => number;
  readonly cpuInt?: (a: number, b: number) => number;
  readonly wgsl: (a: string, b: string, ct: ComputeType) => string;
  /** d/da and d/db, each shaped like the output. */
  readonly grad: readonly [LocalGrad, LocalGrad] | NoGrad;
}

export type MathDef = UnaryMathDef | BinaryMathDef;

const noAttrs = z.strictObject({}) as unknown as z.ZodType<Record<string, never>>;
const never = () => false;
const always = () => true;

type UnarySpec = Omit<UnaryMathDef, 'kind' | 'arity' | 'attrs' | 'infer' | 'vec4'> & {
  readonly vec4?: UnaryMathDef['vec4'];
  /** Input dtypes allowed (default floats only). */
  readonly accepts?: (dtype: TensorType['dtype']) => boolean;
  readonly needs?: string;
};

function unary(s: UnarySpec): UnaryMathDef {
  const accepts = s.accepts ?? isFloat;
  return {
    ...defineOp({
      name: s.name,
      arity: 1,
      attrs: noAttrs,
      infer: ([a]) => {
        if (!accepts(a.dtype))
          throw new ShapeError(`${s.name} needs ${s.needs ?? 'a float'} input, got ${a.dtype}`);
        return a;
      },
      doc: s.doc,
    }),
    kind: 'unary',
    cpu: s.cpu,
    wgsl: s.wgsl,
    vec4: s.vec4 ?? never,
    grad: s.grad,
  };
}

type BinarySpec = Omit<BinaryMathDef, 'kind' | 'arity' | 'attrs' | 'infer' | 'vec4'> & {
  readonly vec4?: BinaryMathDef['vec4'];
};

function binary(s: BinarySpec): BinaryMathDef {
  return {
    ...defineOp({
      name: s.name,
      arity: 2,
      attrs: noAttrs,
      infer: ([a, b]) => {
        if (a.dtype !== b.dtype)
          throw new ShapeError(`${s.name} needs inputs of one dtype, got ${a.dtype} and ${b.dtype}`);
        return { dtype: a.dtype, shape: broadcastShapes(a.shape, b.shape) };
      },
      doc: s.doc,
    }),
    kind: 'binary',
    cpu: s.cpu,
    ...(s.cpuInt ? { cpuInt: s.cpuInt } : {}),
    wgsl: s.wgsl,
    vec4: s.vec4 ?? never,
    grad: s.grad,
  };
}

/** A scalar constant of `like`'s dtype (broadcasts against it). */
export function scalarLike(b: GraphBuilder, v: number, like: Value): Value {
  return b.const(v, [], like.type.dtype);
}

export function oneMinus(b: GraphBuilder, x: Value): Value {
  return b.sub(scalarLike(b, 1, x), x);
}

/** g where `win`, half of it on ties (torch.maximum / minimum split ties evenly). */
function tieSplit(b: GraphBuilder, win: Value, tie: Value, g: Value): Value {
  return b.mul(g, b.add(win, b.scale(tie, 0.5)));
}

/** A WGSL literal of `v` in compute type `t` (1.0, 1i, 1u). */
export function lit(v: number, t: ComputeType): string {
  if (t === 'f32') return Number.isInteger(v) ? `${v}.0` : `${v}`;
  return t === 'i32' ? `${v}i` : `${v}u`;
}

export const add = binary({
  name: 'add',
  doc: 'a + b',
  cpu: (a, b) => a + b,
  wgsl: (a, b) => `${a} + ${b}`,
  vec4: always,
  grad: [(c) => c.cot, (c) => c.cot],
});

export const sub = binary({
  name: 'sub',
  doc: 'a - b',
  cpu: (a, b) => a - b,
  wgsl: (a, b) => `${a} - ${b}`,
  vec4: always,
  grad: [(c) => c.cot, (c) => c.b.neg(c.cot)],
});

export const mul = binary({
  name: 'mul',
  doc: 'a * b',
  cpu: (a, b) => a * b,
  cpuInt: Math.imul, // i32/u32: exact mod 2^32, as WGSL
  wgsl: (a, b) => `${a} * ${b}`,
  vec4: always,
  grad: [(c) => c.b.mul(c.cot, c.inputs[1]), (c) => c.b.mul(c.cot, c.inputs[0])],
});

export const div = binary({
  name: 'div',
  doc: 'a / b (integers truncate toward zero; WGSL gives 0 for a zero divisor)',
  cpu: (a, b) => a / b,
  wgsl: (a, b, ct) =>
    ct === 'f32' ? `${a} / ${b}` : `select(0${ct === 'i32' ? 'i' : 'u'}, ${a} / ${b}, ${b} != 0)`,
  vec4: (ct) => ct === 'f32',
  grad: [
    (c) => c.b.div(c.cot, c.inputs[1]),
    // d(a/b)/db = -(a/b)/b
    (c) => c.b.neg(c.b.div(c.b.mul(c.cot, c.out), c.inputs[1])),
  ],
});

export const pow = binary({
  name: 'pow',
  doc: 'a ** b',
  cpu: Math.pow,
  wgsl: (a, b, ct) => (ct === 'f32' ? `pow_f(${a}, ${b})` : `${ct}(pow_f(f32(${a}), f32(${b})))`),
  grad: [
    (c) => {
      const [a, e] = c.inputs;
      return c.b.mul(c.cot, c.b.mul(e, c.b.pow(a, c.b.sub(e, scalarLike(c.b, 1, e)))));
    },
    // d(a^e)/de = a^e log a (defined for a > 0)
    (c) => c.b.mul(c.b.mul(c.cot, c.out), c.b.unary('log', c.inputs[0])),
  ],
});

// NaN in either input propagates, as torch.maximum / Math.max.
export const maximum = binary({
  name: 'maximum',
  doc: 'max(a, b) elementwise',
  cpu: Math.max,
  wgsl: (a, b, ct) => (ct === 'f32' ? `select(${b}, ${a}, ${a} > ${b} || ${a} != ${a})` : `max(${a}, ${b})`),
  grad: [
    (c) => tieSplit(c.b, c.b.greater(c.inputs[0], c.inputs[1]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
    (c) => tieSplit(c.b, c.b.greater(c.inputs[1], c.inputs[0]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
  ],
});

export const minimum = binary({
  name: 'minimum',
  doc: 'min(a, b) elementwise',
  cpu: Math.min,
  wgsl: (a, b, ct) => (ct === 'f32' ? `select(${b}, ${a}, ${a} < ${b} || ${a} != ${a})` : `min(${a}, ${b})`),
  grad: [
    (c) => tieSplit(c.b, c.b.greater(c.inputs[1], c.inputs[0]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
    (c) => tieSplit(c.b, c.b.greater(c.inputs[0], c.inputs[1]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
  ],
});

// Comparisons give 1 or 0 in the inputs' dtype: the masks of relu/max/abs VJPs are arithmetic.
export const greater = binary({
  name: 'greater',
  doc: '1 where a > b else 0 (broadcasting)',
  cpu: (a, b) => (a > b ? 1 : 0),
  wgsl: (a, b, ct) => `select(${lit(0, ct)}, ${lit(1, ct)}, ${a} > ${b})`,
  grad: { none: 'greater is a 0/1 mask: piecewise constant' },
});

export const equal = binary({
  name: 'equal',
  doc: '1 where a == b else 0 (broadcasting)',
  cpu: (a, b) => (a === b ? 1 : 0),
  wgsl: (a, b, ct) => `select(${lit(0, ct)}, ${lit(1, ct)}, ${a} == ${b})`,
  grad: { none: 'equal is a 0/1 mask: piecewise constant' },
});

const anyDtype = () => true;

export const neg = unary({
  name: 'neg',
  doc: '-x',
  accepts: anyDtype,
  cpu: (x) => -x,
  wgsl: (x, ct) => (ct === 'u32' ? `0u - ${x}` : `-${x}`),
  vec4: always,
  grad: (c) => c.b.neg(c.cot),
});

export const abs = unary({
  name: 'abs',
  doc: '|x|',
  accepts: anyDtype,
  cpu: Math.abs,
  wgsl: (x, ct) => (ct === 'u32' ? x : `abs(${x})`),
  vec4: always,
  grad: (c) => c.b.mul(c.cot, c.b.sign(c.inputs[0])),
});

export const exp = unary({
  name: 'exp',
  doc: 'e^x',
  cpu: Math.exp,
  wgsl: (x) => `exp(${x})`,
  vec4: always,
  grad: (c) => c.b.mul(c.cot, c.out),
});

export const log = unary({
  name: 'log',
  doc: 'natural log',
  cpu: Math.log,
  wgsl: (x) => `log(${x})`,
  vec4: always,
  grad: (c) => c.b.div(c.cot, c.inputs[0]),
});

export const sqrt = unary({
  name: 'sqrt',
  doc: 'square root',
  cpu: Math.sqrt,
  wgsl: (x) => `sqrt(${x})`,
  vec4: always,
  grad: (c) => c.b.scale(c.b.div(c.cot, c.out), 0.5),
});

export const rsqrt = unary({
  name: 'rsqrt',
  doc: '1 / sqrt(x)',
  cpu: (x) => 1 / Math.sqrt(x),
  wgsl: (x) => `1.0 / sqrt(${x})`,
  vec4: always,
  // d x^-1/2 = -1/2 x^-3/2 = -1/2 out^3
  grad: (c) => c.b.mul(c.cot, c.b.scale(c.b.mul(c.out, c.b.mul(c.out, c.out)), -0.5)),
});

export const relu = unary({
  name: 'relu',
  doc: 'max(x, 0)',
  cpu: (x) => Math.max(x, 0), // NaN stays NaN, as torch.relu
  wgsl: (x) => `select(0.0, ${x}, ${x} > 0.0 || ${x} != ${x})`,
  grad: (c) => c.b.mul(c.cot, c.b.greater(c.inputs[0], scalarLike(c.b, 0, c.inputs[0]))),
});

export const sigmoid = unary({
  name: 'sigmoid',
  doc: '1 / (1 + e^-x)',
  cpu: (x) => 1 / (1 + Math.exp(-x)),
  wgsl: (x) => `sigmoid_f(${x})`,
  grad: (c) => c.b.mul(c.cot, c.b.mul(c.out, oneMinus(c.b, c.out))),
});

export const tanh = unary({
  name: 'tanh',
  doc: 'hyperbolic tangent',
  cpu: Math.tanh,
  wgsl: (x) => `tanh_f(${x})`,
  grad: (c) => c.b.mul(c.cot, oneMinus(c.b, c.b.mul(c.out, c.out))),
});

export const silu = unary({
  name: 'silu',
  doc: 'x * sigmoid(x) (SiLU / swish, LLaMA MLP)',
  cpu: (x) => x / (1 + Math.exp(-x)),
  wgsl: (x) => `${x} * sigmoid_f(${x})`,
  // silu' = s (1 + x (1 - s)), s = sigmoid(x)
  grad: (c) => {
    const x = c.inputs[0];
    const s = c.b.unary('sigmoid', x);
    return c.b.mul(c.cot, c.b.mul(s, c.b.add(scalarLike(c.b, 1, x), c.b.mul(x, oneMinus(c.b, s)))));
  },
});

export const sign = unary({
  name: 'sign',
  doc: '-1, 0 or 1',
  accepts: (d) => isFloat(d) || d === 'i32',
  needs: 'a float or i32',
  cpu: Math.sign,
  wgsl: (x, ct) => (ct === 'u32' ? `select(0u, 1u, ${x} > 0u)` : `sign(${x})`),
  grad: { none: 'sign is piecewise constant: its derivative is zero almost everywhere' },
});

/** Every math op, by name (the op table, the CPU and WebGPU kernel tables and the VJPs spread it). */
export const MATH_OPS = {
  add,
  sub,
  mul,
  div,
  pow,
  maximum,
  minimum,
  greater,
  equal,
  neg,
  abs,
  exp,
  log,
  sqrt,
  rsqrt,
  relu,
  sigmoid,
  tanh,
  silu,
  sign,
} as const satisfies Record<string, MathDef>;

export type MathOpName = keyof typeof MATH_OPS;
