// Matmul for CPU adapters (lavapipe) when the direct kernel's K-vectorised loads do not
// apply (A transposed, as in weight gradients x^T dy; K not a multiple of 4): each
// invocation owns a 4x4 output tile and adds one outer product per k, a column of A
// (m0..m0+3) times a row of B (n0..n0+3). Loads are vec4 where that run is contiguous
// and aligned, scalar (clamped at the edges) otherwise; no workgroup memory, no barriers.
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

const WG = 64;

export function directOuter(p: MatmulProblem): Step {
  const u = new Uniforms();
  const [M, N, K] = [u.u32(p.m), u.u32(p.n), u.u32(p.k)];
  const nbx = Math.ceil(p.n / 4);
  const tiles = nbx * Math.ceil(p.m / 4);
  const [nbxU, tilesU, batchesU] = [u.u32(nbx), u.u32(tiles), u.u32(numel(p.batch))];
  const bcode = batchCode(u, p);
  // A's m run is contiguous when transposed, B's n run when not; aligned when M (N) % 4 == 0.
  const vecA = p.ta && p.m % 4 === 0;
  const vecB = !p.tb && p.n % 4 === 0;
  const vecC = p.n % 4 === 0 && !p.epilogue;
  const { code: decls, bindings } = bindingsFor(p, vecA, vecB, vecC, u);
  const bdt = p.bDtype ?? p.dtype;
  const aAt = (m: string) => (p.ta ? `aBase + k * ${M} + ${m}` : `aBase + (${m}) * ${K} + k`);
  const bAt = (n: string) => (p.tb ? `bBase + (${n}) * ${K} + k` : `bBase + k * ${N} + ${n}`);
  const clampM = (i: number) => `min(m0 + ${i}u, ${M} - 1u)`;
  const clampN = (j: number) => `min(n0 + ${j}u, ${N} - 1u)`;
  const aCol = vecA
    ? ldA4(`(${aAt('m0')}) / 4u`)
    : `vec4<f32>(${[0, 1, 2, 3].map((i) => ldA1(aAt(clampM(i)))).join(', ')})`;
  const bRow = vecB
    ? ldB4(`(${bAt('n0')}) / 4u`)
    : `vec4<f32>(${[0, 1, 2, 3].map((j) => ldB1(bAt(clampN(j)))).join(', ')})`;
  const code = `${enables([p.dtype, bdt, p.outDtype]) + PRELUDE + u.decl() + decls}
${entry([WG])}  let g = wid * ${WG}u + lid;
  let tile = g % ${tilesU};
  let batch = g / ${tilesU};
  if (batch >= ${batchesU}) { return; }
${bcode}  let m0 = (tile / ${nbxU}) * 4u;
  let n0 = (tile % ${nbxU}) * 4u;
  var acc: array<vec4<f32>, 4>;
  for (var k = 0u; k < ${K}; k++) {
    let a = ${aCol};
    let b = ${bRow};
    acc[0] = fma(vec4<f32>(a.x), b, acc[0]);
    acc[1] = fma(vec4<f32>(a.y), b, acc[1]);
    acc[2] = fma(vec4<f32>(a.z), b, acc[2]);
    acc[3] = fma(vec4<f32>(a.w), b, acc[3]);
  }
  let cBase = batch * ${M} * ${N};
  let gn = n0;
  for (var i = 0u; i < 4u; i++) {
    let gm = m0 + i;
    if (gm < ${M}) { ${storeTileRow(p, vecC, N)} }
  }
}
`;
  return {
    desc: matmulDesc(p, 'outer', [WG], { vec: [vecA, vecB, vecC] }),
    code,
    uniforms: u,
    bindings,
    workgroups: Math.ceil((numel(p.batch) * tiles) / WG),
  };
}
