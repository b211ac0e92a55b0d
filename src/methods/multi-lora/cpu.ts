// CPU semantics of sgmv (the oracle of the WGSL kernel): per token, h = x A_a^T then
// [mag *] (y + s * h B_a^T), accumulated in f64 like the core linear.
import { type CpuKernel, empty, getCpuKernel, registerCpuKernel } from '../../backends/cpu/index.ts';
import './ops.ts';

export const sgmvKernel: CpuKernel = ([y, x, idx, A, B, s, mag], ctx) => {
  const out = empty(ctx, 'f32', ctx.node.type.shape);
  out.data.set(y.data);
  const [slots, R, K] = A.shape;
  const N = B.shape[1];
  const rows = idx.shape[0];
  const tokens = K === 0 ? 0 : x.data.length / K;
  const perRow = rows === 0 ? 0 : tokens / rows;
  const h = new Float64Array(R);
  const f32 = ctx.precision === 'f32';
  for (let t = 0; t < tokens; t++) {
    const a = idx.data[Math.floor(t / perRow)];
    if (a < 0 || a >= slots) continue;
    for (let j = 0; j < R; j++) {
      let acc = 0;
      const ao = (a * R + j) * K;
      for (let k = 0; k < K; k++) acc += x.data[t * K + k] * A.data[ao + k];
      h[j] = f32 ? Math.fround(acc) : acc;
    }
    const sc = s.data[a];
    for (let o = 0; o < N; o++) {
      let acc = 0;
      const bo = (a * N + o) * R;
      for (let j = 0; j < R; j++) acc += h[j] * B.data[bo + j];
      const v = (y.data[t * N + o] as number) + sc * (f32 ? Math.fround(acc) : acc);
      out.data[t * N + o] = mag ? mag.data[a * N + o] * (f32 ? Math.fround(v) : v) : v;
    }
  }
  return out;
};

if (!getCpuKernel('sgmv')) registerCpuKernel('sgmv', sgmvKernel);
