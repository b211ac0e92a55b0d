// WGSL kernels of the QLoRA ops (src/methods/qlora/ops.ts), registered with
// registerKernel (ops from outside the core):
// - dequant_4bit: one invocation per weight element (used only where fuse-dequant left one);
// - dequant_absmax: the double-quant absmax, a tiny map kernel (1/64 of the weight);
// - linear_4bit: the fused dequant-matmul. Codes are read as u32 words (8 codes each,
//   first element in the high nibble of its byte) and decoded a word at a time into two
//   vec4s scaled by their block's absmax (a block is a multiple of 8 elements, so one
//   absmax per word). With double quantization the absmax is decoded in place from its
//   u8 code, the nested absmax and the 256-entry map: no f32 absmax buffer exists.
//   GEMV for M <= 8 and x W^T: one workgroup per output feature walks that weight row's
//   words once; else a 64x512 tiled kernel (BK 8) that decodes the B tile into workgroup
//   memory (both x W^T and x W, the input gradient). When in_features % 8 == 0 (every
//   real model) words never straddle rows, so each thread decodes whole words; other
//   sizes take a per-element path. The full-precision weight never exists in device memory.
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
  readonly nested?: { readonly offset: number | null; readonly nested_blocksize: number } | null;
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

interface Storage {
  readonly decls: string;
  readonly list: { ref: BindingRef; write: boolean }[];
  /** WGSL: the table, absmax_of(block) and dec8(word, scale). */
  readonly helpers: string;
  readonly bias: boolean;
}

/**
 * Bindings X, P, the absmax storage (AM, or Q + NA + MAP), BIAS?, Y and the decode
 * helpers; X as vec4s when `vecX` (rows of a multiple of 4; buffers are 16-byte sized).
 */
function storage(ctx: KernelContext, a: Linear4, u: Uniforms, vecX: boolean): Storage {
  const names = a.nested ? ['P', 'Q', 'NA', 'MAP'] : ['P', 'AM'];
  const types: Record<string, string> = { X: vecX ? 'vec4<f32>' : 'f32', P: 'u32', Q: 'u32' };
  const bias = ctx.inputs.length > names.length + 1;
  const all = ['X', ...names, ...(bias ? ['BIAS'] : [])];
  let decls = '';
  const list: { ref: BindingRef; write: boolean }[] = [];
  all.forEach((nm, index) => {
    decls += `@group(0) @binding(${index + 1}) var<storage, read> ${nm}: array<${types[nm] ?? 'f32'}>;\n`;
    list.push({ ref: { kind: 'input', index }, write: false });
  });
  decls += `@group(0) @binding(${all.length + 1}) var<storage, read_write> Y: array<f32>;\n`;
  list.push({ ref: { kind: 'output' }, write: true });
  // f32(map * nested) then + offset, as bitsandbytes (two roundings; the GPU may contract).
  const absmax = a.nested
    ? `fn absmax_of(b: u32) -> f32 {
  let q = (Q[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
  return MAP[q] * NA[b / ${u.u32(a.nested.nested_blocksize)}] + ${u.f32v(a.nested.offset ?? Number.NaN)};
}
`
    : 'fn absmax_of(b: u32) -> f32 { return AM[b]; }\n';
  const helpers = `${tableWgsl(a.quant_type)}${absmax}struct W8 { lo: vec4<f32>, hi: vec4<f32> }
// The 8 values of a word: bytes b0..b3 hold elements (0,1) (2,3) (4,5) (6,7), high nibble first.
fn dec8(w: u32, s: f32) -> W8 {
  let b = (vec4<u32>(w) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
  let h = b >> vec4<u32>(4u);
  let l = b & vec4<u32>(0xfu);
  return W8(vec4<f32>(QT[h.x], QT[l.x], QT[h.y], QT[l.y]) * s, vec4<f32>(QT[h.z], QT[l.z], QT[h.w], QT[l.w]) * s);
}
`;
  return { decls, list, helpers, bias };
}

function checkOffset(a: Linear4): void {
  if (a.nested && a.nested.offset === null)
    throw new Error('linear_4bit: the double-quant offset is unknown (the qlora pass ran without weights)');
}

function descOf(a: Linear4, kernel: string, st: Storage, extra: Record<string, number | boolean>) {
  return {
    op: 'linear_4bit',
    dtypes: ['f32', 'u8', 'f32', 'f32'] as const,
    kernel,
    quant_type: a.quant_type,
    blocksize: a.blocksize,
    nested: !!a.nested,
    bias: st.bias,
    ...extra,
  };
}

export const GEMV_MAX_ROWS = 8;

/** y[r, n] = sum_k x[r, k] W[n, k]: a workgroup per n walks row n's words once. */
function gemv(ctx: KernelContext, a: Linear4, rows: number): Step {
  const u = new Uniforms();
  const [K, N] = [u.u32(a.in_features), u.u32(a.out_features)];
  const aligned = a.in_features % 8 === 0;
  const st = storage(ctx, a, u, aligned);
  const BS = u.u32(a.blocksize);
  const rs = [...Array(rows).keys()];
  const xv = (r: number, off: number) => `X[(${r}u * ${K} + k) / 4u + ${off}u]`;
  // Aligned: whole words of row n; else element by element (words straddle rows).
  const loop = aligned
    ? `  let w0 = e0 >> 3u;
  for (var w = w0 + lid; w < (e1 >> 3u); w = w + ${ROW_WG}u) {
    let d = dec8(P[w], absmax_of((w * 8u) / ${BS}));
    let k = (w - w0) * 8u;
${rs.map((r) => `    s${r} = s${r} + dot(${xv(r, 0)}, d.lo) + dot(${xv(r, 1)}, d.hi);`).join('\n')}
  }`
    : `  for (var w = (e0 >> 3u) + lid; w * 8u < e1; w = w + ${ROW_WG}u) {
    let word = P[w];
    let am = absmax_of((w * 8u) / ${BS});
    for (var j = 0u; j < 8u; j++) {
      let e = w * 8u + j;
      if (e >= e0 && e < e1) {
        let v = QT[code_of(word, j)] * am;
        let k = e - e0;
${rs.map((r) => `        s${r} = fma(X[${r}u * ${K} + k], v, s${r});`).join('\n')}
      }
    }
  }`;
  const code = `${PRELUDE + u.decl() + st.decls + st.helpers}var<workgroup> red: array<f32, ${ROW_WG}>;
${entry([ROW_WG])}  let n = wid;
  let e0 = n * ${K};
  let e1 = e0 + ${K};
${rs.map((r) => `  var s${r} = 0.0;`).join('\n')}
${loop}
${rs.map((r) => wgReduce(`t${r}`, `s${r}`, (x, y) => `${x} + ${y}`)).join('')}  if (lid == 0u) {
${rs.map((r) => `    Y[${r}u * ${N} + n] = t${r}${st.bias ? ' + BIAS[n]' : ''};`).join('\n')}
  }
}
`;
  return {
    desc: { ...descOf(a, 'gemv', st, { rows, aligned }), workgroup: [ROW_WG] },
    code,
    uniforms: u,
    bindings: st.list,
    workgroups: a.out_features,
  };
}

/**
 * The tiled kernel's output tile: TILE_M rows x TILE_N columns per workgroup (256
 * threads, 4 x 32 outputs each). Wide in N because X is re-read once per column tile
 * and W once per row tile: at M = 64 every workgroup covers all rows, so W is read
 * once and X ceil(N / TILE_N) times. BK = 8 is one u32 word of codes per k row
 * (x W^T); B goes through workgroup memory half a step (4 k rows) at a time so the
 * two tiles (2 KiB + 8 KiB) stay under WebGPU's 16 KiB default.
 */
export const TILE_M = 64;
export const TILE_N = 512;
const BK = 8;
const QM = TILE_M / 4;
const QN = TILE_N / 4;
/** Column vec4s per thread, spaced 16 apart (threads of a row read adjacent vec4s). */
const NJ = QN / 16;

/** Half a k step: Bs holds 4 k rows at a time (16 KiB would be 8 rows of 512 columns). */
const BH = BK / 2;

/**
 * The B tile loader, as `pre` (once per k step: the decoded words, in registers) and
 * `half(h)` (Bs[kk][n/4] = B(k0 + 4h + kk, n0 + n)), B(k, n) = W[n, k] (x W^T) or W[k, n] (x W).
 */
function loadB(a: Linear4, KU: string, NU: string, IN: string): { pre: string; half: (h: number) => string } {
  const zero = 'vec4<f32>(0.0)';
  if (a.in_features % 8 !== 0) {
    // Per element: a word may straddle two rows of W.
    const flat = a.transpose ? `gk * ${IN} + gn` : `gn * ${IN} + gk`;
    return {
      pre: '',
      half: (h) => `    for (var t = lid; t < ${BH * QN}u; t = t + 256u) {
      let kk = t / ${QN}u; let nq = t % ${QN}u; let gk = k0 + ${h * BH}u + kk;
      var v = ${zero};
      for (var c = 0u; c < 4u; c++) { let gn = n0 + nq * 4u + c; if (gk < ${KU} && gn < ${NU}) { let e = ${flat}; v[c] = QT[code_of(P[e >> 3u], e & 7u)] * absmax_of(e / ${a.blocksize}u); } }
      Bs[t] = v;
    }`,
    };
  }
  if (a.transpose) {
    // W[k0 + 4h + kk, n0 .. n0+512]: 64 words per k row, one word per thread per half.
    return {
      pre: '',
      half: (
        h,
      ) => `    { let kk = lid / ${QN / 2}u; let nw = lid % ${QN / 2}u; let gk = k0 + ${h * BH}u + kk; let gn = n0 + nw * 8u;
      var d = W8(${zero}, ${zero});
      if (gk < ${KU} && gn < ${NU}) { let e = gk * ${IN} + gn; d = dec8(P[e >> 3u], absmax_of(e / ${a.blocksize}u)); }
      Bs[kk * ${QN}u + nw * 2u] = d.lo;
      Bs[kk * ${QN}u + nw * 2u + 1u] = d.hi; }`,
    };
  }
  // W[n, k0 .. k0+8] for n = n0 + lid and n0 + lid + 256: a word each, decoded once;
  // the low half (k0 .. k0+4) then the high half scattered down Bs's 4 k rows.
  const ws = [0, 1];
  return {
    pre: ws
      .map(
        (w) => `    var d${w} = W8(${zero}, ${zero});
    { let gn = n0 + lid + ${w * 256}u; if (gn < ${NU}) { let e = gn * ${IN} + k0; d${w} = dec8(P[e >> 3u], absmax_of(e / ${a.blocksize}u)); } }`,
      )
      .join('\n'),
    half: (h) =>
      ws
        .map(
          (w) =>
            `    for (var j = 0u; j < 4u; j++) { Bs[j * ${QN}u + (lid + ${w * 256}u) / 4u][lid % 4u] = d${w}.${h ? 'hi' : 'lo'}[j]; }`,
        )
        .join('\n'),
  };
}

/** C[M, N] = X[M, K] B[K, N] with B(k, n) = W[n, k] (x W^T) or W[k, n] (transpose: x W). */
function tiled(ctx: KernelContext, a: Linear4, m: number): Step {
  const u = new Uniforms();
  const [K, N] = a.transpose ? [a.out_features, a.in_features] : [a.in_features, a.out_features];
  const [MU, NU, KU, IN] = [u.u32(m), u.u32(N), u.u32(K), u.u32(a.in_features)];
  const nbx = Math.ceil(N / TILE_N);
  const nbxU = u.u32(nbx);
  const vecX = K % 4 === 0;
  const st = storage(ctx, a, u, vecX);
  // A tile As[kk][m/4]: rows of X read along k (as vec4s when they can be).
  const loadA = vecX
    ? `    if (lid < ${TILE_M * (BK / 4)}u) {
      let mm = lid / ${BK / 4}u; let kq = lid % ${BK / 4}u; let gm = m0 + mm; let gk = k0 + kq * 4u;
      var v = vec4<f32>(0.0);
      if (gk < ${KU} && gm < ${MU}) { v = X[(gm * ${KU} + gk) / 4u]; }
      for (var c = 0u; c < 4u; c++) { As[(kq * 4u + c) * ${QM}u + mm / 4u][mm % 4u] = v[c]; }
    }`
    : `    if (lid < ${BK * QM}u) {
      let kk = lid / ${QM}u; let mq = lid % ${QM}u; let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) { let gm = m0 + mq * 4u + c; if (gk < ${KU} && gm < ${MU}) { v[c] = X[gm * ${KU} + gk]; } }
      As[lid] = v;
    }`;
  const lb = loadB(a, KU, NU, IN);
  const js = [...Array(NJ).keys()];
  const is = [0, 1, 2, 3];
  const comp = ['x', 'y', 'z', 'w'];
  // Unrolled so the 16 accumulators stay in registers (no dynamically indexed array).
  const fmas = js
    .map(
      (j) =>
        `      let b${j} = Bs[kk * ${QN}u + tx + ${16 * j}u];\n` +
        is.map((i) => `      a${i}_${j} = fma(vec4<f32>(av.${comp[i]}), b${j}, a${i}_${j});`).join('\n'),
    )
    .join('\n');
  const stores = js
    .flatMap((j) => is.map((i) => `  store(m0 + ty * 4u + ${i}u, n0 + (tx + ${16 * j}u) * 4u, a${i}_${j});`))
    .join('\n');
  const code = `${PRELUDE + u.decl() + st.decls + st.helpers}
var<workgroup> As: array<vec4<f32>, ${BK * QM}>;
var<workgroup> Bs: array<vec4<f32>, ${BH * QN}>;
fn store(gm: u32, gn: u32, v: vec4<f32>) {
  if (gm >= ${MU}) { return; }
  for (var c = 0u; c < 4u; c++) { if (gn + c < ${NU}) { Y[gm * ${NU} + gn + c] = v[c]${st.bias ? ' + BIAS[gn + c]' : ''}; } }
}
${entry([16, 16])}  let tx = lid3.x;
  let ty = lid3.y;
  let m0 = (wid / ${nbxU}) * ${TILE_M}u;
  let n0 = (wid % ${nbxU}) * ${TILE_N}u;
${js.flatMap((j) => is.map((i) => `  var a${i}_${j} = vec4<f32>(0.0);`)).join('\n')}
  for (var k0 = 0u; k0 < ${KU}; k0 = k0 + ${BK}u) {
${loadA}
${lb.pre}
${[0, 1]
  .map(
    (h) => `${lb.half(h)}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BH}u; kk++) {
      let av = As[(${h * BH}u + kk) * ${QM}u + ty];
${fmas}
    }
    workgroupBarrier();`,
  )
  .join('\n')}
  }
${stores}
}
`;
  return {
    desc: {
      ...descOf(a, 'tiled', st, { transpose: a.transpose, aligned: a.in_features % 8 === 0, vecX }),
      workgroup: [16, 16],
    },
    code,
    uniforms: u,
    bindings: st.list,
    workgroups: nbx * Math.ceil(m / TILE_M),
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
  checkOffset(a);
  return { steps: [linear4bitPath(a, rows) === 'gemv' ? gemv(ctx, a, rows) : tiled(ctx, a, rows)] };
};

export const quant4Kernels = { dequant_4bit: dequant4, dequant_absmax: dequantAbsmax, linear_4bit: linear4 };

for (const [op, k] of Object.entries(quant4Kernels)) if (!getKernel(op)) registerKernel(op, k);
