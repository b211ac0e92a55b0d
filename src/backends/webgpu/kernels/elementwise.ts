// Elementwise kernels: unary math, broadcasting binary ops and comparisons, where,
// cast, scale, sign and dropout. Floats compute in f32; integer dtypes in i32/u32.
import { type ComputeType, MATH_OPS, type MathDef, type MathOpName } from '../../../ir/ops/math.ts';
import { computeType, lit } from '../dtypes.ts';
import type { Kernel, KernelContext, KernelPlan } from '../program.ts';
import { broadcastIndex, broadcastKind, collapseBroadcast, mapKernel } from './map.ts';

/** erf (Abramowitz-Stegun 7.1.26 refined, |err| < 1.5e-7), tanh that never overflows, pow like Math.pow. */
export const MATH = `fn erf_f(x: f32) -> f32 {
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return select(-y, y, x >= 0.0);
}
fn tanh_f(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, x >= 0.0);
}
fn sigmoid_f(x: f32) -> f32 {
  if (x >= 0.0) { return 1.0 / (1.0 + exp(-x)); }
  let e = exp(x);
  return e / (1.0 + e);
}
fn pow_f(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (a == 0.0) { return select(0.0, inf_f32(1.0), b < 0.0); }
  let m = exp2(b * log2(abs(a)));
  if (a > 0.0) { return m; }
  if (floor(b) != b) { return nan_f32(); }
  let odd = abs(b % 2.0) == 1.0;
  return select(m, -m, odd);
}
`;

type Unary = (x: string, ct: ComputeType) => string;

const mathDefs = Object.values(MATH_OPS) as MathDef[];

/** WGSL expressions of the unary math ops (from ir/ops/math.ts; fused kernels compose them). */
export const UNARY: Record<string, Unary> = Object.fromEntries(
  mathDefs.flatMap((d) => (d.kind === 'unary' ? [[d.name, d.wgsl]] : [])),
);

/** `vec4`: the op's expression is valid WGSL on vec4 operands too (mapKernel's vec4 path). */
function unary(f: Unary, vec4 = false): Kernel {
  return (ctx) => {
    const ct = computeType(ctx.out.dtype);
    return mapKernel({
      ctx,
      desc: {},
      helpers: MATH,
      body: () => `  let x = ld_in0(i);\n  return ${f('x', ct)};`,
      vec4: vec4 ? () => `  let x = ld4_in0(i);\n  return ${f('x', ct)};` : undefined,
    });
  };
}

type Binary = (a: string, b: string, ct: ComputeType) => string;

/** WGSL expressions of the binary math ops (from ir/ops/math.ts). */
export const BINARY: Record<string, Binary> = Object.fromEntries(
  mathDefs.flatMap((d) => (d.kind === 'binary' ? [[d.name, d.wgsl]] : [])),
);

function binary(f: Binary, vec4 = false): Kernel {
  return (ctx) => {
    const c = collapseBroadcast(
      ctx.out.shape,
      ctx.inputs.map((t) => t.shape),
    );
    const [a, b] = c.inputs;
    const out = c.out;
    const ct = computeType(ctx.out.dtype);
    return mapKernel({
      vec4: vec4 ? () => `  return ${f('ld4_in0(i)', 'ld4_in1(i)', ct)};` : undefined,
      ctx,
      desc: { rank: out.length, bcast: [broadcastKind(out, a), broadcastKind(out, b)] },
      helpers: MATH,
      body: (u) => {
        const ia = broadcastIndex(u, out, a, 'a');
        const ib = broadcastIndex(u, out, b, 'b');
        return `${ia.code}${ib.code}  let x = ld_in0(${ia.index});\n  let y = ld_in1(${ib.index});\n  return ${f('x', 'y', computeType(ctx.out.dtype))};`;
      },
    });
  };
}

const where: Kernel = (ctx) => {
  const zero = lit(0, computeType(ctx.inputs[0].dtype));
  const col = collapseBroadcast(
    ctx.out.shape,
    ctx.inputs.map((t) => t.shape),
  );
  const [c, a, b] = col.inputs;
  const out = col.out;
  return mapKernel({
    ctx,
    desc: { rank: out.length, bcast: [c, a, b].map((t) => broadcastKind(out, t)) },
    body: (u) => {
      const ic = broadcastIndex(u, out, c, 'c');
      const ia = broadcastIndex(u, out, a, 'a');
      const ib = broadcastIndex(u, out, b, 'b');
      return `${ic.code}${ia.code}${ib.code}  if (ld_in0(${ic.index}) != ${zero}) { return ld_in1(${ia.index}); }\n  return ld_in2(${ib.index});`;
    },
  });
};

const broadcastTo: Kernel = (ctx) => {
  const c = collapseBroadcast(ctx.out.shape, [ctx.inputs[0].shape]);
  const out = c.out;
  return mapKernel({
    ctx,
    desc: { rank: out.length, bcast: [broadcastKind(out, c.inputs[0])] },
    body: (u) => {
      const ia = broadcastIndex(u, out, c.inputs[0], 'a');
      return `${ia.code}  return ld_in0(${ia.index});`;
    },
  });
};

/**
 * Float to integer as a typed-array store does: truncate toward zero, wrap modulo 2^32,
 * NaN and infinities to 0 (WGSL's i32()/u32() saturate instead). Beyond +-2^31 an f32 is a
 * multiple of 256, so the remainder below 2^32 is exact in f32.
 */
const WRAP_U32 = `fn wrap_u32(x: f32) -> u32 {
  let t = trunc(x);
  if (!(abs(t) <= 3.4028234663852886e38)) { return 0u; }
  if (t >= -2147483648.0 && t < 2147483648.0) { return bitcast<u32>(i32(t)); }
  return u32(t - floor(t * 2.3283064365386963e-10) * 4294967296.0);
}
`;

const cast: Kernel = (ctx) => {
  const from = computeType(ctx.inputs[0].dtype);
  const to = computeType(ctx.out.dtype);
  let expr = 'x';
  if (from === 'f32' && to === 'u32') expr = 'wrap_u32(x)';
  else if (from === 'f32' && to === 'i32') expr = 'bitcast<i32>(wrap_u32(x))';
  else if (from !== to) expr = `${to}(x)`;
  if (ctx.out.dtype === 'u8') expr = `(${expr}) & 0xffu`;
  return mapKernel({
    ctx,
    desc: {},
    helpers: WRAP_U32,
    body: () => `  let x = ld_in0(i);\n  return ${expr};`,
    // Same compute type: a copy (or a reinterpretation the storage already is).
    vec4: from === to && expr === 'x' ? () => '  return ld4_in0(i);' : undefined,
  });
};

const scale: Kernel = (ctx) => {
  const ct = computeType(ctx.out.dtype);
  const factor = Number(ctx.node.attrs.factor);
  return mapKernel({
    ctx,
    desc: {},
    body: (u) => {
      const f = u.f32v(factor);
      return ct === 'f32' ? `  return ld_in0(i) * ${f};` : `  return ${ct}(f32(ld_in0(i)) * ${f});`;
    },
    vec4: ct === 'f32' ? (u) => `  return ld4_in0(i) * ${u.f32v(factor)};` : undefined,
  });
};

/** hash32 of src/util/rng.ts, bit for bit (u32 multiply wraps like Math.imul). */
export const HASH32 = `fn hash32(seed: u32, counter: u32) -> u32 {
  var h = seed ^ (counter * 0x9e3779b1u);
  h = (h ^ (h >> 16u)) * 0x7feb352du;
  h = (h ^ (h >> 15u)) * 0x846ca68bu;
  return h ^ (h >> 16u);
}
`;

const dropout: Kernel = (ctx) => {
  const p = Number(ctx.node.attrs.p);
  const seed = Number(ctx.node.attrs.seed);
  const hasStep = ctx.inputs.length > 1;
  return mapKernel({
    ctx,
    desc: { step: hasStep },
    helpers: HASH32,
    body: (u) => {
      const seedU = u.u32(seed >>> 0);
      const thr = u.u32(dropThreshold(p));
      const inv = u.f32v(1 / (1 - p));
      // The CPU's dropoutKey: seed ^ imul(step, 0x9e3779b1).
      const s = hasStep ? `(${seedU} ^ (u32(ld_in1(0u)) * 0x9e3779b1u))` : seedU;
      return `  let keep = hash32(${s}, i) >= ${thr};\n  return select(0.0, ld_in0(i) * ${inv}, keep);`;
    },
  });
};

/** An element is kept when its hash is >= floor(p * 2^32) (the CPU's dropoutThreshold). */
export function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

function gelu(ctx: KernelContext): KernelPlan {
  const tanhApprox = ctx.node.attrs.approximate === 'tanh';
  const expr = tanhApprox
    ? '0.5 * x * (1.0 + tanh_f(0.7978845608028654 * (x + 0.044715 * x * x * x)))'
    : '0.5 * x * (1.0 + erf_f(x * 0.7071067811865476))';
  return mapKernel({
    ctx,
    desc: { approximate: tanhApprox ? 'tanh' : 'none' },
    helpers: MATH,
    body: () => `  let x = ld_in0(i);\n  return ${expr};`,
  });
}

/** The math ops' kernels, each with the vec4 path where its expression allows it. */
const mathKernels = Object.fromEntries(
  mathDefs.map((d): [string, Kernel] => [
    d.name,
    (ctx) => {
      const vec4 = d.vec4(computeType(ctx.out.dtype));
      return d.kind === 'unary' ? unary(d.wgsl, vec4)(ctx) : binary(d.wgsl, vec4)(ctx);
    },
  ]),
) as Record<MathOpName, Kernel>;

export const elementwiseKernels = {
  ...mathKernels,
  gelu,
  scale,
  where,
  cast,
  dropout,
  broadcast_to: broadcastTo,
} satisfies Record<string, Kernel>;
