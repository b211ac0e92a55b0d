// Elementwise kernels: the math ops' (unary, broadcasting binary and ternary: from their
// definitions in ir/ops/math.ts), cast, broadcast_to and dropout. Floats compute in f32;
// integer dtypes in i32/u32.
import type { Attrs } from '../../../ir/graph.ts';
import { MATH_OPS, type MathDef, type MathOpName, type WgslAttrs, wgslOf } from '../../../ir/ops/math.ts';
import { computeType } from '../dtypes.ts';
import type { Kernel, Uniforms } from '../program.ts';
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

const mathDefs = Object.values(MATH_OPS) as MathDef[];
const ofKind = <K extends MathDef['kind']>(k: K) =>
  Object.fromEntries(
    mathDefs.flatMap((d) =>
      d.kind === k ? [[d.name, d.wgsl as Extract<MathDef, { kind: K }>['wgsl']]] : [],
    ),
  );

/** WGSL expressions of the math ops (from ir/ops/math.ts; the fused kernels compose them through steps.ts). */
export const UNARY = ofKind('unary');
export const BINARY = ofKind('binary');
export const TERNARY = ofKind('ternary');

/**
 * The node's attrs as its op's WGSL reads them (`wgsl`: numbers as uniforms made through
 * `u`, so the pipeline is the same for every value) and in the kernel description (`desc`:
 * the others, which change the code).
 */
export function wgslAttrs(d: MathDef, attrs: Attrs) {
  const numeric = new Set(d.numericAttrs);
  const desc: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(attrs))
    if (!numeric.has(k)) desc[k] = typeof v === 'string' || typeof v === 'boolean' ? v : JSON.stringify(v);
  const wgsl = (u: Uniforms): WgslAttrs<Attrs> =>
    Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, numeric.has(k) ? u.f32v(Number(v)) : v]));
  return { desc, wgsl };
}

/**
 * A math op's kernel: unary ones element by element (vec4 where the expression allows it),
 * the others with each input at its broadcast index (collapsed: collapseBroadcast).
 */
function mathKernel(d: MathDef): Kernel {
  return (ctx) => {
    const ct = computeType(ctx.out.dtype);
    const cts = ctx.inputs.map((t) => computeType(t.dtype));
    const at = wgslAttrs(d, ctx.node.attrs);
    const expr = (u: Uniforms, args: readonly string[]) => wgslOf(d, args, ct, at.wgsl(u), cts);
    const vec4 = d.vec4(ct);
    if (d.kind === 'unary')
      return mapKernel({
        ctx,
        desc: at.desc,
        helpers: MATH,
        body: (u) => `  let x = ld_in0(i);\n  return ${expr(u, ['x'])};`,
        vec4: vec4 ? (u) => `  let x = ld4_in0(i);\n  return ${expr(u, ['x'])};` : undefined,
      });
    const c = collapseBroadcast(
      ctx.out.shape,
      ctx.inputs.map((t) => t.shape),
    );
    const out = c.out;
    const names = ['x', 'y', 'z'];
    return mapKernel({
      vec4: vec4
        ? (u) =>
            `  return ${expr(
              u,
              ctx.inputs.map((_, k) => `ld4_in${k}(i)`),
            )};`
        : undefined,
      ctx,
      desc: { ...at.desc, rank: out.length, bcast: c.inputs.map((t) => broadcastKind(out, t)) },
      helpers: MATH,
      body: (u) => {
        let code = '';
        c.inputs.forEach((t, k) => {
          const ix = broadcastIndex(u, out, t, 'abc'[k]);
          code += `${ix.code}  let ${names[k]} = ld_in${k}(${ix.index});\n`;
        });
        return `${code}  return ${expr(u, names.slice(0, c.inputs.length))};`;
      },
    });
  };
}

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
      const d = dropoutWgsl(u, p, seed, hasStep ? 'ld_in1(0u)' : undefined);
      return `  return ${d.apply('ld_in0(i)', d.key, 'i')};`;
    },
  });
};

/**
 * The dropout's WGSL (its uniforms from `u`), for its own kernel and for the matmuls that
 * apply it (matmul-parts.ts): `key`, the CPU's dropoutKey(seed, step) with `step` a WGSL
 * scalar expression, and `apply(x, key, i)`, element `x` at index `i` kept and scaled by
 * 1 / (1 - p) or 0. Needs HASH32.
 */
export function dropoutWgsl(u: Uniforms, p: number, seed: number, step?: string) {
  const seedU = u.u32(seed >>> 0);
  const thr = u.u32(dropThreshold(p));
  const inv = u.f32v(1 / (1 - p));
  // The CPU's dropoutKey: seed ^ imul(step, 0x9e3779b1).
  const key = step === undefined ? seedU : `(${seedU} ^ (u32(${step}) * 0x9e3779b1u))`;
  return {
    key,
    apply: (x: string, k: string, i: string) => `select(0.0, ${x} * ${inv}, hash32(${k}, ${i}) >= ${thr})`,
  };
}

/** An element is kept when its hash is >= floor(p * 2^32) (the CPU's dropoutThreshold). */
function dropThreshold(p: number): number {
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

/** The math ops' kernels, from their definitions (ir/ops/math.ts). */
const mathKernels = Object.fromEntries(mathDefs.map((d) => [d.name, mathKernel(d)])) as Record<
  MathOpName,
  Kernel
>;

export const elementwiseKernels = {
  ...mathKernels,
  cast,
  dropout,
  broadcast_to: broadcastTo,
} satisfies Record<string, Kernel>;
