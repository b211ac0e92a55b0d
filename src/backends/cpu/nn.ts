// Transformer blocks kept whole: rotary embedding and attention.
import type { OpAttrs } from '../../ir/ops/index.ts';
import { ropeDims } from '../../ir/ops/nn.ts';
import { attrsOf, type CpuKernel, empty } from './kernel.ts';
import { broadcastIndex } from './util.ts';

/**
 * HF rotary embedding (rotate_half). x [B, H, S, D], positions i32 [S] or [B, S].
 * inv_freq[i] = 1 / theta^(2i/D) for i < D/2; angle = (pos / scaling_factor) * inv_freq[i],
 * used for both halves (HF: emb = cat(freqs, freqs)):
 *   out[i]       = x[i] cos - x[i + D/2] sin
 *   out[i + D/2] = x[i + D/2] cos + x[i] sin
 * `inverse` uses -sin (the transposed rotation, for the VJP). Angles, cos and sin are
 * computed in f64 (HF computes them in f32: expect ~1e-4 differences at positions in the
 * thousands); only the result is rounded to the run's precision.
 */
export const rope: CpuKernel = ([x, pos], ctx) => {
  const { theta, scaling_factor, inverse, layout_in, layout_out } = attrsOf<OpAttrs<'rope'>>(ctx);
  const [nb, nh, ns, d] = ropeDims(x.shape, layout_in);
  const half = d / 2;
  const invFreq = Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / d));
  const sinSign = inverse ? -1 : 1;
  const out = empty(ctx, x.dtype, ctx.node.type.shape);
  // Offset of row (b, h, s) in a tensor of `layout`.
  const row = (layout: 'bhsd' | 'bshd', b: number, h: number, s: number) =>
    (layout === 'bshd' ? (b * ns + s) * nh + h : (b * nh + h) * ns + s) * d;
  const cos = new Float64Array(half);
  const sin = new Float64Array(half);
  for (let b = 0; b < nb; b++) {
    for (let s = 0; s < ns; s++) {
      const p = pos.data[pos.shape.length === 2 ? b * ns + s : s] / scaling_factor;
      for (let i = 0; i < half; i++) {
        cos[i] = Math.cos(p * invFreq[i]);
        sin[i] = sinSign * Math.sin(p * invFreq[i]);
      }
      for (let h = 0; h < nh; h++) {
        const src = row(layout_in, b, h, s);
        const dst = row(layout_out, b, h, s);
        for (let i = 0; i < half; i++) {
          const x1 = x.data[src + i];
          const x2 = x.data[src + half + i];
          out.data[dst + i] = x1 * cos[i] - x2 * sin[i];
          out.data[dst + half + i] = x2 * cos[i] + x1 * sin[i];
        }
      }
    }
  }
  return out;
};

/**
 * Attention. q [B, Hq, S, D], k [B, Hkv, T, D], v [B, Hkv, T, Dv] -> [B, Hq, S, Dv].
 * GQA as HF repeat_kv: query head h reads kv head floor(h / (Hq / Hkv)).
 * scores = q k^T * scale (null -> 1/sqrt(D)) + mask (additive, broadcast to [B, Hq, S, T]);
 * causal: query i sees key j iff j <= i + (T - S) (the last query aligns with the last key).
 * Softmax over keys; a row with every key masked (-inf) gives zeros, not NaN.
 */
export const attention: CpuKernel = ([q, k, v, mask], ctx) => {
  const { causal, scale } = attrsOf<OpAttrs<'attention'>>(ctx);
  const [nb, hq, ns, d] = q.shape;
  const [, hkv, nt] = k.shape;
  const dv = v.shape[3];
  const group = hq / hkv;
  const sc = scale ?? 1 / Math.sqrt(d);
  const maskAt = mask ? broadcastIndex(mask.shape, [nb, hq, ns, nt]) : undefined;
  const out = empty(ctx, q.dtype, ctx.node.type.shape);
  const w = new Float64Array(nt);
  const acc = new Float64Array(dv);
  for (let b = 0; b < nb; b++) {
    for (let h = 0; h < hq; h++) {
      const kvBase = (b * hkv + Math.floor(h / group)) * nt;
      for (let i = 0; i < ns; i++) {
        const qBase = ((b * hq + h) * ns + i) * d;
        let m = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < nt; j++) {
          let s = Number.NEGATIVE_INFINITY;
          if (!causal || j <= i + (nt - ns)) {
            s = 0;
            for (let c = 0; c < d; c++) s += q.data[qBase + c] * k.data[(kvBase + j) * d + c];
            s *= sc;
            if (mask && maskAt) s += mask.data[maskAt[((b * hq + h) * ns + i) * nt + j]];
          }
          w[j] = s;
          if (s > m) m = s;
        }
        acc.fill(0);
        if (m !== Number.NEGATIVE_INFINITY) {
          let total = 0;
          for (let j = 0; j < nt; j++) total += w[j] = Math.exp(w[j] - m);
          for (let j = 0; j < nt; j++) {
            const pj = w[j] / total;
            for (let c = 0; c < dv; c++) acc[c] += pj * v.data[(kvBase + j) * dv + c];
          }
        }
        out.data.set(acc, ((b * hq + h) * ns + i) * dv);
      }
    }
  }
  return out;
};

/** Attention's probabilities from scores [..., S, T] (ir/ops/nn.ts attention_softmax). */
export const attention_softmax: CpuKernel = ([x], ctx) => {
  const { causal } = attrsOf<OpAttrs<'attention_softmax'>>(ctx);
  const [ns, nt] = x.shape.slice(-2);
  const out = empty(ctx, 'f32', x.shape);
  for (let r = 0; r < x.data.length / nt; r++) {
    const i = r % ns;
    const end = causal ? Math.max(0, Math.min(nt, i + nt - ns + 1)) : nt;
    let m = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < end; j++) m = Math.max(m, x.data[r * nt + j]);
    if (m === Number.NEGATIVE_INFINITY) continue;
    let total = 0;
    for (let j = 0; j < end; j++) total += Math.exp(x.data[r * nt + j] - m);
    for (let j = 0; j < end; j++) out.data[r * nt + j] = Math.exp(x.data[r * nt + j] - m) / total;
  }
  return out;
};
