// The math ops (unary, broadcasting binary and ternary elementwise ops), each defined once
// with every aspect side by side: the type rule and attrs (here), the CPU kernel's scalar
// function, the WGSL expression (which the WebGPU elementwise kernels and the fused
// kernels compose) and the derivative. backends/cpu/elementwise.ts,
// backends/webgpu/kernels/elementwise.ts, backends/webgpu/kernels/steps.ts (fused
// programs) and passes/autodiff/rules/elementwise.ts build their tables from this list;
// adding a math op is one entry here (see src/ir/ops/README.md).
//
// Ops with kernels of their own shape (cast, dropout, broadcast_to) keep their rows in the
// family tables.
import { z } from 'zod';
import type { GraphBuilder, Value } from '../builder.ts';
import { isFloat } from '../dtype.ts';
import type { Attrs, TensorType } from '../graph.ts';
import { broadcastShapes, ShapeError } from '../shape.ts';
import { defineOp, type OpDef } from './def.ts';
import { gelu as geluScalar } from './scalar.ts';

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

type NoAttrs = Record<string, never>;

/** The cotangent of one input, shaped like the output (autodiff sums broadcast axes away). */
export type LocalGrad<A = NoAttrs> = (c: GradContext, attrs: A) => Value;

/** Piecewise-constant ops: no gradient flows through them. */
export interface NoGrad {
  readonly none: string;
}

/**
 * Attrs as an op's WGSL reads them: each number as a uniform expression the kernel supplies
 * (so kernels that differ only in it share one pipeline), the others as they are.
 */
export type WgslAttrs<A> = { readonly [K in keyof A]: A[K] extends number ? string : A[K] };

interface MathBase<A extends Attrs> extends OpDef<A> {
  /** WGSL vec4 operands give the same expression per lane (the map kernel's vec4 path). */
  readonly vec4: (ct: ComputeType) => boolean;
  /** Its attrs that are numbers (uniforms in WGSL; a fused step holds them inline). */
  readonly numericAttrs: readonly string[];
  /** A fused_map step may apply it: every attr is a number. */
  readonly fusable: boolean;
}

export interface UnaryMathDef<A extends Attrs = NoAttrs> extends MathBase<A> {
  readonly kind: 'unary';
  readonly cpu: (x: number, attrs: A) => number;
  readonly wgsl: (x: string, ct: ComputeType, attrs: WgslAttrs<A>) => string;
  readonly grad: LocalGrad<A> | NoGrad;
}

export interface BinaryMathDef<A extends Attrs = NoAttrs> extends MathBase<A> {
  readonly kind: 'binary';
  /** On float inputs; `cpuInt` (default the same) on integer inputs. */
  readonly cpu: (a: number, b: number, attrs: A) => number;
  readonly cpuInt?: (a: number, b: number, attrs: A) => number;
  readonly wgsl: (a: string, b: string, ct: ComputeType, attrs: WgslAttrs<A>) => string;
  /** d/da and d/db, each shaped like the output. */
  readonly grad: readonly [LocalGrad<A>, LocalGrad<A>] | NoGrad;
}

/** A selection: the first input picks between the other two (no derivative through it). */
export interface TernaryMathDef<A extends Attrs = NoAttrs> extends MathBase<A> {
  readonly kind: 'ternary';
  readonly cpu: (c: number, a: number, b: number, attrs: A) => number;
  /** `ct` the result's compute type, `condCt` the first input's. */
  readonly wgsl: (
    c: string,
    a: string,
    b: string,
    ct: ComputeType,
    attrs: WgslAttrs<A>,
    condCt: ComputeType,
  ) => string;
  /** d/da and d/db, each shaped like the output (the first input has none). */
  readonly grad: readonly [LocalGrad<A>, LocalGrad<A>] | NoGrad;
}

// biome-ignore lint/suspicious/noExplicitAny: a definition of any attrs type (each entry is checked against its own)
type AnyAttrs = any;
export type MathDef = UnaryMathDef<AnyAttrs> | BinaryMathDef<AnyAttrs> | TernaryMathDef<AnyAttrs>;

const noAttrs = z.strictObject({}) as unknown as z.ZodType<NoAttrs>;
const never = () => false;
const always = () => true;

/** The numeric attrs of a schema (a strict object of attrs), and whether they are all of them. */
function attrKinds(schema: z.ZodType): { numericAttrs: string[]; fusable: boolean } {
  const shape = (schema as unknown as { shape?: Record<string, z.ZodType> }).shape ?? {};
  const numericAttrs = Object.keys(shape).filter((k) => shape[k] instanceof z.ZodNumber);
  return { numericAttrs, fusable: numericAttrs.length === Object.keys(shape).length };
}

type Spec<D extends MathDef> = Omit<
  D,
  'kind' | 'arity' | 'attrs' | 'infer' | 'vec4' | 'numericAttrs' | 'fusable'
> & {
  readonly vec4?: D['vec4'];
  readonly attrs?: D['attrs'];
};

function define<D extends MathDef>(
  kind: D['kind'],
  arity: number,
  s: Spec<D>,
  infer: (inputs: readonly TensorType[]) => TensorType,
): D {
  const attrs = s.attrs ?? noAttrs;
  return {
    ...s,
    ...defineOp({ name: s.name, arity, attrs, infer: (ins) => infer(ins), doc: s.doc }),
    ...attrKinds(attrs),
    kind,
    vec4: s.vec4 ?? never,
  } as unknown as D;
}

type UnarySpec<A extends Attrs> = Spec<UnaryMathDef<A>> & {
  /** Input dtypes allowed (default floats only). */
  readonly accepts?: (dtype: TensorType['dtype']) => boolean;
  readonly needs?: string;
};

function unary<A extends Attrs = NoAttrs>({ accepts = isFloat, needs, ...s }: UnarySpec<A>): UnaryMathDef<A> {
  return define<UnaryMathDef<A>>('unary', 1, s, ([a]) => {
    if (!accepts(a.dtype))
      throw new ShapeError(`${s.name} needs ${needs ?? 'a float'} input, got ${a.dtype}`);
    return a;
  });
}

function sameDtype(name: string, a: TensorType, b: TensorType): void {
  if (a.dtype !== b.dtype)
    throw new ShapeError(`${name} needs inputs of one dtype, got ${a.dtype} and ${b.dtype}`);
}

function binary<A extends Attrs = NoAttrs>(s: Spec<BinaryMathDef<A>>): BinaryMathDef<A> {
  return define<BinaryMathDef<A>>('binary', 2, s, ([a, b]) => {
    sameDtype(s.name, a, b);
    return { dtype: a.dtype, shape: broadcastShapes(a.shape, b.shape) };
  });
}

/** The first input any dtype, the other two of one dtype; all three broadcast. */
function ternary<A extends Attrs = NoAttrs>(s: Spec<TernaryMathDef<A>>): TernaryMathDef<A> {
  return define<TernaryMathDef<A>>('ternary', 3, s, ([c, a, b]) => {
    sameDtype(s.name, a, b);
    return { dtype: a.dtype, shape: broadcastShapes(broadcastShapes(c.shape, a.shape), b.shape) };
  });
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
  cpu: (a, b) => Math.max(a, b),
  wgsl: (a, b, ct) => (ct === 'f32' ? `select(${b}, ${a}, ${a} > ${b} || ${a} != ${a})` : `max(${a}, ${b})`),
  grad: [
    (c) => tieSplit(c.b, c.b.greater(c.inputs[0], c.inputs[1]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
    (c) => tieSplit(c.b, c.b.greater(c.inputs[1], c.inputs[0]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
  ],
});

export const minimum = binary({
  name: 'minimum',
  doc: 'min(a, b) elementwise',
  cpu: (a, b) => Math.min(a, b),
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

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_TANH_K = 0.044715;

/** d gelu / dx, exact: Phi(x) + x phi(x). Phi comes from the forward output (gelu = x Phi), 0.5 at x = 0. */
function geluExactGrad(b: GraphBuilder, x: Value, out: Value): Value {
  const isZero = b.equal(x, scalarLike(b, 0, x));
  const phiCdf = b.where(isZero, scalarLike(b, 0.5, x), b.div(out, b.add(x, isZero)));
  const pdf = b.scale(b.exp(b.scale(b.mul(x, x), -0.5)), INV_SQRT_2PI);
  return b.add(phiCdf, b.mul(x, pdf));
}

/** d gelu_tanh / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3k x^2), t = tanh(c (x + k x^3)). */
function geluTanhGrad(b: GraphBuilder, x: Value): Value {
  const x2 = b.mul(x, x);
  const inner = b.scale(b.add(x, b.scale(b.mul(x2, x), GELU_TANH_K)), SQRT_2_OVER_PI);
  const t = b.unary('tanh', inner);
  const dInner = b.scale(b.add(scalarLike(b, 1, x), b.scale(x2, 3 * GELU_TANH_K)), SQRT_2_OVER_PI);
  const left = b.scale(b.add(scalarLike(b, 1, x), t), 0.5);
  const right = b.mul(b.scale(x, 0.5), b.mul(oneMinus(b, b.mul(t, t)), dInner));
  return b.add(left, right);
}

export const gelu = unary({
  name: 'gelu',
  doc: "GELU, exact (erf) or PyTorch's tanh approximation",
  accepts: anyDtype,
  attrs: z.strictObject({ approximate: z.enum(['none', 'tanh']).default('none') }),
  cpu: (x, { approximate }) => geluScalar(x, approximate),
  wgsl: (x, _ct, { approximate }) =>
    approximate === 'tanh'
      ? `0.5 * ${x} * (1.0 + tanh_f(0.7978845608028654 * (${x} + 0.044715 * ${x} * ${x} * ${x})))`
      : `0.5 * ${x} * (1.0 + erf_f(${x} * 0.7071067811865476))`,
  grad: (c, { approximate }) => {
    const x = c.inputs[0];
    const d = approximate === 'tanh' ? geluTanhGrad(c.b, x) : geluExactGrad(c.b, x, c.out);
    return c.b.mul(c.cot, d);
  },
});

export const scale = unary({
  name: 'scale',
  doc: 'x * factor (a compile-time scalar, e.g. the LoRA scaling alpha / r)',
  accepts: anyDtype,
  attrs: z.strictObject({ factor: z.number() }),
  cpu: (x, { factor }) => x * factor,
  wgsl: (x, ct, { factor }) => (ct === 'f32' ? `${x} * ${factor}` : `${ct}(f32(${x}) * ${factor})`),
  vec4: (ct) => ct === 'f32',
  grad: (c, { factor }) => c.b.scale(c.cot, factor),
});

/** One scalar zero per derivative (where's two local cotangents share it). */
const zeros = new WeakMap<GradContext, Value>();
function zeroOf(c: GradContext): Value {
  let z = zeros.get(c);
  if (!z) zeros.set(c, (z = scalarLike(c.b, 0, c.cot)));
  return z;
}

export const where = ternary({
  name: 'where',
  doc: 'cond != 0 ? a : b, broadcasting all three',
  cpu: (c, a, b) => (c !== 0 ? a : b),
  wgsl: (c, a, b, _ct, _attrs, condCt) => `select(${b}, ${a}, ${c} != ${lit(0, condCt)})`,
  grad: [(c) => c.b.where(c.inputs[0], c.cot, zeroOf(c)), (c) => c.b.where(c.inputs[0], zeroOf(c), c.cot)],
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
  gelu,
  scale,
  where,
} as const satisfies Record<string, MathDef>;

export type MathOpName = keyof typeof MATH_OPS;

const defs = Object.values(MATH_OPS) as MathDef[];

/** The math op of this name, if it is one. */
export function mathOp(name: string): MathDef | undefined {
  return Object.hasOwn(MATH_OPS, name) ? (MATH_OPS as Record<string, MathDef>)[name] : undefined;
}

/** The ops a fused elementwise program (fused_map's steps) may apply. */
export const FUSABLE_OPS: ReadonlySet<string> = new Set(defs.filter((d) => d.fusable).map((d) => d.name));

type NumericKeys<A> = string extends keyof A
  ? never
  : { [K in keyof A]: A[K] extends number ? K : never }[keyof A];
type DefAttrs<D> = D extends OpDef<infer A> ? A : never;

/** The numeric attrs a fused step may carry (scale's `factor`). */
export type StepAttr = { [K in MathOpName]: NumericKeys<DefAttrs<(typeof MATH_OPS)[K]>> }[MathOpName] &
  string;
export const STEP_ATTRS = [
  ...new Set(defs.filter((d) => d.fusable).flatMap((d) => d.numericAttrs)),
] as StepAttr[];

/**
 * One step of a fused elementwise program: `op` applied to `args`, with the op's attrs (all
 * numbers) inline. fused_map's `steps` attr in the IR text: `{op, args, factor?}`.
 */
export type ElementwiseStep = { op: string; args: number[] } & { [K in StepAttr]?: number };

/** A node's op and attrs as a step over `args`. */
export function stepOf(op: string, args: readonly number[], attrs: Attrs): ElementwiseStep {
  const d = mathOp(op);
  const inline = Object.fromEntries((d?.numericAttrs ?? []).map((k) => [k, Number(attrs[k])]));
  return { op, args: [...args], ...inline };
}

/** A step's attrs, as its op's node would have them (everything but `op` and `args`). */
export function stepAttrs(s: ElementwiseStep): Record<string, number> {
  const { op: _op, args: _args, ...attrs } = s;
  return attrs as Record<string, number>;
}

/** A math op's WGSL expression over `args` (input i of compute type `cts[i]`). */
export function wgslOf(
  d: MathDef,
  args: readonly string[],
  ct: ComputeType,
  attrs: WgslAttrs<Attrs>,
  cts: readonly ComputeType[],
): string {
  const [p, q, r] = args;
  if (d.kind === 'unary') return d.wgsl(p, ct, attrs);
  if (d.kind === 'binary') return d.wgsl(p, q, ct, attrs);
  return d.wgsl(p, q, r, ct, attrs, cts[0]);
}
