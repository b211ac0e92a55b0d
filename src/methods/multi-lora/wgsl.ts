// sgmv in WGSL: one workgroup (64 threads) per token, BGMV-style (a decode step is one
// token per row; a prefill row's tokens share their slot). The workgroup gathers its
// row's slot, shrinks x A_a^T into workgroup memory (threads split r_max into blocks of
// Rb ranks x P parts of the k axis, so neighbouring threads read neighbouring k of one A
// row; the P partials are summed per rank), then expands: thread o of every 64 writes
// y + s * h B_a^T. Rows with no adapter (index -1 or out of range) copy y. r_max is in the
// pipeline description (the workgroup array's size); sizes and the slot count are uniforms.
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

/** The rank blocking of the shrink: Rb ranks at a time, P threads per rank. */
export function sgmvBlocking(r: number): { rb: number; parts: number; blocks: number } {
  const rb = Math.min(pow2ceil(Math.max(r, 1)), WG);
  return { rb, parts: WG / rb, blocks: Math.ceil(r / rb) };
}

export const sgmvWgsl: Kernel = (ctx): KernelPlan => {
  const [, x, idx, A, B] = ctx.inputs;
  const [slots, R, K] = A.shape;
  const N = B.shape[1];
  const tokens = K === 0 ? 0 : numel(x.shape) / K;
  const rows = idx.shape[0];
  const u = new Uniforms();
  const [uK, uN, uS, uT] = [u.u32(K), u.u32(N), u.u32(slots), u.u32(rows === 0 ? 1 : tokens / rows)];
  const { rb, parts, blocks } = sgmvBlocking(R);
  const names = ['YIN', 'X', 'IDX', 'A', 'B', 'SC'];
  let decls = '';
  names.forEach((nm, i) => {
    decls += `@group(0) @binding(${i + 1}) var<storage, read> ${nm}: array<${nm === 'IDX' ? 'i32' : 'f32'}>;\n`;
  });
  decls += `@group(0) @binding(${names.length + 1}) var<storage, read_write> Y: array<f32>;\n`;
  const code = `${u.decl()}${decls}var<workgroup> part: array<f32, ${WG}>;
var<workgroup> hs: array<f32, ${Math.max(R, 1)}>;
${entry([WG])}  let t = wid;
  let a = IDX[t / ${uT}];
  let valid = a >= 0i && u32(a) < ${uS};
  let sl = select(0u, u32(a), valid);
  let j0 = lid / ${parts}u;
  let p = lid % ${parts}u;
  for (var blk = 0u; blk < ${blocks}u; blk = blk + 1u) {
    let j = blk * ${rb}u + j0;
    var acc = 0.0;
    if (valid && j < ${R}u) {
      let ao = (sl * ${R}u + j) * ${uK};
      for (var k = p; k < ${uK}; k = k + ${parts}u) { acc = fma(X[t * ${uK} + k], A[ao + k], acc); }
    }
    part[lid] = acc;
    workgroupBarrier();
    let jj = blk * ${rb}u + lid;
    if (lid < ${rb}u && jj < ${R}u) {
      var s = 0.0;
      for (var q = 0u; q < ${parts}u; q = q + 1u) { s = s + part[lid * ${parts}u + q]; }
      hs[jj] = s;
    }
    workgroupBarrier();
  }
  let sc = SC[sl];
  for (var o = lid; o < ${uN}; o = o + ${WG}u) {
    let at = t * ${uN} + o;
    if (valid) {
      var acc = 0.0;
      let bo = (sl * ${uN} + o) * ${R}u;
      for (var j = 0u; j < ${R}u; j = j + 1u) { acc = fma(hs[j], B[bo + j], acc); }
      Y[at] = YIN[at] + sc * acc;
    } else {
      Y[at] = YIN[at];
    }
  }
}
`;
  return {
    steps: [
      {
        desc: { op: 'sgmv', dtypes: ['f32', 'f32', 'i32', 'f32', 'f32', 'f32'], workgroup: [WG], r: R },
        code,
        uniforms: u,
        bindings: [
          ...names.map((_, index) => ({ ref: { kind: 'input' as const, index }, write: false })),
          { ref: { kind: 'output' as const }, write: true },
        ],
        workgroups: tokens,
      },
    ],
  };
};

if (!getKernel('sgmv')) registerKernel('sgmv', sgmvWgsl);
