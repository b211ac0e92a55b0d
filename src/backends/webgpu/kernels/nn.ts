// Transformer blocks: rotary embedding (HF rotate_half) and attention (softmax(q k^T
// * scale + mask [+ causal]) v with GQA): a workgroup per query row, or (short key rows,
// CPU adapters) an invocation per query row (per 4 rows on CPU adapters) with an online
// softmax.

import { ropeDims } from '../../../ir/ops/nn.ts';
import { numel } from '../../../ir/shape.ts';
import { declStorage, enables, loadFn, PRELUDE, storeStmt } from '../dtypes.ts';
import { type BindingRef, entry, type Kernel, type KernelContext, Uniforms } from '../program.ts';
import { broadcastStrides, mapKernel } from './map.ts';
import { ROW_WG, rowMode, wgReduce } from './reduce.ts';

/** Uniform declarations and the q, k, v[, mask] and output storage of an attention kernel. */
function attentionHeader(ctx: KernelContext, u: Uniforms): string {
  const dts = ctx.inputs.map((x) => x.dtype);
  let code = enables([...dts, ctx.out.dtype]) + PRELUDE + u.decl();
  ['q', 'k', 'v', 'm'].slice(0, ctx.inputs.length).forEach((name, j) => {
    code += declStorage(name, dts[j], j + 1, false) + loadFn(name, dts[j]);
  });
  return code + declStorage('outb', ctx.out.dtype, ctx.inputs.length + 1, true);
}

/** The bindings matching attentionHeader, and the WGSL term adding the mask element (row qi, key j). */
function attentionBindings(
  ctx: KernelContext,
  ms: readonly string[],
): { bindings: { ref: BindingRef; write: boolean }[]; maskTerm: string } {
  const bindings: { ref: BindingRef; write: boolean }[] = ctx.inputs.map((_, index) => ({
    ref: { kind: 'input', index },
    write: false,
  }));
  bindings.push({ ref: { kind: 'output' }, write: true });
  const maskTerm = ms.length ? ` + ld_m(bi * ${ms[0]} + hi * ${ms[1]} + qi * ${ms[2]} + j * ${ms[3]})` : '';
  return { bindings, maskTerm };
}

/**
 * The rotation angle of frequency j at integer position p, exactly as a fraction of a
 * turn: f_j = inv_freq_j / (2 pi scaling) is held as 64-bit fixed point (two u32 per
 * frequency, from f64 on the host) and frac(p f_j) comes from integer products, so the
 * angle is accurate to ~1e-7 at any position where f32 p * f_j would lose digits.
 */
const TURN = `fn mulhi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu; let a1 = a >> 16u; let b0 = b & 0xffffu; let b1 = b >> 16u;
  let lo = a0 * b0; let m1 = a1 * b0; let m2 = a0 * b1;
  let carry = ((lo >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu)) >> 16u;
  return a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + carry;
}
fn turn_angle(p: i32, fhi: u32, flo: u32) -> f32 {
  let q = u32(abs(p));
  let t = q * fhi + mulhi(q, flo);
  let a = f32(bitcast<i32>(t)) * 1.4629180792671596e-9;
  return select(a, -a, p < 0);
}
`;

const rope: Kernel = (ctx) => {
  const layoutIn = ctx.node.attrs.layout_in === 'bshd' ? 'bshd' : 'bhsd';
  const layoutOut = ctx.node.attrs.layout_out === 'bshd' ? 'bshd' : 'bhsd';
  const [, h, s, d] = ropeDims(ctx.inputs[0].shape, layoutIn);
  const pos2d = ctx.inputs[1].shape.length === 2;
  const inverse = !!ctx.node.attrs.inverse;
  const theta = Number(ctx.node.attrs.theta);
  const scaling = Number(ctx.node.attrs.scaling_factor);
  const half = d / 2;
  const words: number[] = [];
  for (let j = 0; j < half; j++) {
    // Same inv_freq as the CPU (f64), as turns per position.
    const f = 1 / theta ** ((2 * j) / d) / scaling / (2 * Math.PI);
    const fr = f - Math.floor(f);
    const hi = Math.floor(fr * 2 ** 32);
    const lo = Math.floor((fr * 2 ** 32 - hi) * 2 ** 32);
    words.push(hi >>> 0, lo >>> 0);
  }
  return mapKernel({
    ctx,
    // half sizes the frequency table in the uniform struct.
    desc: { pos2d, inverse, half, layoutIn, layoutOut },
    helpers: TURN,
    body: (u) => {
      const dU = u.u32(d);
      const sU = u.u32(s);
      const hU = u.u32(h);
      const table = u.u32Table(words);
      // Output element i's (batch, head, position); its input row where the layouts differ.
      const coords =
        layoutOut === 'bshd'
          ? `  let hi = t % ${hU};\n  let si = (t / ${hU}) % ${sU};\n  let bi = t / (${hU} * ${sU});\n`
          : `  let si = t % ${sU};\n  let hi = (t / ${sU}) % ${hU};\n  let bi = t / (${hU} * ${sU});\n`;
      const row =
        layoutIn === layoutOut
          ? 'i - c'
          : layoutIn === 'bshd'
            ? `((bi * ${sU} + si) * ${hU} + hi) * ${dU}`
            : `((bi * ${hU} + hi) * ${sU} + si) * ${dU}`;
      return `  let c = i % ${dU};
  let t = i / ${dU};
${coords}  let half = ${dU} / 2u;
  let j = c % half;
  let ang = turn_angle(i32(ld_in1(${pos2d ? `bi * ${sU} + si` : 'si'})), ${table('2u * j')}, ${table('2u * j + 1u')});
  let cs = cos(ang);
  let sn = ${inverse ? '-' : ''}sin(ang);
  let row = ${row};
  if (c < half) { return ld_in0(row + c) * cs - ld_in0(row + c + half) * sn; }
  return ld_in0(row + c) * cs + ld_in0(row + c - half) * sn;`;
    },
  });
};

/** Largest head dim held in an invocation's registers by the thread-per-row attention. */
const THREAD_MAX_DIM = 128;

/**
 * Query rows an invocation of the thread-per-row attention takes on a software adapter:
 * each key and value element loaded serves that many rows (lavapipe loads every
 * storage-buffer element behind a bounds check, DECISIONS.md). Rows of one invocation
 * share their batch and head, so it divides the query length.
 */
function rowsPerInvocation(ctx: KernelContext, s: number): number {
  if (!ctx.software) return 1; // a GPU wants the parallelism
  return [4, 2].find((r) => s % r === 0) ?? 1;
}

/**
 * Attention with one invocation per R query rows (R = 1 on GPUs): q and the output rows
 * in private arrays, keys visited once with a running max per row (rescaling its sums
 * when it grows), no barriers. Each row does the same operations in the same order as
 * with R = 1, so the results do not depend on R.
 */
const attentionPerRow: Kernel = (ctx) => {
  const [q, k, v, mask] = ctx.inputs;
  const [b, hq, s, d] = q.shape;
  const [, hk, t] = k.shape;
  const dv = v.shape[3];
  const causal = !!ctx.node.attrs.causal;
  const scale = ctx.node.attrs.scale === null ? 1 / Math.sqrt(d) : Number(ctx.node.attrs.scale);
  const hasMask = mask !== undefined;
  const R = rowsPerInvocation(ctx, s);
  const u = new Uniforms();
  const [S, T, HQ, G] = [s, t, hq, hq / hk].map((x) => u.u32(x));
  const scaleU = u.f32v(scale);
  const groups = u.u32((b * hq * s) / R);
  const ms = hasMask ? broadcastStrides(mask.shape, [b, hq, s, t]).map((x) => u.u32(x)) : [];
  const { bindings, maskTerm } = attentionBindings(ctx, ms);
  let code = attentionHeader(ctx, u);
  code += `${entry([ROW_WG])}  let grp = wid * ${ROW_WG}u + lid;
  if (grp >= ${groups}) { return; }
  let row0 = grp * ${R}u;
  let q0 = row0 % ${S};
  let bh = row0 / ${S};
  let hi = bh % ${HQ};
  let bi = bh / ${HQ};
  let kvh = bi * (${HQ} / ${G}) + hi / ${G};
  let kBase = kvh * ${T} * ${d}u;
  let vBase = kvh * ${T} * ${dv}u;
  var qr: array<f32, ${R * d}>;
  for (var e = 0u; e < ${R * d}u; e++) { qr[e] = ld_q(row0 * ${d}u + e); }
  var acc: array<f32, ${R * dv}>;
  var m: array<f32, ${R}>;
  var l: array<f32, ${R}>;
  var p: array<f32, ${R}>;
  var took: array<bool, ${R}>;
  let ninf = inf_f32(-1.0);
  for (var r = 0u; r < ${R}u; r++) { m[r] = ninf; l[r] = 0.0; }
  var kr: array<f32, ${d}>;
  // Keys after a row's diagonal (offset by T - S) are masked out by causality; the last row's is the furthest.
  let jLast = ${causal ? `u32(clamp(i32(q0) + ${R - 1} + i32(${T}) - i32(${S}) + 1, 0, i32(${T})))` : T};
  for (var j = 0u; j < jLast; j++) {
    for (var e = 0u; e < ${d}u; e++) { kr[e] = ld_k(kBase + j * ${d}u + e); }
    for (var r = 0u; r < ${R}u; r++) {
      let qi = q0 + r;
      took[r] = false;
      ${causal ? `if (i32(j) >= i32(qi) + i32(${T}) - i32(${S}) + 1) { continue; }` : ''}
      var sc = 0.0;
      for (var e = 0u; e < ${d}u; e++) { sc = fma(qr[r * ${d}u + e], kr[e], sc); }
      sc = sc * ${scaleU}${maskTerm};
      if (sc == ninf) { continue; }
      if (sc > m[r] || sc != sc) {
        // exp(-inf) = 0 clears the sums on the first key; NaN spreads as on the CPU.
        let f = exp(m[r] - sc);
        l[r] = l[r] * f;
        for (var c = 0u; c < ${dv}u; c++) { acc[r * ${dv}u + c] = acc[r * ${dv}u + c] * f; }
        m[r] = sc;
      }
      p[r] = exp(sc - m[r]);
      l[r] = l[r] + p[r];
      took[r] = true;
    }
    for (var c = 0u; c < ${dv}u; c++) {
      let vj = ld_v(vBase + j * ${dv}u + c);
      for (var r = 0u; r < ${R}u; r++) {
        let a = r * ${dv}u + c;
        acc[a] = select(acc[a], fma(p[r], vj, acc[a]), took[r]);
      }
    }
  }
  // A row with every key masked gives zeros, as the CPU.
  for (var r = 0u; r < ${R}u; r++) {
    for (var c = 0u; c < ${dv}u; c++) {
      ${storeStmt('outb', ctx.out.dtype, `(row0 + r) * ${dv}u + c`, `select(acc[r * ${dv}u + c] / l[r], 0.0, l[r] == 0.0)`)}
    }
  }
}
`;
  return {
    steps: [
      {
        desc: {
          op: 'attention',
          dtypes: [...ctx.inputs.map((x) => x.dtype), ctx.out.dtype],
          workgroup: [ROW_WG],
          rows: 'thread',
          rowsPerInvocation: R,
          causal,
          mask: hasMask,
          d,
          dv,
        },
        code,
        uniforms: u,
        bindings,
        workgroups: Math.ceil((b * hq * s) / R / ROW_WG),
      },
    ],
  };
};

const attention: Kernel = (ctx) => {
  const [q, k, v, mask] = ctx.inputs;
  const [b, hq, s, d] = q.shape;
  const dims = [d, v.shape[3]];
  const small = dims.every((x) => x >= 1 && x <= THREAD_MAX_DIM);
  if (small && rowMode(ctx, b * hq * s, k.shape[2]).kind === 'thread') return attentionPerRow(ctx);
  const [, hk, t] = k.shape;
  const dv = v.shape[3];
  const causal = !!ctx.node.attrs.causal;
  const scale = ctx.node.attrs.scale === null ? 1 / Math.sqrt(d) : Number(ctx.node.attrs.scale);
  const cpt = Math.max(1, Math.ceil(dv / ROW_WG));
  const hasMask = mask !== undefined;
  const u = new Uniforms();
  const [S, T, D, DV, HQ, G] = [s, t, d, dv, hq, hq / hk].map((x) => u.u32(x));
  const scaleU = u.f32v(scale);
  const rows = u.u32(b * hq * s);
  const ms = hasMask ? broadcastStrides(mask.shape, [b, hq, s, t]).map((x) => u.u32(x)) : [];
  const { bindings, maskTerm } = attentionBindings(ctx, ms);
  let code = attentionHeader(ctx, u);
  code += `var<workgroup> red: array<f32, ${ROW_WG}>;
var<workgroup> P: array<f32, ${ROW_WG}>;
${entry([ROW_WG])}  let row = wid;
  if (row >= ${rows}) { return; }
  let qi = row % ${S};
  let bh = row / ${S};
  let hi = bh % ${HQ};
  let bi = bh / ${HQ};
  let kvh = bi * (${HQ} / ${G}) + hi / ${G};
  let qBase = row * ${D};
  let kBase = kvh * ${T} * ${D};
  let vBase = kvh * ${T} * ${DV};
  let last = i32(qi) + i32(${T}) - i32(${S});
  let ninf = inf_f32(-1.0);
  var m = ninf;
  for (var j = lid; j < ${T}; j = j + ${ROW_WG}u) {
    if (${causal ? 'i32(j) <= last' : 'true'}) {
      var sc = 0.0;
      for (var e = 0u; e < ${D}; e++) { sc = fma(ld_q(qBase + e), ld_k(kBase + j * ${D} + e), sc); }
      sc = sc * ${scaleU}${maskTerm};
      m = select(m, sc, sc > m || sc != sc);
    }
  }
${wgReduce('mx', 'm', (x, y) => `select(${y}, ${x}, ${x} > ${y} || ${x} != ${x})`)}  var acc: array<f32, ${cpt}>;
  var l = 0.0;
  for (var j0 = 0u; j0 < ${T}; j0 = j0 + ${ROW_WG}u) {
    let j = j0 + lid;
    var pj = 0.0;
    if (j < ${T} && ${causal ? 'i32(j) <= last' : 'true'}) {
      var sc = 0.0;
      for (var e = 0u; e < ${D}; e++) { sc = fma(ld_q(qBase + e), ld_k(kBase + j * ${D} + e), sc); }
      // A row with every key masked gives zeros, as the CPU.
      pj = select(exp(sc * ${scaleU}${maskTerm} - mx), 0.0, mx == ninf);
    }
    l = l + pj;
    P[lid] = pj;
    workgroupBarrier();
    let jn = min(${ROW_WG}u, ${T} - j0);
    for (var cc = 0u; cc < ${cpt}u; cc++) {
      let c = lid + cc * ${ROW_WG}u;
      if (c < ${DV}) {
        var a = acc[cc];
        for (var jj = 0u; jj < jn; jj++) { a = fma(P[jj], ld_v(vBase + (j0 + jj) * ${DV} + c), a); }
        acc[cc] = a;
      }
    }
    workgroupBarrier();
  }
${wgReduce('tot', 'l', (x, y) => `${x} + ${y}`)}  for (var cc = 0u; cc < ${cpt}u; cc++) {
    let c = lid + cc * ${ROW_WG}u;
    if (c < ${DV}) { ${storeStmt('outb', ctx.out.dtype, `row * ${DV} + c`, 'select(acc[cc] / tot, 0.0, tot == 0.0)')} }
  }
}
`;
  return {
    steps: [
      {
        desc: {
          op: 'attention',
          dtypes: [...ctx.inputs.map((x) => x.dtype), ctx.out.dtype],
          workgroup: [ROW_WG],
          rows: 'workgroup',
          causal,
          mask: hasMask,
          colsPerInvocation: cpt,
        },
        code,
        uniforms: u,
        bindings,
        workgroups: numel([b, hq, s]),
      },
    ],
  };
};

export const nnKernels = { rope, attention } satisfies Record<string, Kernel>;
