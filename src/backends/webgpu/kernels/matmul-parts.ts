// Pieces the matmul kernels share: the problem description, batch addressing,
// bindings, the operand loads (f16 conversion, dropout prologue) and f16 conversions.
import type { DType } from '../../../ir/dtype.ts';
import type { Shape } from '../../../ir/shape.ts';
import { declStorage, storageElem } from '../dtypes.ts';
import type { BindingRef, ProgramDesc, Uniforms } from '../program.ts';
import { dropoutWgsl, HASH32 } from './elementwise.ts';

export interface MatmulProblem {
  readonly op: string;
  readonly dtype: DType;
  /** B's dtype when it differs from A's (linear with an f16 weight); bias shares B's. */
  readonly bDtype?: DType;
  readonly outDtype: DType;
  readonly m: number;
  readonly n: number;
  readonly k: number;
  readonly ta: boolean;
  readonly tb: boolean;
  /** Output batch shape and each operand's batch strides in elements (0 where broadcast). */
  readonly batch: Shape;
  readonly aBatchStrides: readonly number[];
  readonly bBatchStrides: readonly number[];
  readonly bias: boolean;
  /** Elementwise ops applied to each output element before it is stored (f32 output only). */
  readonly epilogue?: MatmulEpilogue;
  /** A dropout mask applied to an operand as it is loaded, or to the stored value. */
  readonly dropout?: MatmulDropoutMask;
  /** An elementwise program applied to an operand as it is loaded (f32 operand). */
  readonly pre?: MatmulOperandMap;
}

/** `fn pre_map(x: f32) -> f32`, applied by ldA / ldB (operand `at`) to every element loaded. */
export interface MatmulOperandMap {
  readonly at: 'a' | 'b';
  /** What changes the WGSL (the program), for the cache key. */
  readonly desc: string;
  /** Statements of pre_map's body: `x` in scope; ends with `return ...;`. */
  readonly body: (u: Uniforms) => string;
  /** WGSL functions the body calls. */
  readonly helpers?: string;
}

/**
 * A dropout inside a matmul kernel (issue 21, fuse-dropout): the dropout kernel's mask and
 * arithmetic (`select(0, x * 1/(1-p), hash32(key, i) >= threshold)`, key = seed ^ step *
 * 0x9e3779b1) on operand `a` / `b` at each element's index in that operand's buffer, as
 * ldA / ldB load it (f32 operands), or on the value stored at flat output index i (`out`,
 * after the epilogue; the kernel then stores through epi).
 */
export interface MatmulDropoutMask {
  readonly at: 'a' | 'b' | 'out';
  readonly p: number;
  readonly seed: number;
  /** The node input holding the step (an i32/u32 scalar), if any. */
  readonly step?: { readonly input: number; readonly dtype: DType };
}

/**
 * A matmul epilogue (issue 21): `fn epi(i: u32, m: f32) -> f32` maps the product (+ bias)
 * `m` of flat output element `i` to the value stored, reading more operands (node inputs
 * `first`, `first + 1`, ..., bound after the bias as E0, E1, ...) at that element: each
 * of the output's shape, one per output column (a [N] / [1, .., N] extra, read at
 * i % N: a per-feature scale) or one value. Kernels with an epilogue store element by
 * element.
 */
export type EpilogueRead = 'full' | 'column' | 'scalar';

export interface MatmulEpilogue {
  readonly first: number;
  /** How each extra is read: at i, at i % columns, or its one element. */
  readonly extras: readonly EpilogueRead[];
  /** The output's last dimension (for 'column' extras). */
  readonly columns: number;
  /** What changes the WGSL (the program), for the cache key. */
  readonly desc: string;
  /** Statements of epi's body: `m` and `e0`, `e1`, ... are in scope; ends with `return ...;`. */
  readonly body: (u: Uniforms) => string;
  /** WGSL functions the body calls (the elementwise ops' helpers). */
  readonly helpers?: string;
}

/** A matmul kernel's ProgramDesc: the problem's fields, the kernel's own, the epilogue's program. */
export function matmulDesc(
  p: MatmulProblem,
  kernel: string,
  workgroup: readonly number[],
  fields: Readonly<Record<string, number | boolean | readonly boolean[]>>,
): ProgramDesc {
  return {
    op: p.op,
    dtypes: [p.dtype, p.bDtype ?? p.dtype, p.outDtype],
    workgroup,
    kernel,
    ta: p.ta,
    tb: p.tb,
    batchRank: p.batch.length,
    bias: p.bias,
    ...fields,
    ...(p.epilogue ? { epi: p.epilogue.desc, epiReads: p.epilogue.extras } : {}),
    ...(p.dropout ? { drop: p.dropout.at, dropStep: p.dropout.step?.dtype ?? false } : {}),
    ...(p.pre ? { pre: `${p.pre.at}:${p.pre.desc}` } : {}),
  };
}

/** The value stored at flat output index `i`: `v`, through the epilogue if any (which applies an output dropout). */
export function outValue(p: MatmulProblem, i: string, v: string): string {
  return p.epilogue ? `epi(${i}, ${v})` : v;
}

/** Operand loads: `ldA4(q)` vec4 q of A (a vec4 binding), `ldA1(i)` element i; B alike. */
export const ldA4 = (q: string) => `ldA4(${q})`;
export const ldA1 = (i: string) => `ldA1(${i})`;
export const ldB4 = (q: string) => `ldB4(${q})`;
export const ldB1 = (i: string) => `ldB1(${i})`;

/**
 * WGSL of operand `name`'s load function (vec4 or scalar, as it is bound): the f32 value
 * (converted from f16), masked by dropout (`drop_k(x, key, i)`) when `drop`, mapped by
 * `pre_map` when `map`.
 */
function loadFns(name: 'A' | 'B', dt: DType, vec: boolean, drop: boolean, map: boolean): string {
  const f = (x: string, i: string) => (drop ? `drop_k(${x}, key, ${i})` : map ? `pre_map(${x})` : x);
  const key = drop ? 'let key = drop_key(); ' : '';
  if (vec) {
    const v = dt === 'f16' ? `vec4<f32>(${name}[q])` : `${name}[q]`;
    const body =
      drop || map
        ? `let v = ${v}; ${key}let i = q * 4u;
  return vec4<f32>(${['x', 'y', 'z', 'w'].map((c, j) => f(`v.${c}`, j ? `i + ${j}u` : 'i')).join(', ')});`
        : `return ${v};`;
    return `fn ld${name}4(q: u32) -> vec4<f32> {\n  ${body}\n}\n`;
  }
  const v = dt === 'f16' ? `f32(${name}[i])` : `${name}[i]`;
  return `fn ld${name}1(i: u32) -> f32 { ${key}return ${f(v, 'i')}; }\n`;
}

export const TILE = 64;
export const BK = 16;
export const GEMV_WG = 64;

export function batchStrides(shape: Shape, outBatch: Shape, matSize: number): number[] {
  const bs = shape.slice(0, -2);
  const out = new Array<number>(outBatch.length).fill(0);
  let acc = matSize;
  for (let i = bs.length - 1; i >= 0; i--) {
    const o = outBatch.length - bs.length + i;
    out[o] = bs[i] === 1 ? 0 : acc;
    acc *= bs[i];
  }
  return out;
}

export function batchCode(u: Uniforms, p: MatmulProblem): string {
  const dims = p.batch.map((d) => u.u32(d));
  const sa = p.aBatchStrides.map((d) => u.u32(d));
  const sb = p.bBatchStrides.map((d) => u.u32(d));
  let s = '  var ra = batch;\n  var aBase = 0u;\n  var bBase = 0u;\n';
  for (let i = dims.length - 1; i >= 0; i--) {
    s += `  { let c = ra % ${dims[i]}; ra = ra / ${dims[i]}; aBase = aBase + c * ${sa[i]}; bBase = bBase + c * ${sb[i]}; }\n`;
  }
  return s;
}

/**
 * WGSL of the dropout (`drop_key()`, `drop_k(x, key, i)`: the dropout kernel's key,
 * threshold and scale as uniforms; its step read from a binding `DS` the caller declares)
 * and the operand map (`pre_map(x)`) of `p`, when it has them.
 */
export function prologueFns(p: MatmulProblem, u: Uniforms): string {
  let code = '';
  const d = p.dropout;
  const f32 = (at: 'a' | 'b') => (at === 'a' ? p.dtype : (p.bDtype ?? p.dtype)) === 'f32';
  if (d) {
    if (d.at !== 'out' && !f32(d.at)) throw new Error('internal: a dropout prologue needs an f32 operand');
    const w = dropoutWgsl(u, d.p, d.seed, d.step ? 'DS[0]' : undefined);
    code += `${HASH32}fn drop_key() -> u32 { return ${w.key}; }
fn drop_k(x: f32, key: u32, i: u32) -> f32 { return ${w.apply('x', 'key', 'i')}; }
`;
  }
  const pre = p.pre;
  if (pre) {
    if (!f32(pre.at) || d?.at === pre.at)
      throw new Error('internal: an operand map needs an f32 operand without a dropout');
    code += `${pre.helpers ?? ''}fn pre_map(x: f32) -> f32 {\n${pre.body(u)}\n}\n`;
  }
  return code;
}

/** Operand `at`'s element `x` (flat index `i` in the operand) as the product reads it: masked, mapped or itself. */
export function operandValue(p: MatmulProblem, at: 'a' | 'b', x: string, i: string): string {
  if (p.dropout?.at === at) return `drop_k(${x}, drop_key(), ${i})`;
  return p.pre?.at === at ? `pre_map(${x})` : x;
}

/**
 * Operand, bias and epilogue bindings (and the epilogue's `epi`, allocating its uniforms
 * from `u`). With `textures`, the operands are the plan's scratch textures 0 and 1 (TA, TB,
 * matmul-texture.ts) instead of the input buffers A and B.
 */
export function bindingsFor(
  p: MatmulProblem,
  vecA: boolean,
  vecB: boolean,
  vecC: boolean,
  u: Uniforms,
  textures = false,
) {
  const el = storageElem(p.dtype);
  const bel = storageElem(p.bDtype ?? p.dtype);
  const oel = storageElem(p.outDtype);
  const arr = (e: string, v: boolean) => (v ? `array<vec4<${e}>>` : `array<${e}>`);
  let code = textures
    ? '@group(0) @binding(1) var TA: texture_2d<f32>;\n@group(0) @binding(2) var TB: texture_2d<f32>;\n'
    : `@group(0) @binding(1) var<storage, read> A: ${arr(el, vecA)};\n@group(0) @binding(2) var<storage, read> B: ${arr(bel, vecB)};\n`;
  const bindings: { ref: BindingRef; write: boolean }[] = [0, 1].map((index) => ({
    ref: textures ? { kind: 'texture', index } : { kind: 'input', index },
    write: false,
  }));
  if (p.bias) {
    code += declStorage('bias', p.bDtype ?? p.dtype, 3, false);
    bindings.push({ ref: { kind: 'input', index: 2 }, write: false });
  }
  const e = p.epilogue;
  if (e) {
    if (vecC || p.outDtype !== 'f32')
      throw new Error('internal: a matmul epilogue stores f32 element by element');
    for (let j = 0; j < e.extras.length; j++) {
      code += `@group(0) @binding(${bindings.length + 1}) var<storage, read> E${j}: array<f32>;\n`;
      bindings.push({ ref: { kind: 'input', index: e.first + j }, write: false });
    }
  }
  // The texture product reads operands staged through their prologue: only an output mask is its own.
  const d = textures && p.dropout?.at !== 'out' ? undefined : p.dropout;
  if (d?.step) {
    code += declStorage('DS', d.step.dtype, bindings.length + 1, false);
    bindings.push({ ref: { kind: 'input', index: d.step.input }, write: false });
  }
  code += `@group(0) @binding(${bindings.length + 1}) var<storage, read_write> C: ${arr(oel, vecC)};\n`;
  bindings.push({ ref: { kind: 'output' }, write: true });
  if (d?.at === 'out' && !e) throw new Error('internal: an output dropout is applied in the epilogue');
  const pre = textures ? undefined : p.pre;
  code += prologueFns({ ...p, dropout: d, pre }, u);
  // The texture kernel reads TA / TB, staged through the prologue (matmul-texture.ts).
  if (!textures)
    code +=
      loadFns('A', p.dtype, vecA, d?.at === 'a', pre?.at === 'a') +
      loadFns('B', p.bDtype ?? p.dtype, vecB, d?.at === 'b', pre?.at === 'b');
  if (e) {
    const cols = e.extras.includes('column') ? u.u32(e.columns) : '';
    const at = { full: 'i', column: `i % ${cols}`, scalar: '0u' };
    const loads = e.extras.map((r, j) => `  let e${j} = E${j}[${at[r]}];\n`).join('');
    const fn = d?.at === 'out' ? 'epi_map' : 'epi';
    // The operand map's helpers (the math functions) are in already when they are the same.
    const helpers = e.helpers && e.helpers !== pre?.helpers ? e.helpers : '';
    code += `${helpers}fn ${fn}(i: u32, m: f32) -> f32 {\n${loads}${e.body(u)}\n}\n`;
    if (d?.at === 'out')
      code += 'fn epi(i: u32, m: f32) -> f32 { return drop_k(epi_map(i, m), drop_key(), i); }\n';
  }
  return { code, bindings };
}

export const f4 = (e: string, dt: DType) => (dt === 'f16' ? `vec4<f32>(${e})` : e);
export const f1 = (e: string, dt: DType) => (dt === 'f16' ? `f32(${e})` : e);
export function st1(v: string, dt: DType): string {
  return dt === 'f16' ? `f16(${v})` : v;
}

/**
 * Statement storing one vec4 row of a register tile (`v`, default row `i` of `acc`:
 * output row `gm`, columns gn..gn+3, plus the bias) into C at `cBase`; columns past N
 * are dropped.
 */
export function storeTileRow(p: MatmulProblem, vecC: boolean, N: string, v = 'acc[i]'): string {
  const bdt = p.bDtype ?? p.dtype;
  const biasV = (n: string) => (p.bias ? ` + ${f1(`bias[${n}]`, bdt)}` : '');
  return vecC
    ? `if (gn < ${N}) { C[(cBase + gm * ${N} + gn) / 4u] = ${p.outDtype === 'f16' ? 'vec4<f16>' : ''}(${v}${p.bias ? ` + vec4<f32>(${['0u', '1u', '2u', '3u'].map((c) => f1(`bias[gn + ${c}]`, bdt)).join(', ')})` : ''}); }`
    : `for (var c = 0u; c < 4u; c++) { if (gn + c < ${N}) { let o = cBase + gm * ${N} + gn + c; C[o] = ${st1(outValue(p, 'o', `${v}[c]${biasV('gn + c')}`), p.outDtype)}; } }`;
}
