// Attention's fused backward (autodiff's attention VJP): attention_stats (each query row's
// max score and sum of exponentials) and attention_grad (dq, dk or dv), an invocation per
// output row, the probabilities recomputed from q, k and the stats instead of stored:
// P = exp(score - max) / sum on visible keys, dS = P (dO . v - D), D = rowsum(dO * O).
// The scores are the forward kernel's (scale, additive mask broadcast to [B, Hq, S, T],
// causal keys j <= i + T - S, GQA query head h on kv head h / (Hq / Hkv)); the CPU
// kernels in backends/cpu/nn.ts are the spec.
import { declStorage, enables, loadFn, PRELUDE, storeStmt } from '../dtypes.ts';
import { type BindingRef, entry, type Kernel, type KernelContext, Uniforms } from '../program.ts';
import { broadcastStrides } from './map.ts';
import { ROW_WG } from './reduce.ts';

/** Largest head dim an invocation's private accumulator holds (the VJP keeps the unfused path above). */
export const GRAD_MAX_DIM = 128;

/** Declarations, bindings and the score expression shared by the two kernels. */
function setup(ctx: KernelContext, names: readonly string[], maskIndex: number) {
  const [q, k] = ctx.inputs;
  const [b, hq, s, d] = q.shape;
  const [, hk, t] = k.shape;
  const mask = ctx.inputs[maskIndex];
  const scale = ctx.node.attrs.scale === null ? 1 / Math.sqrt(d) : Number(ctx.node.attrs.scale);
  const u = new Uniforms();
  const [S, T, HQ, G] = [s, t, hq, hq / hk].map((x) => u.u32(x));
  const scaleU = u.f32v(scale);
  const ms = mask ? broadcastStrides(mask.shape, [b, hq, s, t]).map((x) => u.u32(x)) : [];
  const dts = ctx.inputs.map((x) => x.dtype);
  const bindings: { ref: BindingRef; write: boolean }[] = ctx.inputs.map((_, index) => ({
    ref: { kind: 'input', index },
    write: false,
  }));
  bindings.push({ ref: { kind: 'output' }, write: true });
  const decls = () => {
    let code = enables([...dts, ctx.out.dtype]) + PRELUDE + u.decl();
    ctx.inputs.forEach((_, j) => {
      const name = j === maskIndex ? 'm' : names[j];
      code += declStorage(name, dts[j], j + 1, false) + loadFn(name, dts[j]);
    });
    return code + declStorage('outb', ctx.out.dtype, ctx.inputs.length + 1, true);
  };
  // score(bi, hi, qi, j): -inf where the key is not visible.
  const causal = !!ctx.node.attrs.causal;
  const score = `fn score(bi: u32, hi: u32, qi: u32, j: u32) -> f32 {
  ${causal ? `if (i32(j) > i32(qi) + i32(${T}) - i32(${S})) { return inf_f32(-1.0); }` : ''}
  let qb = ((bi * ${HQ} + hi) * ${S} + qi) * ${d}u;
  let kb = ((bi * (${HQ} / ${G}) + hi / ${G}) * ${T} + j) * ${d}u;
  var sc = 0.0;
  for (var e = 0u; e < ${d}u; e++) { sc = fma(ld_q(qb + e), ld_k(kb + e), sc); }
  return sc * ${scaleU}${mask ? ` + ld_m(bi * ${ms[0]} + hi * ${ms[1]} + qi * ${ms[2]} + j * ${ms[3]})` : ''};
}
`;
  return { u, S, T, HQ, G, b, hq, hk, s, t, d, scaleU, bindings, decls, score, causal, hasMask: !!mask };
}

const attentionStats: Kernel = (ctx) => {
  const x = setup(ctx, ['q', 'k'], 2);
  const rows = x.u.u32(x.b * x.hq * x.s);
  const code = `${x.decls()}${x.score}${entry([ROW_WG])}  let row = wid * ${ROW_WG}u + lid;
  if (row >= ${rows}) { return; }
  let qi = row % ${x.S};
  let bh = row / ${x.S};
  let hi = bh % ${x.HQ};
  let bi = bh / ${x.HQ};
  var m = inf_f32(-1.0);
  for (var j = 0u; j < ${x.T}; j++) { m = max(m, score(bi, hi, qi, j)); }
  var l = 0.0;
  if (m != inf_f32(-1.0)) {
    for (var j = 0u; j < ${x.T}; j++) { l = l + exp(score(bi, hi, qi, j) - m); }
  }
  outb[row * 2u] = m;
  outb[row * 2u + 1u] = l;
}
`;
  return {
    steps: [
      {
        desc: {
          op: 'attention_stats',
          dtypes: [...ctx.inputs.map((t) => t.dtype), ctx.out.dtype],
          workgroup: [ROW_WG],
          causal: x.causal,
          mask: x.hasMask,
          d: x.d,
        },
        code,
        uniforms: x.u,
        bindings: x.bindings,
        workgroups: Math.ceil((x.b * x.hq * x.s) / ROW_WG),
      },
    ],
  };
};

const attentionGrad: Kernel = (ctx) => {
  const wrt = ctx.node.attrs.wrt as 'q' | 'k' | 'v';
  const x = setup(ctx, ['q', 'k', 'v', 'dout', 'stats', 'dsum'], 6);
  const dv = ctx.inputs[2].shape[3];
  const width = wrt === 'v' ? dv : x.d;
  // The contribution of query row (bi, hi, qi) and key j to the output row.
  const term =
    wrt === 'v'
      ? `for (var c = 0u; c < ${dv}u; c++) { acc[c] = fma(p, ld_dout(qrow * ${dv}u + c), acc[c]); }`
      : `var dp = 0.0;
      for (var c = 0u; c < ${dv}u; c++) { dp = fma(ld_dout(qrow * ${dv}u + c), ld_v(kvrow * ${dv}u + c), dp); }
      let ds = p * (dp - ld_dsum(qrow)) * ${x.scaleU};
      for (var c = 0u; c < ${x.d}u; c++) { acc[c] = fma(ds, ${wrt === 'q' ? 'ld_k(kvrow' : 'ld_q(qrow'} * ${x.d}u + c), acc[c]); }`;
  const visit = `let m = ld_stats(qrow * 2u);
      let l = ld_stats(qrow * 2u + 1u);
      if (l > 0.0) {
        let p = exp(score(bi, hi, qi, j) - m) / l;
        if (p != 0.0) {
      ${term}
        }
      }`;
  const rowsN = wrt === 'q' ? x.b * x.hq * x.s : x.b * x.hk * x.t;
  const rows = x.u.u32(rowsN);
  const loops =
    wrt === 'q'
      ? `  let qi = row % ${x.S};
  let bh = row / ${x.S};
  let hi = bh % ${x.HQ};
  let bi = bh / ${x.HQ};
  let qrow = row;
  for (var j = 0u; j < ${x.T}; j++) {
    let kvrow = (bi * (${x.HQ} / ${x.G}) + hi / ${x.G}) * ${x.T} + j;
    ${visit}
  }
`
      : `  let j = row % ${x.T};
  let bk = row / ${x.T};
  let hk = bk % (${x.HQ} / ${x.G});
  let bi = bk / (${x.HQ} / ${x.G});
  let kvrow = row;
  for (var g = 0u; g < ${x.G}; g++) {
    let hi = hk * ${x.G} + g;
    for (var qi = 0u; qi < ${x.S}; qi++) {
      let qrow = (bi * ${x.HQ} + hi) * ${x.S} + qi;
      ${visit}
    }
  }
`;
  const code = `${x.decls()}${x.score}${entry([ROW_WG])}  let row = wid * ${ROW_WG}u + lid;
  if (row >= ${rows}) { return; }
  var acc: array<f32, ${width}>;
${loops}  for (var c = 0u; c < ${width}u; c++) { ${storeStmt('outb', ctx.out.dtype, `row * ${width}u + c`, 'acc[c]')} }
}
`;
  return {
    steps: [
      {
        desc: {
          op: 'attention_grad',
          dtypes: [...ctx.inputs.map((t) => t.dtype), ctx.out.dtype],
          workgroup: [ROW_WG],
          wrt,
          causal: x.causal,
          mask: x.hasMask,
          d: x.d,
          dv,
        },
        code,
        uniforms: x.u,
        bindings: x.bindings,
        workgroups: Math.ceil(rowsN / ROW_WG),
      },
    ],
  };
};

export const attentionGradKernels = {
  attention_stats: attentionStats,
  attention_grad: attentionGrad,
} satisfies Record<string, Kernel>;
