// An independent, deliberately plain LLaMA forward (float64 loops, one sequence),
// written from the HF modeling_llama.py semantics, to check the IR graph against.

import type { WeightStore } from '../../../src/ir/weights.ts';
import type { LlamaConfig } from '../../../src/models/llama/index.ts';

type M = number[][];

export function referenceLogits(c: LlamaConfig, w: WeightStore, ids: number[]): M {
  const W = (name: string): M => {
    const t = w.get(name)!;
    const [r, k] = t.shape;
    return Array.from({ length: r }, (_, i) => Array.from(t.data.subarray(i * k, (i + 1) * k)));
  };
  const V = (name: string): number[] => Array.from(w.get(name)!.data);
  const lin = (x: M, wt: M): M => x.map((row) => wt.map((wr) => wr.reduce((s, v, j) => s + v * row[j], 0)));
  const rms = (x: M, g: number[]): M =>
    x.map((row) => {
      const ms = row.reduce((s, v) => s + v * v, 0) / row.length;
      const r = 1 / Math.sqrt(ms + c.rmsNormEps);
      return row.map((v, j) => v * r * g[j]);
    });
  const S = ids.length;
  const D = c.headDim;
  const emb = W('model.embed_tokens.weight');
  let h: M = ids.map((id) => [...emb[id]]);
  const rope = (x: number[], pos: number): number[] => {
    const out = new Array<number>(D);
    for (let i = 0; i < D; i++) {
      const f = i % (D / 2);
      const ang = pos / c.ropeLinearFactor / c.ropeTheta ** ((2 * f) / D);
      const rot = i < D / 2 ? -x[i + D / 2] : x[i - D / 2];
      out[i] = x[i] * Math.cos(ang) + rot * Math.sin(ang);
    }
    return out;
  };
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const x = rms(h, V(`${p}.input_layernorm.weight`));
    const q = lin(x, W(`${p}.self_attn.q_proj.weight`));
    const k = lin(x, W(`${p}.self_attn.k_proj.weight`));
    const v = lin(x, W(`${p}.self_attn.v_proj.weight`));
    const attnOut: M = Array.from({ length: S }, () => new Array<number>(c.numHeads * D).fill(0));
    const group = c.numHeads / c.numKvHeads;
    for (let hq = 0; hq < c.numHeads; hq++) {
      const hk = Math.floor(hq / group);
      for (let i = 0; i < S; i++) {
        const qi = rope(q[i].slice(hq * D, hq * D + D), i);
        const scores: number[] = [];
        for (let j = 0; j <= i; j++) {
          const kj = rope(k[j].slice(hk * D, hk * D + D), j);
          scores.push(qi.reduce((s, a, d) => s + a * kj[d], 0) / Math.sqrt(D));
        }
        const m = Math.max(...scores);
        const e = scores.map((s) => Math.exp(s - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= i; j++) {
          for (let d = 0; d < D; d++) attnOut[i][hq * D + d] += (e[j] / z) * v[j][hk * D + d];
        }
      }
    }
    const o = lin(attnOut, W(`${p}.self_attn.o_proj.weight`));
    h = h.map((row, i) => row.map((a, j) => a + o[i][j]));
    const x2 = rms(h, V(`${p}.post_attention_layernorm.weight`));
    const gate = lin(x2, W(`${p}.mlp.gate_proj.weight`));
    const up = lin(x2, W(`${p}.mlp.up_proj.weight`));
    const act = gate.map((row, i) => row.map((g, j) => (g / (1 + Math.exp(-g))) * up[i][j]));
    const down = lin(act, W(`${p}.mlp.down_proj.weight`));
    h = h.map((row, i) => row.map((a, j) => a + down[i][j]));
  }
  const hn = rms(h, V('model.norm.weight'));
  return lin(hn, c.tieWordEmbeddings ? emb : W('lm_head.weight'));
}
