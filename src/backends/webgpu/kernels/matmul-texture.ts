// Large f32 matmuls for CPU adapters (lavapipe): each operand is first staged into an
// rgba32float scratch texture (one dispatch each: A as M rows of K/4 texels, B as K rows of
// N/4 texels, transposes and ragged edges resolved there, tails zero), then the product
// reads only textures. Why: lavapipe guards every storage-buffer load with a bounds-check
// branch per component (and, where the address differs between SIMD lanes, a loop over the
// lanes), so loads, not FMAs, bound the buffer kernels (512^3 with the loads replaced by
// arithmetic runs at ~150 GFLOP/s, with them ~10); a texel fetch is branch-free, four
// floats at once, and lets a larger register tile pay. Measured on 512^3 here: ~16 GFLOP/s
// for the product alone, ~14-15 with both stagings, against 8.2 for the direct kernel
// (docs/DECISIONS.md). Small or thin products keep the buffer kernels: two more dispatches
// would cost more than they save (TEXTURE_MIN_MACS, TEXTURE_MIN_SIDE); so do products whose
// textures would be large workspace (TEXTURE_MAX_BYTES). An operand's dropout or map
// (fuse-dropout, fuse-operand-map) is applied as it is staged, at its flat index.
//
// The product: a workgroup of WG lanes shares RM rows (from the workgroup id, so A's texel
// fetches are uniform) and each lane owns RNV texel columns of B (lane l: columns
// c0 + l + h * WG), an RM x 4*RNV tile of accumulators.
import { numel } from '../../../ir/shape.ts';
import { declStorage, PRELUDE } from '../dtypes.ts';
import {
  entry,
  type KernelPlan,
  type ScratchTexture,
  type Step,
  textureBytes,
  Uniforms,
} from '../program.ts';
import {
  bindingsFor,
  type MatmulProblem,
  matmulDesc,
  operandValue,
  prologueFns,
  storeTileRow,
} from './matmul-parts.ts';

/** Products with fewer multiply-adds keep the buffer kernels. */
export const TEXTURE_MIN_MACS = 2 ** 23;

/**
 * Each of M, N, K at least this: a thin product (a LoRA factor's, rank 16) fills few of
 * the tile's lanes and stages more than it saves.
 */
export const TEXTURE_MIN_SIDE = 64;

/**
 * A scratch texture's bytes at most (64 MiB): the textures are workspace the executable
 * holds for its whole life, and a 7B model's lm_head (32000 x 4096) would add 0.5 GiB.
 */
export const TEXTURE_MAX_BYTES = 64 * 2 ** 20;

const RM = 8;
const RNV = 4;
const WG = 8;
const STAGE_WG = 64;

/**
 * The product's rows when its batch folds into M: one batch, or A's batches one after
 * another (not transposed) with B shared by all of them; undefined otherwise.
 */
function foldedRows(p: MatmulProblem): number | undefined {
  const batches = numel(p.batch);
  if (batches === 1) return p.m;
  if (p.ta || p.bBatchStrides.some((s) => s !== 0)) return undefined;
  let contiguous = p.m * p.k;
  for (let i = p.batch.length - 1; i >= 0; i--) {
    if (p.batch[i] !== 1 && p.aBatchStrides[i] !== contiguous) return undefined;
    contiguous *= p.batch[i];
  }
  return batches * p.m;
}

/**
 * The texture plan of `p` on a device whose textures are at most `dimension` texels a
 * side, or undefined where it does not apply (not f32, too small, too large, a batch that
 * does not fold into rows).
 */
export function planTextureMatmul(p: MatmulProblem, dimension: number | undefined): KernelPlan | undefined {
  if (dimension === undefined || p.k === 0) return undefined;
  if (p.dtype !== 'f32' || (p.bDtype ?? 'f32') !== 'f32' || p.outDtype !== 'f32') return undefined;
  const rows = foldedRows(p);
  if (rows === undefined || rows * p.n * p.k < TEXTURE_MIN_MACS) return undefined;
  if (Math.min(rows, p.n, p.k) < TEXTURE_MIN_SIDE) return undefined;
  const a: ScratchTexture = { width: Math.ceil(p.k / 4), height: rows };
  const b: ScratchTexture = { width: Math.ceil(p.n / 4), height: p.k };
  if ([a.width, a.height, b.width, b.height].some((d) => d > dimension)) return undefined;
  if (textureBytes(a) > TEXTURE_MAX_BYTES || textureBytes(b) > TEXTURE_MAX_BYTES) return undefined;
  return {
    steps: [
      stage(p, 0, a, p.k, p.ta ? rows : undefined),
      stage(p, 1, b, p.n, p.tb ? p.k : undefined),
      product(p, rows),
    ],
    textures: [a, b],
  };
}

/**
 * Writes input `operand`, a rows x `cols` matrix, into scratch texture `operand`: texel
 * (x, r) holds elements (r, 4x .. 4x+3), zero past `cols`. Element (r, c) is at r * cols + c,
 * or with `transposed` (the matrix stored column by column, `transposed` rows per column)
 * at c * transposed + r.
 */
function stage(
  p: MatmulProblem,
  operand: 0 | 1,
  t: ScratchTexture,
  cols: number,
  transposed: number | undefined,
): Step {
  if (transposed !== undefined && transposed % 4 === 0 && t.height === transposed)
    return stageTransposedBlocks(p, operand, t, cols, transposed);
  const u = new Uniforms();
  const [W, R, C] = [u.u32(t.width), u.u32(t.height), u.u32(cols)];
  const S = transposed === undefined ? undefined : u.u32(transposed);
  // Rows of whole texels in memory: one vec4 load per texel.
  const vec = transposed === undefined && cols % 4 === 0;
  const at = (c: string) => (S === undefined ? `r * ${C} + ${c}` : `(${c}) * ${S} + r`);
  // The operand's dropout or map, at each element's flat index (texel i holds 4i .. 4i+3).
  const value = (x: string, i: string) => operandValue(p, operand ? 'b' : 'a', x, i);
  const load = vec
    ? `  let w = X[i];\n  let v = vec4<f32>(${['x', 'y', 'z', 'w'].map((c, j) => value(`w.${c}`, `i * 4u + ${j}u`)).join(', ')});\n`
    : `  var v = vec4<f32>(0.0);
${[0, 1, 2, 3].map((c) => `  if (x * 4u + ${c}u < ${C}) { let e = ${at(`x * 4u + ${c}u`)}; v[${c}] = ${value('X[e]', 'e')}; }\n`).join('')}`;
  return stagingStep(p, operand, u, {
    desc: { kernel: 'texture-stage', vec, transposed: S !== undefined },
    vecX: vec,
    invocations: [`${W} * ${R}`, t.width * t.height],
    body: `  let r = i / ${W};
  let x = i % ${W};
${load}  textureStore(T, vec2<u32>(x, r), v);
`,
  });
}

/**
 * `stage` of a transposed operand whose stored columns are whole texels (`transposed`, the
 * rows per stored column, a multiple of 4): an invocation reads a 4 x 4 block as four vec4
 * loads of four stored columns and writes it as four texels, transposed in registers. The
 * per-element path reads each element on its own, strided and behind a bounds check: a
 * frozen weight staged for x W^T took ~3x as long per element as a plain copy.
 */
function stageTransposedBlocks(
  p: MatmulProblem,
  operand: 0 | 1,
  t: ScratchTexture,
  cols: number,
  transposed: number,
): Step {
  const u = new Uniforms();
  const [W, C] = [u.u32(t.width), u.u32(cols)];
  const Q = u.u32(transposed / 4); // texels per stored column
  const blocks = u.u32(t.width * (transposed / 4));
  // Stored column c (staged column c) holds staged rows 4y .. 4y+3 at vec4 c * Q + y; the
  // flat index of its component j is 4 * (c * Q + y) + j.
  const comps = ['x', 'y', 'z', 'w'];
  const load = [0, 1, 2, 3]
    .map(
      (k) => `  var s${k} = vec4<f32>(0.0);
  if (x * 4u + ${k}u < ${C}) {
    let at = (x * 4u + ${k}u) * ${Q} + y;
    let w = X[at];
    s${k} = vec4<f32>(${comps.map((c, j) => operandValue(p, operand ? 'b' : 'a', `w.${c}`, `at * 4u + ${j}u`)).join(', ')});
  }
`,
    )
    .join('');
  const store = comps
    .map(
      (c, j) =>
        `  textureStore(T, vec2<u32>(x, y * 4u + ${j}u), vec4<f32>(s0.${c}, s1.${c}, s2.${c}, s3.${c}));\n`,
    )
    .join('');
  return stagingStep(p, operand, u, {
    desc: { kernel: 'texture-stage-blocks' },
    vecX: true,
    invocations: [blocks, t.width * (transposed / 4)],
    body: `  let y = i / ${W};
  let x = i % ${W};
${load}${store}`,
  });
}

/**
 * A staging step of input `operand` into scratch texture `operand`, around `body` (run
 * with the invocation's index in `i`, for `invocations`: the WGSL bound and its value):
 * binds X (the operand; as vec4s with `vecX`), T (the texture) and this operand's dropout
 * or map. Only this operand's: the other's dropout reads a step this stage does not bind.
 */
function stagingStep(
  p: MatmulProblem,
  operand: 0 | 1,
  u: Uniforms,
  o: {
    readonly desc: Record<string, string | number | boolean>;
    readonly vecX: boolean;
    readonly invocations: readonly [string, number];
    readonly body: string;
  },
): Step {
  const side = operand ? 'b' : 'a';
  const masked = p.dropout?.at === side;
  const step = masked ? p.dropout?.step : undefined;
  const prologue = prologueFns(
    { ...p, dropout: masked ? p.dropout : undefined, pre: p.pre?.at === side ? p.pre : undefined },
    u,
  );
  const code = `${PRELUDE + u.decl()}@group(0) @binding(1) var<storage, read> X: ${o.vecX ? 'array<vec4<f32>>' : 'array<f32>'};
@group(0) @binding(2) var T: texture_storage_2d<rgba32float, write>;
${step ? declStorage('DS', step.dtype, 3, false) : ''}${prologue}${entry([STAGE_WG])}  let i = wid * ${STAGE_WG}u + lid;
  if (i >= ${o.invocations[0]}) { return; }
${o.body}}
`;
  return {
    desc: {
      op: p.op,
      dtypes: ['f32'],
      workgroup: [STAGE_WG],
      ...o.desc,
      ...(masked ? { drop: step?.dtype ?? false } : {}),
      ...(p.pre?.at === side ? { pre: p.pre.desc } : {}),
    },
    code,
    uniforms: u,
    bindings: [
      { ref: { kind: 'input', index: operand }, write: false },
      { ref: { kind: 'texture', index: operand }, write: true },
      ...(step ? [{ ref: { kind: 'input', index: step.input }, write: false } as const] : []),
    ],
    workgroups: Math.ceil(o.invocations[1] / STAGE_WG),
  };
}

/** The product of the staged operands: `rows` output rows (the batch folded in). */
function product(p: MatmulProblem, rows: number): Step {
  const u = new Uniforms();
  const wa = Math.ceil(p.k / 4);
  const wb = Math.ceil(p.n / 4);
  const nbx = Math.ceil(wb / (RNV * WG));
  const [M, N, K, WA, WB, NBX] = [u.u32(rows), u.u32(p.n), u.u32(p.k), u.u32(wa), u.u32(wb), u.u32(nbx)];
  const vecC = p.n % 4 === 0 && !p.epilogue;
  const { code: decls, bindings } = bindingsFor(p, false, false, vecC, u, true);
  const rs = [...Array(RM).keys()];
  const hs = [...Array(RNV).keys()];
  const ks = [0, 1, 2, 3];
  // One variable per accumulator (an array indexed in the store loop would live in memory).
  const acc = (i: number, h: number) => `c${i}_${h}`;
  // K % 4 != 0: A's texels are zero past K, so B's rows past K may be any finite values.
  const body =
    rs
      .map((i) => `    let a${i} = textureLoad(TA, vec2<u32>(kq, min(m0 + ${i}u, ${M} - 1u)), 0);\n`)
      .join('') +
    ks.map((kk) => `    let k${kk} = min(kq * 4u + ${kk}u, ${K} - 1u);\n`).join('') +
    ks
      .flatMap((kk) =>
        hs.map((h) => `    let b${kk}_${h} = textureLoad(TB, vec2<u32>(cb${h}, k${kk}), 0);\n`),
      )
      .join('') +
    ks
      .flatMap((kk) =>
        rs.flatMap((i) =>
          hs.map((h) => `    ${acc(i, h)} = fma(vec4<f32>(a${i}[${kk}]), b${kk}_${h}, ${acc(i, h)});\n`),
        ),
      )
      .join('');
  const code = `${PRELUDE + u.decl() + decls}
${entry([WG])}  let m0 = (wid / ${NBX}) * ${RM}u;
  let c0 = (wid % ${NBX}) * ${RNV * WG}u + lid;
${hs.map((h) => `  let cv${h} = c0 + ${h * WG}u;\n  let cb${h} = min(cv${h}, ${WB} - 1u);\n`).join('')}${rs.map((i) => hs.map((h) => `  var ${acc(i, h)} = vec4<f32>(0.0);\n`).join('')).join('')}  for (var kq = 0u; kq < ${WA}; kq++) {
${body}  }
  let cBase = 0u;
${rs
  .map(
    (i) => `  if (m0 + ${i}u < ${M}) {
    let gm = m0 + ${i}u;
${hs.map((h) => `    { let gn = cv${h} * 4u; ${storeTileRow(p, vecC, N, acc(i, h))} }\n`).join('')}  }
`,
  )
  .join('')}}
`;
  return {
    desc: matmulDesc(p, 'texture', [WG], { rows: RM, cols: 4 * RNV, vec: [vecC] }),
    code,
    uniforms: u,
    bindings,
    workgroups: Math.ceil(rows / RM) * nbx,
  };
}
