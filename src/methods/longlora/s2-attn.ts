// Shifted sparse attention (S2-Attn, LongLoRA, dvlab-research/LongLoRA
// llama_attn_replace.py), as a rewrite of causal `attention` nodes for training. RoPE and
// the GQA grouping happen before, as in the official code. With G = seq * group_size_ratio:
//   - the first half of the heads attends causally within groups of G tokens;
//   - the second half is shifted by G/2:
//       "roll"    (forward_noflashattn): q, k, v of those heads rolled by -G/2 along the
//                 sequence (wrap-around: the last group mixes the sequence's end with its
//                 start), grouped like the first half, the output rolled back by +G/2;
//       "no_wrap" (forward_flashattn, cu_seqlens offset by G/2): causal segments
//                 [0, G/2), [G/2, 3G/2), ..., [S - G/2, S) that never cross the ends.
// Groups become batch entries ([B, h, S, D] -> [B * S/G, h, G, D]), so each group's
// attention is a G x G problem: the cost is linear in S, the point of S2-Attn.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph } from '../../ir/graph.ts';
import { type Rule, rewrite } from '../../passes/rewrite/engine.ts';

export type S2Variant = 'roll' | 'no_wrap';

export class S2AttnError extends Error {
  override name = 'S2AttnError';
}

/** Causal attention within consecutive groups of `g` tokens (g divides the sequence). */
function grouped(b: GraphBuilder, q: Value, k: Value, v: Value, g: number, scale: number | null): Value {
  const split = (x: Value) => {
    const [B, h, S, D] = x.type.shape;
    const n = S / g;
    return b.reshape(b.permute(b.reshape(x, [B, h, n, g, D]), [0, 2, 1, 3, 4]), [B * n, h, g, D]);
  };
  const o = b.attention(split(q), split(k), split(v), undefined, { causal: true, scale });
  const [B, h, S] = q.type.shape;
  const n = S / g;
  const D = o.type.shape[3];
  return b.reshape(b.permute(b.reshape(o, [B, n, h, g, D]), [0, 2, 1, 3, 4]), [B, h, S, D]);
}

/** The no_wrap half: causal segments [0, G/2), then groups of G from G/2, then [S - G/2, S). */
function unwrapped(b: GraphBuilder, q: Value, k: Value, v: Value, g: number, scale: number | null): Value {
  const S = q.type.shape[2];
  const half = g / 2;
  const seg = (x: Value, from: number, to: number) => b.slice(x, 2, from, to);
  const parts: Value[] = [];
  // The two half-size end segments as one batch of 2.
  const ends = (x: Value) => b.concat([seg(x, 0, half), seg(x, S - half, S)], 0);
  const endOut = b.attention(ends(q), ends(k), ends(v), undefined, { causal: true, scale });
  const B = q.type.shape[0];
  parts.push(b.slice(endOut, 0, 0, B));
  if (S > g) {
    const mid = (x: Value) => seg(x, half, S - half);
    parts.push(grouped(b, mid(q), mid(k), mid(v), g, scale));
  }
  parts.push(b.slice(endOut, 0, B, 2 * B));
  return b.concat(parts, 2);
}

/**
 * S2-Attn for one attention: q [B, H, S, D], k/v [B, Hk, S, D] (GQA: H a multiple of
 * Hk). The heads split in halves; with GQA the halves of k/v go with them, which needs
 * Hk even (the official code repeats kv first, which is the same for that case).
 */
export function s2Attention(
  b: GraphBuilder,
  q: Value,
  k: Value,
  v: Value,
  o: { groupSizeRatio: number; variant: S2Variant; scale: number | null },
): Value {
  const [, H, S] = q.type.shape;
  const Hk = k.type.shape[1];
  const g = Math.trunc(S * o.groupSizeRatio);
  if (g < 2 || S % g !== 0 || g % 2 !== 0)
    throw new S2AttnError(
      `S2-Attn: the group size ${g} (seq ${S} x group_size_ratio ${o.groupSizeRatio}) must be even, at least 2, and divide the sequence length (as the official code requires); pick a seq or group_size_ratio that does`,
    );
  if (H % 2 !== 0 || Hk % 2 !== 0)
    throw new S2AttnError(
      `S2-Attn shifts half of the heads: ${H} query heads and ${Hk} key/value heads must both be even`,
    );
  const halves = (x: Value) => {
    const h = x.type.shape[1] / 2;
    return [b.slice(x, 1, 0, h), b.slice(x, 1, h, 2 * h)] as const;
  };
  const [qa, qb] = halves(q);
  const [ka, kb] = halves(k);
  const [va, vb] = halves(v);
  const first = grouped(b, qa, ka, va, g, o.scale);
  let second: Value;
  if (o.variant === 'roll') {
    // Python's -G // 2 with G even: -G/2.
    const r = (x: Value) => b.roll(x, -g / 2, 2);
    second = b.roll(grouped(b, r(qb), r(kb), r(vb), g, o.scale), g / 2, 2);
  } else second = unwrapped(b, qb, kb, vb, g, o.scale);
  return b.concat([first, second], 1);
}

/** Every causal, unmasked attention of `g` replaced by S2-Attn (training graphs). */
export function s2AttnRules(o: { groupSizeRatio: number; variant: S2Variant }): Rule[] {
  return [
    [
      { op: 'attention', where: (n) => n.inputs.length === 3 && n.attrs.causal === true },
      (m, b) => {
        const [q, k, v] = m.inputs;
        const scale = (m.node.attrs.scale as number | null | undefined) ?? null;
        return s2Attention(b, q, k, v, { ...o, scale });
      },
      's2-attn',
    ],
  ];
}

export function applyS2Attn(g: Graph, o: { groupSizeRatio: number; variant: S2Variant }): Graph {
  return rewrite(g, s2AttnRules(o), { once: true }).graph;
}
