// Matrix products. A tiled kernel (64x64 output tile per 16x16 workgroup, 4x4 per
// invocation held in registers, 16-deep K slices staged in workgroup memory, vec4
// global loads where the contiguous axis is a multiple of 4) and a GEMV path for
// M <= 4 (decode). Batch axes broadcast through per-axis batch strides in uniforms;
// `linear` is x W^T (+ b) on the same kernels.
import { broadcastShapes, numel } from '../../../ir/shape.ts';
import { enables, PRELUDE } from '../dtypes.ts';
import {
  entry,
  type Kernel,
  type KernelContext,
  type KernelPlan,
  type SoftwareMatmul,
  type Step,
  Uniforms,
} from '../program.ts';
import { directOuter } from './matmul-outer.ts';
import {
  BK,
  batchCode,
  batchStrides,
  bindingsFor,
  f1,
  GEMV_WG,
  ldA1,
  ldA4,
  ldB1,
  ldB4,
  type MatmulProblem,
  matmulDesc,
  outValue,
  st1,
  storeTileRow,
  TILE,
} from './matmul-parts.ts';
import { registerTiled } from './matmul-register.ts';
import { planTextureMatmul } from './matmul-texture.ts';
import { ROW_WG, wgReduce } from './reduce.ts';

export type { MatmulProblem } from './matmul-parts.ts';

function tiled(p: MatmulProblem): Step {
  const u = new Uniforms();
  const [M, N, K] = [u.u32(p.m), u.u32(p.n), u.u32(p.k)];
  const nbx = Math.ceil(p.n / TILE);
  const nby = Math.ceil(p.m / TILE);
  const [nbxU, nbyU] = [u.u32(nbx), u.u32(nby)];
  const bcode = batchCode(u, p);
  // vec4 loads along each operand's contiguous axis when it is a multiple of 4.
  const vecA = (p.ta ? p.m : p.k) % 4 === 0;
  const vecB = (p.tb ? p.k : p.n) % 4 === 0;
  const vecC = p.n % 4 === 0 && !p.epilogue;
  const { code: decls, bindings } = bindingsFor(p, vecA, vecB, vecC, u);
  // Operands may be expressions (`k + 1u`): parenthesised before they are scaled.
  const aAt = (m: string, k: string) =>
    p.ta ? `aBase + (${k}) * ${M} + (${m})` : `aBase + (${m}) * ${K} + (${k})`;
  const bAt = (k: string, n: string) =>
    p.tb ? `bBase + (${n}) * ${K} + (${k})` : `bBase + (${k}) * ${N} + (${n})`;
  const Q = TILE / 4;
  // One vec4 of As/Bs per invocation per K slice (256 invocations, 16x64 tiles).
  let loadA: string;
  if (vecA && p.ta) {
    loadA = `{ let kk = lid / ${Q}u; let mq = lid % ${Q}u; let gk = k0 + kk; let gm = m0 + mq * 4u;
      var v = vec4<f32>(0.0);
      if (gk < ${K} && gm < ${M}) { v = ${ldA4(`(${aAt('gm', 'gk')}) / 4u`)}; }
      As[kk * ${Q}u + mq] = v; }`;
  } else if (vecA) {
    loadA = `{ let mm = lid / 4u; let kq = lid % 4u; let gm = m0 + mm; let gk = k0 + kq * 4u;
      var v = vec4<f32>(0.0);
      if (gk < ${K} && gm < ${M}) { v = ${ldA4(`(${aAt('gm', 'gk')}) / 4u`)}; }
      for (var c = 0u; c < 4u; c++) { As[(kq * 4u + c) * ${Q}u + mm / 4u][mm % 4u] = v[c]; } }`;
  } else {
    loadA = `{ let kk = lid / ${Q}u; let mq = lid % ${Q}u; let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) { let gm = m0 + mq * 4u + c; if (gk < ${K} && gm < ${M}) { v[c] = ${ldA1(aAt('gm', 'gk'))}; } }
      As[kk * ${Q}u + mq] = v; }`;
  }
  let loadB: string;
  if (vecB && !p.tb) {
    loadB = `{ let kk = lid / ${Q}u; let nq = lid % ${Q}u; let gk = k0 + kk; let gn = n0 + nq * 4u;
      var v = vec4<f32>(0.0);
      if (gk < ${K} && gn < ${N}) { v = ${ldB4(`(${bAt('gk', 'gn')}) / 4u`)}; }
      Bs[kk * ${Q}u + nq] = v; }`;
  } else if (vecB) {
    loadB = `{ let nn = lid / 4u; let kq = lid % 4u; let gn = n0 + nn; let gk = k0 + kq * 4u;
      var v = vec4<f32>(0.0);
      if (gk < ${K} && gn < ${N}) { v = ${ldB4(`(${bAt('gk', 'gn')}) / 4u`)}; }
      for (var c = 0u; c < 4u; c++) { Bs[(kq * 4u + c) * ${Q}u + nn / 4u][nn % 4u] = v[c]; } }`;
  } else {
    loadB = `{ let kk = lid / ${Q}u; let nq = lid % ${Q}u; let gk = k0 + kk;
      var v = vec4<f32>(0.0);
      for (var c = 0u; c < 4u; c++) { let gn = n0 + nq * 4u + c; if (gk < ${K} && gn < ${N}) { v[c] = ${ldB1(bAt('gk', 'gn'))}; } }
      Bs[kk * ${Q}u + nq] = v; }`;
  }
  const store = storeTileRow(p, vecC, N);
  const code = `${enables([p.dtype, p.bDtype ?? p.dtype, p.outDtype]) + PRELUDE + u.decl() + decls}
var<workgroup> As: array<vec4<f32>, ${(BK * TILE) / 4}>;
var<workgroup> Bs: array<vec4<f32>, ${(BK * TILE) / 4}>;
${entry([16, 16])}  let tx = lid3.x;
  let ty = lid3.y;
  let bx = wid % ${nbxU};
  let t = wid / ${nbxU};
  let by = t % ${nbyU};
  let batch = t / ${nbyU};
${bcode}  let m0 = by * ${TILE}u;
  let n0 = bx * ${TILE}u;
  var acc: array<vec4<f32>, 4>;
  for (var k0 = 0u; k0 < ${K}; k0 = k0 + ${BK}u) {
    ${loadA}
    ${loadB}
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let a = As[kk * ${Q}u + ty];
      let b = Bs[kk * ${Q}u + tx];
      acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
      acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
      acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
      acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
    }
    workgroupBarrier();
  }
  let cBase = batch * ${M} * ${N};
  let gn = n0 + tx * 4u;
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + ty * 4u + i;
    if (gm < ${M}) { ${store} }
  }
}
`;
  return {
    desc: matmulDesc(p, 'tiled', [16, 16], { vec: [vecA, vecB, vecC] }),
    code,
    uniforms: u,
    bindings,
    workgroups: numel(p.batch) * nbx * nby,
  };
}

/**
 * For CPU adapters (lavapipe): the same 4x4 register tile per invocation but read
 * straight from global memory as vec4 along K (their caches serve as the shared tile,
 * and there are no barriers). Needs K % 4 == 0 and A not transposed.
 */
function direct(p: MatmulProblem): Step {
  const u = new Uniforms();
  const [M, N, K] = [u.u32(p.m), u.u32(p.n), u.u32(p.k)];
  const WG = 64;
  const nbx = Math.ceil(p.n / 4);
  const nby = Math.ceil(p.m / 4);
  const tiles = nbx * nby;
  // Every uniform is allocated before u.decl() sizes the struct.
  const [nbxU, tilesU, batchesU] = [u.u32(nbx), u.u32(tiles), u.u32(numel(p.batch))];
  const bcode = batchCode(u, p);
  const vecB = !p.tb && p.n % 4 === 0;
  const vecC = p.n % 4 === 0 && !p.epilogue;
  const { code: decls, bindings } = bindingsFor(p, true, p.tb || vecB, vecC, u);
  const K4 = `(${K} / 4u)`;
  // Rows past M / columns past N are clamped on load and dropped on store.
  const aRow = (i: number) => `min(m0 + ${i}u, ${M} - 1u)`;
  const bCol = (j: number) => `min(n0 + ${j}u, ${N} - 1u)`;
  let inner: string;
  if (p.tb) {
    inner = `${[0, 1, 2, 3].map((i) => `      let a${i} = ${ldA4(`aBase / 4u + ${aRow(i)} * ${K4} + kq`)};`).join('\n')}
${[0, 1, 2, 3].map((j) => `      let b${j} = ${ldB4(`bBase / 4u + ${bCol(j)} * ${K4} + kq`)};`).join('\n')}
${[0, 1, 2, 3].map((i) => `      acc[${i}] = acc[${i}] + vec4<f32>(dot(a${i}, b0), dot(a${i}, b1), dot(a${i}, b2), dot(a${i}, b3));`).join('\n')}`;
  } else {
    const bRow = (c: number) =>
      vecB
        ? ldB4(`(bBase + (kq * 4u + ${c}u) * ${N} + n0) / 4u`)
        : `vec4<f32>(${[0, 1, 2, 3].map((j) => ldB1(`bBase + (kq * 4u + ${c}u) * ${N} + ${bCol(j)}`)).join(', ')})`;
    inner = `${[0, 1, 2, 3].map((i) => `      let a${i} = ${ldA4(`aBase / 4u + ${aRow(i)} * ${K4} + kq`)};`).join('\n')}
${[0, 1, 2, 3].map((c) => `      let b${c} = ${bRow(c)};`).join('\n')}
${[0, 1, 2, 3].map((i) => `      acc[${i}] = fma(vec4<f32>(a${i}.x), b0, fma(vec4<f32>(a${i}.y), b1, fma(vec4<f32>(a${i}.z), b2, fma(vec4<f32>(a${i}.w), b3, acc[${i}]))));`).join('\n')}`;
  }
  const store = storeTileRow(p, vecC, N);
  const code = `${enables([p.dtype, p.bDtype ?? p.dtype, p.outDtype]) + PRELUDE + u.decl() + decls}
${entry([WG])}  let g = wid * ${WG}u + lid;
  let tile = g % ${tilesU};
  let batch = g / ${tilesU};
  if (batch >= ${batchesU}) { return; }
  let bx = tile % ${nbxU};
  let by = tile / ${nbxU};
${bcode}  let m0 = by * 4u;
  let n0 = bx * 4u;
  var acc: array<vec4<f32>, 4>;
  for (var kq = 0u; kq < ${K4}; kq++) {
${inner}
  }
  let cBase = batch * ${M} * ${N};
  let gn = n0;
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + i;
    if (gm < ${M}) { ${store} }
  }
}
`;
  return {
    desc: matmulDesc(p, 'direct', [WG], { vec: [vecB, vecC] }),
    code,
    uniforms: u,
    bindings,
    workgroups: Math.ceil((numel(p.batch) * tiles) / WG),
  };
}

/** M <= 4: one workgroup per output column (B^T rows contiguous in k) or per 256 columns (B rows contiguous in n). */
function gemv(p: MatmulProblem): Step {
  const u = new Uniforms();
  const [M, N, K] = [u.u32(p.m), u.u32(p.n), u.u32(p.k)];
  const rows = p.m;
  const bdt = p.bDtype ?? p.dtype;
  // Operands may be expressions (`k + 1u`): parenthesised before they are scaled.
  const aAt = (m: string, k: string) =>
    p.ta ? `aBase + (${k}) * ${M} + (${m})` : `aBase + (${m}) * ${K} + (${k})`;
  const vecB = p.k % 4 === 0 && p.tb;
  const { code: decls, bindings } = bindingsFor(p, false, vecB, false, u);
  const biasV = (n: string) => (p.bias ? ` + ${f1(`bias[${n}]`, bdt)}` : '');
  const a = (m: string, k: string) => ldA1(aAt(m, k));
  let body: string;
  let workgroups: number;
  let nb: string;
  if (p.tb) {
    // One output column per workgroup; invocations split K, then a tree per row.
    nb = u.u32(p.n);
    workgroups = numel(p.batch) * p.n;
    const accs = [...Array(rows).keys()];
    const inner = vecB
      ? `for (var k = lid * 4u; k < ${K}; k = k + ${GEMV_WG * 4}u) {
    let b = ${ldB4(`(bBase + col * ${K} + k) / 4u`)};
${accs.map((r) => `    s${r} = s${r} + dot(vec4<f32>(${[0, 1, 2, 3].map((c) => a(`${r}u`, `k + ${c}u`)).join(', ')}), b);`).join('\n')}
  }`
      : `for (var k = lid; k < ${K}; k = k + ${GEMV_WG}u) {
    let b = ${ldB1(`bBase + col * ${K} + k`)};
${accs.map((r) => `    s${r} = s${r} + ${a(`${r}u`, 'k')} * b;`).join('\n')}
  }`;
    body = `  let col = wid % ${nb};
  let batch = wid / ${nb};
${batchCode(u, p)}  let cBase = batch * ${M} * ${N};
${accs.map((r) => `  var s${r} = 0.0;`).join('\n')}
  ${inner}
${accs.map((r) => wgReduce(`t${r}`, `s${r}`, (x, y) => `${x} + ${y}`)).join('')}  if (lid == 0u) {
${accs.map((r) => `    { let o = cBase + ${r}u * ${N} + col; C[o] = ${st1(outValue(p, 'o', `t${r}${biasV('col')}`), p.outDtype)}; }`).join('\n')}
  }
`;
  } else {
    // One column per invocation, walking K down contiguous rows of B.
    const per = GEMV_WG;
    const nbx = Math.ceil(p.n / per);
    nb = u.u32(nbx);
    workgroups = numel(p.batch) * nbx;
    const accs = [...Array(rows).keys()];
    body = `  let bx = wid % ${nb};
  let batch = wid / ${nb};
${batchCode(u, p)}  let cBase = batch * ${M} * ${N};
  let col = bx * ${per}u + lid;
  if (col >= ${N}) { return; }
${accs.map((r) => `  var s${r} = 0.0;`).join('\n')}
  for (var k = 0u; k < ${K}; k++) {
    let b = ${ldB1(`bBase + k * ${N} + col`)};
${accs.map((r) => `    s${r} = fma(${a(`${r}u`, 'k')}, b, s${r});`).join('\n')}
  }
${accs.map((r) => `  { let o = cBase + ${r}u * ${N} + col; C[o] = ${st1(outValue(p, 'o', `s${r}${biasV('col')}`), p.outDtype)}; }`).join('\n')}
`;
  }
  const code = `${enables([p.dtype, p.bDtype ?? p.dtype, p.outDtype]) + PRELUDE + u.decl() + decls}var<workgroup> red: array<f32, ${ROW_WG}>;
${entry([GEMV_WG])}${body}}
`;
  return {
    desc: matmulDesc(p, 'gemv', [GEMV_WG], { rows, vecB }),
    code,
    uniforms: u,
    bindings,
    workgroups,
  };
}

/**
 * Which matmul kernel suits the adapter: GPUs get workgroup-shared tiles, CPU adapters
 * the 4x4 direct/outer kernels by default or the register-tiled one (`register`).
 */
export type MatmulVariant = 'tiled' | SoftwareMatmul;

/**
 * The plan for a matmul problem: GEMV when M <= 4 (on GPUs), else the tiled kernel; CPU
 * adapters direct or register tiles, or for 'texture' large products through scratch
 * textures (matmul-texture.ts, where the device's `textureDimension` allows) and the rest
 * direct.
 */
export function planMatmul(
  p: MatmulProblem,
  variant: MatmulVariant = 'tiled',
  textureDimension?: number,
): KernelPlan {
  if (numel(p.batch) === 0 || p.m === 0 || p.n === 0) return { steps: [] };
  if (variant === 'register') return { steps: [registerTiled(p)] };
  if (variant === 'texture') {
    const viaTextures = planTextureMatmul(p, textureDimension);
    if (viaTextures) return viaTextures;
  }
  if (variant === 'direct' || variant === 'texture') {
    // A transposed or K not a multiple of 4: the outer-product form (matmul-outer.ts).
    return { steps: [!p.ta && p.k % 4 === 0 && p.k > 0 ? direct(p) : directOuter(p)] };
  }
  return { steps: [p.m <= 4 ? gemv(p) : tiled(p)] };
}

/**
 * The software adapters' default: large products through scratch textures
 * (matmul-texture.ts; 512^3 14.2 against 7.3 GFLOP/s for the direct kernel, the small-shape
 * training step 1.43x), the rest on the 4x4 direct kernels (bench/software-matmul.ts,
 * docs/DECISIONS.md). The register-tiled kernel stays opt-in (softwareMatmul).
 */
export const DEFAULT_SOFTWARE_MATMUL: SoftwareMatmul = 'texture';

/** The matmul kernel family for the adapter (see MatmulVariant). */
export function variantFor(ctx: KernelContext): MatmulVariant {
  return ctx.software ? (ctx.softwareMatmul ?? DEFAULT_SOFTWARE_MATMUL) : 'tiled';
}

/** The problem of a `matmul` node over inputs [a, b] (types from ctx.inputs). */
export function matmulProblem(ctx: KernelContext, ta: boolean, tb: boolean): MatmulProblem {
  const [a, b] = ctx.inputs;
  const ra = a.shape.length;
  const rb = b.shape.length;
  const [m, k] = ta ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
  const n = tb ? b.shape[rb - 2] : b.shape[rb - 1];
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return {
    op: 'matmul',
    dtype: a.dtype,
    outDtype: ctx.out.dtype,
    m,
    n,
    k,
    ta,
    tb,
    batch,
    aBatchStrides: batchStrides(a.shape, batch, m * k),
    bBatchStrides: batchStrides(b.shape, batch, k * n),
    bias: false,
  };
}

/** The problem of a `linear` node over inputs [x, w] or [x, w, bias]. */
export function linearProblem(ctx: KernelContext, bias: boolean): MatmulProblem {
  const [x, w] = ctx.inputs;
  const [n, k] = w.shape;
  return {
    op: 'linear',
    dtype: x.dtype,
    bDtype: w.dtype,
    outDtype: ctx.out.dtype,
    // Not numel(x) / k: with k = 0 the output still has rows (of zeros, or the bias).
    m: numel(x.shape.slice(0, -1)),
    n,
    k,
    ta: false,
    tb: true,
    batch: [],
    aBatchStrides: [],
    bBatchStrides: [],
    bias,
  };
}

const matmul: Kernel = (ctx) =>
  planMatmul(
    matmulProblem(ctx, !!ctx.node.attrs.transpose_a, !!ctx.node.attrs.transpose_b),
    variantFor(ctx),
    ctx.textureDimension,
  );

const linear: Kernel = (ctx) =>
  planMatmul(linearProblem(ctx, ctx.inputs.length > 2), variantFor(ctx), ctx.textureDimension);

export const matmulKernels = { matmul, linear } satisfies Record<string, Kernel>;
