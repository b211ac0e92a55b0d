// Matmul for CPU adapters (lavapipe): each invocation owns an RM x 4*RNV output tile held
// in registers (8x4: 8 vec4 accumulators) and adds one outer product per k, a column of
// A (rows m0..m0+RM-1) times a row of 4*RNV columns of B. lavapipe runs one invocation
// per SIMD lane and gathers a load whose address differs between lanes, but loads one
// whose address is uniform once for all: so a workgroup shares its rows (m0, the batch:
// from the workgroup id only, A's loads are uniform) and its lanes split the columns,
// lane l taking the vec4 columns l and l + WGN of the workgroup's span (neighbouring
// lanes read neighbouring B). Loads are vec4 along whichever axis is contiguous in
// memory and a multiple of 4 (K for A rows / B^T rows, read 4 k at a time; M for A^T,
// N for B), scalar and clamped otherwise; rows past M and columns past N are clamped on
// load and dropped on store. No workgroup memory, no barriers.
import { numel } from '../../../ir/shape.ts';
import { enables, PRELUDE } from '../dtypes.ts';
import { entry, type Step, Uniforms } from '../program.ts';
import {
  batchCode,
  bindingsFor,
  ldA1,
  ldA4,
  ldB1,
  ldB4,
  type MatmulProblem,
  matmulDesc,
  storeTileRow,
} from './matmul-parts.ts';

/** Rows of the register tile: 8, or 4 for short problems (a 4-row tile wastes less of M <= 4). */
export function registerRows(m: number): number {
  return m <= 4 ? 4 : 8;
}

/**
 * vec4 columns per invocation. 1 (an 8x4 tile): on lavapipe 2 (8x8) measured no faster
 * and 4 far slower (the accumulators no longer fit in registers); see docs/DECISIONS.md.
 */
const RNV = 1;

/** Lanes per workgroup: enough for N (4 * RNV columns each), a power of two from 8 to 64. */
export function registerLanes(n: number): number {
  let w = 8;
  while (w < 64 && w * 4 * RNV < n) w *= 2;
  return w;
}

export function registerTiled(p: MatmulProblem): Step {
  const RM = registerRows(p.m);
  const WGN = registerLanes(p.n);
  const u = new Uniforms();
  const [M, N, K] = [u.u32(p.m), u.u32(p.n), u.u32(p.k)];
  const nbx = Math.ceil(p.n / (4 * RNV * WGN));
  const tiles = nbx * Math.ceil(p.m / RM);
  // Every uniform is allocated before u.decl() sizes the struct.
  const [nbxU, tilesU] = [u.u32(nbx), u.u32(tiles)];
  const bcode = batchCode(u, p);
  // vec4 along K (A rows, B^T rows) needs K % 4 == 0; along M (A^T) / N (B) M or N % 4 == 0.
  const vecA = (p.ta ? p.m : p.k) % 4 === 0;
  const vecB = (p.tb ? p.k : p.n) % 4 === 0;
  const vecC = p.n % 4 === 0 && !p.epilogue;
  const kVecA = vecA && !p.ta;
  const kVecB = vecB && p.tb;
  const { code: decls, bindings } = bindingsFor(p, vecA, vecB, vecC, u);
  const bdt = p.bDtype ?? p.dtype;
  const rows = [...Array(RM).keys()];
  const row = (i: number) => `min(m0 + ${i}u, ${M} - 1u)`;
  // Column j of this lane (0..7): vec4 column cv{j >> 2}, component j & 3.
  const col = (j: number) => `min(cv${j >> 2} * 4u + ${j & 3}u, ${N} - 1u)`;
  // With a K-vectorised operand K % 4 == 0: the loop steps 4 k at a time; else 1.
  const KU = kVecA || kVecB ? 4 : 1;
  const ks = [...Array(KU).keys()];
  const kAt = (kk: number) => (kk === 0 ? 'k' : `k + ${kk}u`);

  // A (uniform in the workgroup): `a{kk}_{h}` = rows m0+4h..m0+4h+3 at k+kk.
  let loadA = '';
  const aCol = (kk: number, h: number) => `a${kk}_${h}`;
  if (kVecA) {
    loadA += rows
      .map((i) => `    let ar${i} = ${ldA4(`(aBase + ${row(i)} * ${K}) / 4u + k / 4u`)};\n`)
      .join('');
    for (const kk of ks)
      for (let h = 0; h < RM / 4; h++)
        loadA += `    let ${aCol(kk, h)} = vec4<f32>(${[0, 1, 2, 3].map((c) => `ar${h * 4 + c}[${kk}]`).join(', ')});\n`;
  } else if (vecA) {
    // A^T with M % 4 == 0: the m run is contiguous; a vec4 past M is clamped to the last one.
    for (const kk of ks)
      for (let h = 0; h < RM / 4; h++)
        loadA += `    let ${aCol(kk, h)} = ${ldA4(`(aBase + (${kAt(kk)}) * ${M}) / 4u + min(m0 / 4u + ${h}u, ${M} / 4u - 1u)`)};\n`;
  } else {
    const at = (i: number, kk: number) =>
      p.ta ? `aBase + (${kAt(kk)}) * ${M} + ${row(i)}` : `aBase + ${row(i)} * ${K} + ${kAt(kk)}`;
    for (const kk of ks)
      for (let h = 0; h < RM / 4; h++)
        loadA += `    let ${aCol(kk, h)} = vec4<f32>(${[0, 1, 2, 3].map((c) => ldA1(at(h * 4 + c, kk))).join(', ')});\n`;
  }

  // B (per lane): `b{kk}_{h}` = the 4 columns of vec4 column cv{h} at k+kk.
  let loadB = '';
  const bRow = (kk: number, h: number) => `b${kk}_${h}`;
  if (kVecB) {
    loadB += [...Array(4 * RNV).keys()]
      .map((j) => `    let br${j} = ${ldB4(`(bBase + ${col(j)} * ${K}) / 4u + k / 4u`)};\n`)
      .join('');
    for (const kk of ks)
      for (let h = 0; h < RNV; h++)
        loadB += `    let ${bRow(kk, h)} = vec4<f32>(${[0, 1, 2, 3].map((c) => `br${h * 4 + c}[${kk}]`).join(', ')});\n`;
  } else if (vecB) {
    for (const kk of ks)
      for (let h = 0; h < RNV; h++)
        loadB += `    let ${bRow(kk, h)} = ${ldB4(`(bBase + (${kAt(kk)}) * ${N}) / 4u + min(cv${h}, ${N} / 4u - 1u)`)};\n`;
  } else {
    const at = (j: number, kk: number) =>
      p.tb ? `bBase + ${col(j)} * ${K} + ${kAt(kk)}` : `bBase + (${kAt(kk)}) * ${N} + ${col(j)}`;
    for (const kk of ks)
      for (let h = 0; h < RNV; h++)
        loadB += `    let ${bRow(kk, h)} = vec4<f32>(${[0, 1, 2, 3].map((c) => ldB1(at(h * 4 + c, kk))).join(', ')});\n`;
  }

  // c{i}_{h} = row m0+i, columns cv{h}*4..+3: one variable each, every index constant (an
  // array indexed in a loop would live in memory).
  let fmas = '';
  for (const kk of ks)
    for (const i of rows)
      for (let h = 0; h < RNV; h++)
        fmas += `    c${i}_${h} = fma(vec4<f32>(${aCol(kk, i >> 2)}[${i & 3}]), ${bRow(kk, h)}, c${i}_${h});\n`;

  const code = `${enables([p.dtype, bdt, p.outDtype]) + PRELUDE + u.decl() + decls}
${entry([WGN])}  let tile = wid % ${tilesU};
  let batch = wid / ${tilesU};
${bcode}  let m0 = (tile / ${nbxU}) * ${RM}u;
  let nv0 = (tile % ${nbxU}) * ${RNV * WGN}u;
${[...Array(RNV).keys()].map((h) => `  let cv${h} = nv0 + ${h * WGN}u + lid;\n`).join('')}${rows.map((i) => [...Array(RNV).keys()].map((h) => `  var c${i}_${h} = vec4<f32>(0.0);\n`).join('')).join('')}
  for (var k = 0u; k < ${K}; k = k + ${KU}u) {
${loadA}${loadB}${fmas}  }
  let cBase = batch * ${M} * ${N};
${rows
  .map(
    (i) => `  if (m0 + ${i}u < ${M}) {
    let gm = m0 + ${i}u;
${[...Array(RNV).keys()].map((h) => `    { let gn = cv${h} * 4u; ${storeTileRow(p, vecC, N, `c${i}_${h}`)} }\n`).join('')}  }
`,
  )
  .join('')}}
`;
  return {
    desc: matmulDesc(p, 'register', [WGN], { rows: RM, cols: 4 * RNV, vec: [vecA, vecB, vecC] }),
    code,
    uniforms: u,
    bindings,
    workgroups: numel(p.batch) * tiles,
  };
}
