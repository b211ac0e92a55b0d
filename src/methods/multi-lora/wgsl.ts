// sgmv in WGSL: one workgroup (64 threads) per run of up to 8 tokens of one batch row (32
// on a CPU implementation such as lavapipe, which pays per workgroup; a group of 8 lanes
// then takes several tokens) (BGMV-style at decode, one token per row; SGMV-style at prefill, where a row's tokens
// share their slot). The workgroup gathers its row's slot and shrinks x A_a^T for its
// tokens into workgroup memory: 8 lanes split the k axis of each (token, rank) pair, so
// neighbouring lanes read neighbouring k of x and of one A row (vec4 loads when in % 4 is
// 0); each lane keeps its pairs' partial sums in registers, one barrier, then 8 partials
// summed per pair. Then it expands: each thread writes y + s * h B_a^T for every 64th
// (token, output) pair (B rows as vec4s when r_max % 4 is 0). Rows with no adapter (index
// -1 or out of range) copy y. r_max, tokens per group and the vec4 path are in the
// pipeline description (unrolled sums, workgroup array sizes); sizes and the slot count
// are uniforms.
import {
  entry,
  getKernel,
  type Kernel,
  type KernelPlan,
  registerKernel,
  Uniforms,
} from '../../backends/webgpu/index.ts';
import { numel } from '../../ir/shape.ts';
import './ops.ts';

const WG = 64;

function pow2ceil(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Lanes that split one (token, rank) pair's k axis: neighbouring lanes read neighbouring k. */
const LANES = 8;
/** The largest r_max the kernel takes (its workgroup arrays stay under WebGPU's 16 KiB). */
export const SGMV_MAX_RANK = 256;

/**
 * Tokens per workgroup: up to 8 of one row (they share the row's slot, so its A and B
 * rows), fewer for large ranks so that a group holds at most 64 (token, rank) pairs.
 */
export function sgmvTokensPerGroup(tokensPerRow: number, r = 1, software = false): number {
  // A CPU implementation pays per workgroup (and barrier): up to 32 tokens and 256 pairs.
  const [maxTokens, maxPairs] = software ? [32, 256] : [8, WG];
  const byRank = 2 ** Math.floor(Math.log2(Math.max(1, Math.floor(maxPairs / Math.max(r, 1)))));
  return Math.max(1, Math.min(maxTokens, pow2ceil(Math.max(tokensPerRow, 1)), byRank));
}

export const sgmvWgsl: Kernel = (ctx): KernelPlan => {
  const [, x, idx, A, B] = ctx.inputs;
  const hasMag = ctx.inputs.length > 6;
  const [slots, R, K] = A.shape;
  const N = B.shape[1];
  if (R > SGMV_MAX_RANK)
    throw new Error(
      `sgmv: r_max ${R} is above the WGSL kernel's ${SGMV_MAX_RANK}; use a lower max_lora_rank`,
    );
  const tokens = K === 0 ? 0 : numel(x.shape) / K;
  const rows = idx.shape[0];
  const tpr = rows === 0 ? 0 : tokens / rows;
  const tpw = sgmvTokensPerGroup(tpr, R, ctx.software);
  const perRow = Math.ceil(tpr / tpw);
  const vecK = K % 4 === 0;
  const vecR = R % 4 === 0 && R > 0;
  const KK = vecK ? K / 4 : K;
  const u = new Uniforms();
  const [uK, uN, uS, uT, uW] = [
    u.u32(KK),
    u.u32(N),
    u.u32(slots),
    u.u32(Math.max(tpr, 1)),
    u.u32(Math.max(perRow, 1)),
  ];
  const pairs = tpw * R;
  const groups = WG / LANES;
  // Groups of 8 lanes per token (tpw divides 8): group g works on token g / gpt and ranks
  // g % gpt, g % gpt + gpt, ... (np of them): each x load serves np ranks.
  const gpt = Math.max(1, groups / tpw);
  // Tokens per group (above 8 tokens a group takes several, all ranks each).
  const tpg = Math.max(1, tpw / groups);
  const np = Math.ceil(R / gpt);
  const types: Record<string, string> = {
    IDX: 'i32',
    X: vecK ? 'vec4<f32>' : 'f32',
    A: vecK ? 'vec4<f32>' : 'f32',
    B: vecR ? 'vec4<f32>' : 'f32',
  };
  const names = ['YIN', 'X', 'IDX', 'A', 'B', 'SC', ...(hasMag ? ['MAG'] : [])];
  const result = (v: string) => (hasMag ? `MAG[sl * ${uN} + o] * (${v})` : v);
  let decls = '';
  names.forEach((nm, i) => {
    decls += `@group(0) @binding(${i + 1}) var<storage, read> ${nm}: array<${types[nm] ?? 'f32'}>;\n`;
  });
  decls += `@group(0) @binding(${names.length + 1}) var<storage, read_write> Y: array<f32>;\n`;
  const ranks = [...Array(np).keys()];
  const toks = [...Array(tpg).keys()];
  const guard = (i: number) => ((i + 1) * gpt > R ? `if (jg + ${i * gpt}u < ${R}u) ` : '');
  const mac = (c: number, i: number) =>
    `${guard(i)}{ a${c}_${i} = a${c}_${i} + ${vecK ? 'dot' : ''}(xv${vecK ? ', ' : ' * '}A[(sl * ${R}u + jg + ${i * gpt}u) * ${uK} + k]); }`;
  // Token c of group g: tt0 + c * (groups / gpt).
  const ttOf = (c: number) => (c === 0 ? 'tt0' : `(tt0 + ${c * (groups / gpt)}u)`);
  // The expand keeps a B row in registers across the group's tokens (vec4 path, r_max <= 64).
  const regB = vecR && R <= 64;
  const R4 = R / 4;
  const hv = (j: number) =>
    `vec4<f32>(hs[ho + ${4 * j}u], hs[ho + ${4 * j + 1}u], hs[ho + ${4 * j + 2}u], hs[ho + ${4 * j + 3}u])`;
  const expand = regB
    ? `  for (var o = lid; o < ${uN}; o = o + ${WG}u) {
    let bo = (sl * ${uN} + o) * ${R4}u;
${[...Array(R4).keys()].map((j) => `    let b${j} = B[bo + ${j}u];`).join('\n')}
    for (var tt = 0u; tt < ntok; tt = tt + 1u) {
      let at = (t0 + tt) * ${uN} + o;
      let ho = tt * ${R}u;
      let acc = ${[...Array(R4).keys()].map((j) => `dot(${hv(j)}, b${j})`).join(' + ')};
      Y[at] = ${result('YIN[at] + sc * acc')};
    }
  }`
    : `  for (var e = lid; e < ntok * ${uN}; e = e + ${WG}u) {
    let tt = e / ${uN};
    let o = e % ${uN};
    let at = (t0 + tt) * ${uN} + o;
    var acc = 0.0;
    let bo = (sl * ${uN} + o) * ${R}u;
    for (var j = 0u; j < ${R}u; j = j + 1u) { acc = fma(hs[tt * ${R}u + j], ${vecR ? 'B[(bo + j) / 4u][(bo + j) % 4u]' : 'B[bo + j]'}, acc); }
    Y[at] = ${result('YIN[at] + sc * acc')};
  }`;
  const code = `${u.decl()}${decls}var<workgroup> part: array<f32, ${Math.max(pairs * LANES, 1)}>;
var<workgroup> hs: array<f32, ${Math.max(pairs, 1)}>;
${entry([WG])}  let row = wid / ${uW};
  let first = (wid % ${uW}) * ${tpw}u;
  let t0 = row * ${uT} + first;
  let ntok = min(${tpw}u, ${uT} - first);
  let a = IDX[row];
  let valid = a >= 0i && u32(a) < ${uS};
  let sc = SC[select(0u, u32(a), valid)];
  if (!valid) {
    // A base row: y as it is (the branch is uniform over the workgroup: one row per group).
    for (var e = lid; e < ntok * ${uN}; e = e + ${WG}u) { Y[t0 * ${uN} + e] = YIN[t0 * ${uN} + e]; }
    return;
  }
  let sl = u32(a);
  let lane = lid % ${LANES}u;
  let g = lid / ${LANES}u;
  let tt0 = g / ${gpt}u;
  let jg = g % ${gpt}u;
${toks
  .map(
    (c) => `${ranks.map((i) => `  var a${c}_${i} = 0.0;`).join('\n')}
  if (${ttOf(c)} < ntok) {
    let xo = (t0 + ${ttOf(c)}) * ${uK};
    for (var k = lane; k < ${uK}; k = k + ${LANES}u) {
      let xv = X[xo + k];
${ranks.map((i) => `      ${mac(c, i)}`).join('\n')}
    }
  }
${ranks.map((i) => `  ${guard(i)}{ part[(${ttOf(c)} * ${R}u + jg + ${i * gpt}u) * ${LANES}u + lane] = a${c}_${i}; }`).join('\n')}`,
  )
  .join('\n')}
  workgroupBarrier();
  for (var q = lid; q < ${pairs}u; q = q + ${WG}u) {
    var s = 0.0;
    for (var w = 0u; w < ${LANES}u; w = w + 1u) { s = s + part[q * ${LANES}u + w]; }
    hs[q] = s;
  }
  workgroupBarrier();
${expand}
}
`;
  return {
    steps: [
      {
        desc: {
          op: 'sgmv',
          dtypes: ['f32', 'f32', 'i32', 'f32', 'f32', 'f32', ...(hasMag ? (['f32'] as const) : [])],
          workgroup: [WG],
          r: R,
          tpw,
          vecK,
          mag: hasMag,
        },
        code,
        uniforms: u,
        bindings: [
          ...names.map((_, index) => ({ ref: { kind: 'input' as const, index }, write: false })),
          { ref: { kind: 'output' as const }, write: true },
        ],
        workgroups: rows * perRow,
      },
    ],
  };
};

if (!getKernel('sgmv')) registerKernel('sgmv', sgmvWgsl);
