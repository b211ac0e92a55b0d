// The building block of elementwise and data-movement kernels: one invocation per
// output element (or per u32 word for packed u8/u4 outputs) evaluating
// `fn value(i: u32) -> <compute type>`, written by the op, over bound inputs.
import type { DType } from '../../../ir/dtype.ts';
import { numel, type Shape, strides } from '../../../ir/shape.ts';
import {
  computeType,
  declStorage,
  enables,
  gpuByteSize,
  isPacked,
  loadFn,
  PRELUDE,
  perWord,
  storageElem,
  storeStmt,
} from '../dtypes.ts';
import { type BindingRef, entry, type KernelContext, type KernelPlan, Uniforms } from '../program.ts';

export const MAP_WORKGROUP = 256;
/** Items (elements, or words of packed outputs) each invocation writes. */
export const MAP_PER_INVOCATION = 4;

export interface MapSpec {
  readonly ctx: KernelContext;
  /** Description fields besides op/dtypes/workgroup (ranks, flags, variants). */
  readonly desc: Readonly<Record<string, string | number | boolean | readonly (string | number | boolean)[]>>;
  /** Node inputs bound as in0, in1, ... (default: all). */
  readonly inputs?: readonly number[];
  /** Extra WGSL functions (op helpers). */
  readonly helpers?: string;
  /** Body of `fn value(i: u32) -> CT`; may call ld_in<k>(j) and read uniforms made through `u`. */
  readonly body: (u: Uniforms) => string;
  /**
   * `count` invocations, invocation `i` writing output element `index(u, 'i')` instead of
   * element i (a part of the output, e.g. one chunk of a concat); not for packed outputs.
   */
  readonly scatter?: { readonly count: number; readonly index: (u: Uniforms, i: string) => string };
  /**
   * Body of `fn value4(i: u32) -> vec4<CT>`, elements 4i..4i+3, from `ld4_in<k>(i)`: used
   * instead of `body` when every bound input is read at the output's own index (no
   * broadcast), the element count is a multiple of 4 and no dtype is f16 or packed.
   */
  readonly vec4?: (u: Uniforms) => string;
}

/** Whether mapKernel takes the vec4 path for this spec (see MapSpec.vec4). */
function vec4Applies(spec: MapSpec, inputs: readonly number[]): boolean {
  const { ctx } = spec;
  const n = numel(ctx.out.shape);
  const dts = [...inputs.map((k) => ctx.inputs[k].dtype), ctx.out.dtype];
  return (
    !!spec.vec4 &&
    !spec.scatter &&
    n % 4 === 0 &&
    dts.every((d) => d !== 'f16' && !isPacked(d)) &&
    inputs.every((k) => numel(ctx.inputs[k].shape) === n)
  );
}

/** Plans a map kernel for the node's output. */
export function mapKernel(spec: MapSpec): KernelPlan {
  const { ctx } = spec;
  const out = ctx.out;
  const inputs = spec.inputs ?? ctx.inputs.map((_, i) => i);
  const inDtypes = inputs.map((k) => ctx.inputs[k].dtype);
  const u = new Uniforms();
  const { scatter } = spec;
  const n = scatter ? scatter.count : numel(out.shape);
  const nU = u.u32(n);
  const vec = vec4Applies(spec, inputs);
  const body = vec && spec.vec4 ? spec.vec4(u) : spec.body(u);
  const ct = computeType(out.dtype);
  const packed = isPacked(out.dtype);
  if (scatter && packed)
    throw new Error(`internal: a scattering map kernel cannot write packed ${out.dtype}`);
  const at = scatter ? scatter.index(u, 't') : 't';
  const pw = perWord(out.dtype);
  const items = packed ? Math.ceil(n / pw) : vec ? n / 4 : n;
  const itemsU = u.u32(items);
  let code = enables([...inDtypes, out.dtype]) + PRELUDE + u.decl();
  const vdecl = (name: string, d: DType, binding: number, write: boolean) =>
    `@group(0) @binding(${binding}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<vec4<${storageElem(d)}>>;\n`;
  inputs.forEach((k, j) => {
    const d = ctx.inputs[k].dtype;
    code += vec
      ? `${vdecl(`in${j}`, d, j + 1, false)}fn ld4_in${j}(i: u32) -> vec4<${computeType(d)}> { return in${j}[i]; }\n`
      : declStorage(`in${j}`, d, j + 1, false) + loadFn(`in${j}`, d);
  });
  code += vec
    ? vdecl('outb', out.dtype, inputs.length + 1, true)
    : declStorage('outb', out.dtype, inputs.length + 1, true);
  code += spec.helpers ?? '';
  code += vec
    ? `fn value4(i: u32) -> vec4<${ct}> {\n${body}\n}\n`
    : `fn value(i: u32) -> ${ct} {\n${body}\n}\n`;
  code += entry([MAP_WORKGROUP]);
  // Several items per invocation, a workgroup apart so neighbouring invocations stay on
  // neighbouring items (coalesced on GPUs, contiguous SIMD lanes on lavapipe).
  code += `  for (var rep = 0u; rep < ${MAP_PER_INVOCATION}u; rep++) {
  let t = (wid * ${MAP_PER_INVOCATION}u + rep) * ${MAP_WORKGROUP}u + lid;
  if (t >= ${itemsU}) { return; }\n`;
  if (vec) code += '  outb[t] = value4(t);\n  }\n}\n';
  else if (!packed) code += `  ${storeStmt('outb', out.dtype, at, 'value(t)')}\n  }\n}\n`;
  else {
    const mask = out.dtype === 'u8' ? '0xffu' : '0xfu';
    const shift = out.dtype === 'u8' ? 'e * 8u' : '(e >> 1u) * 8u + select(4u, 0u, (e & 1u) == 1u)';
    code += `  var word = 0u;
  for (var e = 0u; e < ${pw}u; e++) {
    let i = t * ${pw}u + e;
    if (i < ${nU}) { word = word | ((u32(value(i)) & ${mask}) << (${shift})); }
  }
  outb[t] = word;
  }
}
`;
  }
  const bindings: { ref: BindingRef; write: boolean }[] = inputs.map((k) => ({
    ref: { kind: 'input', index: k },
    write: false,
  }));
  bindings.push({ ref: { kind: 'output' }, write: true });
  return {
    steps: [
      {
        desc: {
          op: ctx.node.op,
          dtypes: [...inDtypes, out.dtype],
          workgroup: [MAP_WORKGROUP],
          ...spec.desc,
          ...(vec ? { vec4: true } : {}),
        },
        code,
        uniforms: u,
        bindings,
        workgroups: Math.ceil(items / (MAP_WORKGROUP * MAP_PER_INVOCATION)),
      },
    ],
  };
}

/** Row-major strides of `shape` aligned to an output of rank `rank`, 0 on broadcast axes. */
export function broadcastStrides(shape: Shape, outShape: Shape): number[] {
  const s = strides(shape);
  const r = outShape.length;
  const out = new Array<number>(r).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const o = r - shape.length + i;
    out[o] = shape[i] === 1 && outShape[o] !== 1 ? 0 : s[i];
  }
  return out;
}

/**
 * WGSL that unravels flat index `i` over `dims` (uniform expressions) into `let <p>0..`
 * coordinates; returns the statements.
 */
export function unravel(i: string, dims: readonly string[], p = 'c'): string {
  if (dims.length === 0) return '';
  let s = `  var r_${p} = ${i};\n`;
  for (let k = dims.length - 1; k > 0; k--) {
    s += `  let ${p}${k} = r_${p} % ${dims[k]}; r_${p} = r_${p} / ${dims[k]};\n`;
  }
  s += `  let ${p}0 = r_${p};\n`;
  return s;
}

/** `c0 * s0 + c1 * s1 + ...` over uniform stride expressions (0u for rank 0). */
export function dot(strideExprs: readonly string[], p = 'c'): string {
  if (strideExprs.length === 0) return '0u';
  return strideExprs.map((s, k) => `${p}${k} * ${s}`).join(' + ');
}

/** Uniform expressions for a list of sizes. */
export function uniformList(u: Uniforms, xs: readonly number[]): string[] {
  return xs.map((x) => u.u32(x));
}

/**
 * Index of input `k` (shape `inShape`) for output index `i` under broadcasting:
 * `i` itself when the shapes agree, else unravel + dot. Returns [statements, expr].
 */
export function broadcastIndex(
  u: Uniforms,
  outShape: Shape,
  inShape: Shape,
  p: string,
): { code: string; index: string } {
  if (inShape.length === outShape.length && inShape.every((d, j) => d === outShape[j])) {
    return { code: '', index: 'i' };
  }
  if (numel(inShape) === 1) return { code: '', index: '0u' };
  const dims = uniformList(u, outShape);
  const st = uniformList(u, broadcastStrides(inShape, outShape));
  return { code: unravel('i', dims, p), index: dot(st, p) };
}

/**
 * `out` and the input shapes with size-1 output axes dropped and neighbouring axes merged
 * where every input keeps both or broadcasts both: the same flat indices, found with fewer
 * integer divisions per element (a [B,H,S,S] value against [B,H,S,1] row statistics is
 * [B*H*S, S] against [B*H*S, 1]). Kernels use the collapsed shapes for code and
 * description alike.
 */
export function collapseBroadcast(
  out: Shape,
  inputs: readonly Shape[],
): { out: number[]; inputs: number[][] } {
  const r = out.length;
  const padded = inputs.map((s) => [...new Array<number>(r - s.length).fill(1), ...s]);
  const o: number[] = [];
  const ins: number[][] = inputs.map(() => []);
  let prev: string | undefined;
  for (let d = 0; d < r; d++) {
    if (out[d] === 1) continue;
    const sig = padded.map((s) => (s[d] === 1 ? 'b' : 'k')).join('');
    if (sig === prev) {
      o[o.length - 1] *= out[d];
      padded.forEach((s, k) => {
        ins[k][ins[k].length - 1] *= s[d];
      });
    } else {
      o.push(out[d]);
      padded.forEach((s, k) => {
        ins[k].push(s[d]);
      });
    }
    prev = sig;
  }
  return { out: o, inputs: ins };
}

/** Broadcast pattern of an input, for the program description: 'same', 'scalar' or 'bcast'. */
export function broadcastKind(outShape: Shape, inShape: Shape): string {
  if (inShape.length === outShape.length && inShape.every((d, j) => d === outShape[j])) return 'same';
  return numel(inShape) === 1 ? 'scalar' : 'bcast';
}

/** Byte size of a node's output buffer. */
export function outBytes(ctx: KernelContext): number {
  return gpuByteSize(ctx.out.dtype, numel(ctx.out.shape));
}

export type { DType };
