// WGSL kernels of the QLoRA ops (src/methods/qlora/ops.ts), registered with
// registerKernel (ops from outside the core):
// - dequant_4bit: one invocation per weight element (used only where fuse-dequant left one);
// - dequant_absmax: the double-quant absmax, a tiny map kernel (1/64 of the weight);
// - linear_4bit: the fused dequant-matmul. Codes are read as u32 words (8 codes each,
//   first element in the high nibble of its byte) and scaled by their block's absmax
//   (a block is a multiple of 8 elements, so one absmax per word). GEMV for M <= 8 and
//   x W^T: one workgroup per output feature walks that weight row's words once; else a
//   64x64 tiled kernel that dequantizes the B tile into workgroup memory (both x W^T and
//   x W, the input gradient). The full-precision weight never exists in device memory.
import { numel } from '../../../ir/shape.ts';
import { FP4_TABLE } from '../../../quant/fp4.ts';
import { NF4_TABLE } from '../../../quant/nf4.ts';
import { PRELUDE } from '../dtypes.ts';
import { type BindingRef, entry, type Kernel, type KernelContext, type Step, Uniforms } from '../program.ts';
import { getKernel, registerKernel } from './index.ts';
import { mapKernel } from './map.ts';
import { ROW_WG, wgReduce } from './reduce.ts';

type QuantType = 'nf4' | 'fp4';

/** A WGSL f32 literal that parses back to exactly `v` (an f32 value). */
function f32Lit(v: number): string {
  if (Object.is(v, -0)) return '-0.0';
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** The 16-entry table as a private array (dynamically indexed) and the nibble decoder. */
export function tableWgsl(q: QuantType): string {
  const t = q === 'nf4' ? NF4_TABLE : FP4_TABLE;
  return `var<private> QT: array<f32, 16> = array<f32, 16>(${Array.from(t, f32Lit).join(', ')});
// Code j (0..7) of a word: byte j/2, high nibble for even j.
fn code_of(w: u32, j: u32) -> u32 { return (w >> ((j >> 1u) * 8u + select(4u, 0u, (j & 1u) == 1u))) & 0xfu; }
`;
}

interface Linear4 {
  readonly quant_type: QuantType;
  readonly blocksize: number;
  readonly out_features: number;
  readonly in_features: number;
  readonly transpose: boolean;
}

const dequant4: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as { quant_type: QuantType; blocksize: number };
  return mapKernel({
    ctx,
    desc: { quant_type: a.quant_type, blocksize: a.blocksize },
    helpers: tableWgsl(a.quant_type),
    body: () => `  let byte = ld_in0(i >> 1u);
  let c = select(byte >> 4u, byte & 0xfu, (i & 1u) == 1u);
  return QT[c] * ld_in1(i / ${a.blocksize}u);`,
  });
};

const dequantAbsmax: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as { offset: number | null; nested_blocksize: number };
  if (a.offset === null) {
    throw new Error(
      'dequant_absmax: the double-quant offset is unknown (the qlora pass ran without weights)',
    );
  }
  const offset = a.offset;
  return mapKernel({
    ctx,
    desc: { nested_blocksize: a.nested_blocksize },
    // f32(map * nested) then + offset, as bitsandbytes (two roundings; no fma).
    body: (u) => `  let v = ld_in2(ld_in0(i)) * ld_in1(i / ${a.nested_blocksize}u);
  return v + ${u.f32v(offset)};`,
  });
};

function bindings(ctx: KernelContext): { decls: string; list: { ref: BindingRef; write: boolean }[] } {
  const bias = ctx.inputs.length > 3;
  let decls = `@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> P: array<u32>;
@group(0) @binding(3) var<storage, read> AM: array<f32>;
`;
  const list: { ref: BindingRef; write: boolean }[] = [0, 1, 2].map((index) => ({
    ref: { kind: 'input', index },
    write: false,
  }));
  if (bias) {
    decls += '@group(0) @binding(4) var<storage, read> BIAS: array<f32>;\n';
    list.push({ ref: { kind: 'input', index: 3 }, write: false });
  }
  decls += `@group(0) @binding(${list.length + 1}) var<storage, read_write> Y: array<f32>;\n`;
  list.push({ ref: { kind: 'output' }, write: true });
  return { decls, list };
}

export const GEMV_MAX_ROWS = 8;

/** y[r, n] = sum_k x[r, k] W[n, k]: a workgroup per n walks row n's words once. */
function gemv(ctx: KernelContext, a: Linear4, rows: number): Step {
  const u = new Uniforms();
  const [K, N] = [u.u32(a.in_features), u.u32(a.out_features)];
  const { decls, list } = bindings(ctx);
  const bias = ctx.inputs.length > 3;
  const rs = [...Array(rows).keys()];
  const code = `${PRELUDE + u.decl() + decls + tableWgsl(a.quant_type)}var<workgroup> red: array<f32, ${ROW_WG}>;
${entry([ROW_WG])}  let n = wid;
  let e0 = n * ${K};
  let e1 = e0 + ${K};
${rs.map((r) => `  var s${r} = 0.0;`).join('\n')}
  for (var w = (e0 >> 3u) + lid; w * 8u < e1; w = w + ${ROW_WG}u) {
    let word = P[w];
    let am = AM[(w * 8u) / ${a.blocksize}u];
    for (var j = 0u; j < 8u; j++) {
      let e = w * 8u + j;
      if (e >= e0 && e < e1) {
        let v = QT[code_of(word, j)] * am;
        let k = e - e0;
${rs.map((r) => `        s${r} = fma(X[${r}u * ${K} + k], v, s${r});`).join('\n')}
      }
    }
  }
${rs.map((r) => wgReduce(`t${r}`, `s${r}`, (x, y) => `${x} + ${y}`)).join('')}  if (lid == 0u) {
${rs.map((r) => `    Y[${r}u * ${N} + n] = t${r}${bias ? ' + BIAS[n]' : ''};`).join('\n')}
  }
}
`;
  return {
    desc: {
      op: 'linear_4bit',
      dtypes: ['f32', 'u8', 'f32', 'f32'],
      workgroup: [ROW_WG],
      kernel: 'gemv',
      rows,
      quant_type: a.quant_type,
      blocksize: a.blocksize,
      bias,
    },
    code,
    uniforms: u,
    bindings: list,
    workgroups: a.out_features,
  };
}

const TILE = 64;
const BK = 16;

/** C[M, N] = X[M, K] B[K, N] with B(k, n) = W[n, k] (x W^T) or W[k, n] (transpose: x W). */
function tiled(ctx: KernelContext, a: Linear4, m: number): Step {
  const u = new Uniforms();
  const [K, N] = a.transpose ? [a.out_features, a.in_features] : [a.in_features, a.out_features];
  const [MU, NU, KU, IN] = [u.u32(m), u.u32(N), u.u32(K), u.u32(a.in_features)];
  const nbx = Math.ceil(N / TILE);
  const nbxU = u.u32(nbx);
  const { decls, list } = bindings(ctx);
  const bias = ctx.inputs.length > 3;
  const flat = a.transpose ? `gk * ${IN} + gn` : `gn * ${IN} + gk`;
  const Q = TILE / 4;
  const code = `${PRELUDE + u.decl() + decls + tableWgsl(a.quant_type)}
fn wval(e: u32) -> f32 { return QT[code_of(P[e >> 3u], e & 7u)] * AM[e / ${a.blocksize}u]; }
var<workgroup> As: array<vec4<f32>, ${(BK * TILE) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * TILE) / 4}>;
${entry([16, 16])}  let tx = lid3.x;
  let ty = lid3.y;
  let m0 = (wid / ${nbxU}) * ${TILE}u;
  let n0 = (wid % ${nbxU}) * ${TILE}u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < ${KU}; k0 = k0 + ${BK}u) {
    { let kk = lid / ${Q}u; let mq = lid % ${Q}u; let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) { let gm = m0 + mq * 4u + c; if (gk < ${KU} && gm < ${MU}) { v[c] = X[gm * ${KU} + gk]; } }
      As[kk * ${Q}u + mq] = v; }
    { let kk = lid / ${Q}u; let nq = lid % ${Q}u; let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) { let gn = n0 + nq * 4u + c; if (gk < ${KU} && gn < ${NU}) { v[c] = wval(${flat}); } }
      Bs[kk * ${Q}u + nq] = v; }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let av = As[kk * ${Q}u + ty];
      let bv = Bs[kk * ${Q}u + tx];
      acc[0] = fma(vec4<f32>(av.x), bv, acc[0]);
      acc[1] = fma(vec4<f32>(av.y), bv, acc[1]);
      acc[2] = fma(vec4<f32>(av.z), bv, acc[2]);
      acc[3] = fma(vec4<f32>(av.w), bv, acc[3]);
    }
    workgroupBarrier();
  }
  let gn = n0 + tx * 4u;
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + ty * 4u + i;
    if (gm < ${MU}) {
      for (var c = 0u; c < 4u; c++) { if (gn + c < ${NU}) { Y[gm * ${NU} + gn + c] = acc[i][c]${bias ? ' + BIAS[gn + c]' : ''}; } }
    }
  }
}
`;
  return {
    desc: {
      op: 'linear_4bit',
      dtypes: ['f32', 'u8', 'f32', 'f32'],
      workgroup: [16, 16],
      kernel: 'tiled',
      transpose: a.transpose,
      quant_type: a.quant_type,
      blocksize: a.blocksize,
      bias,
    },
    code,
    uniforms: u,
    bindings: list,
    workgroups: nbx * Math.ceil(m / TILE),
  };
}

/** Which path a linear_4bit node takes (for tests and the bench). */
export function linear4bitPath(a: Linear4, rows: number): 'gemv' | 'tiled' {
  return !a.transpose && rows <= GEMV_MAX_ROWS ? 'gemv' : 'tiled';
}

const linear4: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as Linear4;
  const K = a.transpose ? a.out_features : a.in_features;
  const rows = K === 0 ? 0 : numel(ctx.inputs[0].shape) / K;
  if (rows === 0 || a.out_features === 0 || a.in_features === 0) return { steps: [] };
  return { steps: [linear4bitPath(a, rows) === 'gemv' ? gemv(ctx, a, rows) : tiled(ctx, a, rows)] };
};

export const quant4Kernels = { dequant_4bit: dequant4, dequant_absmax: dequantAbsmax, linear_4bit: linear4 };

for (const [op, k] of Object.entries(quant4Kernels)) if (!getKernel(op)) registerKernel(op, k);
