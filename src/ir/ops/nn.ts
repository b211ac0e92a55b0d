// Transformer building blocks kept whole until lowering: RoPE and attention.
import { z } from 'zod';
import { broadcastShapes, formatShape, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

/**
 * Where rope's input and output keep the heads axis: [batch, heads, seq, head_dim]
 * ('bhsd', the default) or [batch, seq, heads, head_dim] ('bshd': a projection's output
 * reshaped, before the transpose attention wants; fuse-rope-layout folds that transpose in).
 */
const ropeLayout = z.enum(['bhsd', 'bshd']);

/** [batch, heads, seq, head_dim] of a rope operand of `layout`. */
export function ropeDims(
  shape: readonly number[],
  layout: 'bhsd' | 'bshd',
): [number, number, number, number] {
  const [b, x, y, d] = shape;
  return layout === 'bshd' ? [b, y, x, d] : [b, x, y, d];
}

export const rope = defineOp({
  name: 'rope',
  arity: 2,
  attrs: z.strictObject({
    theta: z.number().positive().default(10000),
    /** Linear position scaling (rope_scaling type linear): positions are divided by this. */
    scaling_factor: z.number().positive().default(1),
    /** Rotate by -angle: the transpose of the rotation, used by the VJP. */
    inverse: z.boolean().default(false),
    /** The input's layout. */
    layout_in: ropeLayout.default('bhsd'),
    /** The output's layout. */
    layout_out: ropeLayout.default('bhsd'),
  }),
  infer: ([x, pos], a) => {
    if (x.shape.length !== 4)
      throw new ShapeError(
        `rope input must be [batch, ${a.layout_in === 'bshd' ? 'seq, heads' : 'heads, seq'}, head_dim], got ${formatShape(x.shape)}`,
      );
    const [b, h, s, d] = ropeDims(x.shape, a.layout_in);
    if (d % 2 !== 0) throw new ShapeError(`rope head_dim must be even, got ${d}`);
    if (pos.dtype !== 'i32') throw new ShapeError(`rope positions must be i32, got ${pos.dtype}`);
    const ok =
      (pos.shape.length === 1 && pos.shape[0] === s) ||
      (pos.shape.length === 2 && pos.shape[0] === b && pos.shape[1] === s);
    if (!ok)
      throw new ShapeError(`rope positions must be [${s}] or [${b},${s}], got ${formatShape(pos.shape)}`);
    return { dtype: x.dtype, shape: a.layout_out === 'bshd' ? [b, s, h, d] : [b, h, s, d] };
  },
  doc: 'HF rotary embedding (rotate_half): x*cos + rotate_half(x)*sin, inv_freq = theta^(-2i/d); input and output [B,H,S,D] or [B,S,H,D]',
});

export const attention = defineOp({
  name: 'attention',
  arity: [3, 4],
  attrs: z.strictObject({
    causal: z.boolean().default(true),
    /** Softmax scale; null means 1/sqrt(head_dim). */
    scale: z.number().nullable().default(null),
  }),
  infer: ([q, k, v, mask]) => {
    for (const [n, t] of [
      ['q', q],
      ['k', k],
      ['v', v],
    ] as const) {
      if (t.shape.length !== 4)
        throw new ShapeError(
          `attention ${n} must be [batch, heads, seq, head_dim], got ${formatShape(t.shape)}`,
        );
    }
    const [b, hq, s, d] = q.shape;
    const [bk, hk, t, dk] = k.shape;
    if (bk !== b || dk !== d)
      throw new ShapeError(`attention k ${formatShape(k.shape)} does not match q ${formatShape(q.shape)}`);
    if (v.shape[0] !== b || v.shape[1] !== hk || v.shape[2] !== t) {
      throw new ShapeError(`attention v ${formatShape(v.shape)} does not match k ${formatShape(k.shape)}`);
    }
    if (hq % hk !== 0)
      throw new ShapeError(`attention query heads ${hq} are not a multiple of kv heads ${hk} (GQA)`);
    if (mask) {
      const bs = broadcastShapes(mask.shape, [b, hq, s, t]);
      if (bs.length !== 4 || bs.some((x, i) => x !== [b, hq, s, t][i])) {
        throw new ShapeError(
          `attention mask ${formatShape(mask.shape)} does not broadcast to [${b},${hq},${s},${t}]`,
        );
      }
      if (mask.dtype !== q.dtype)
        throw new ShapeError(`attention mask must be additive ${q.dtype}, got ${mask.dtype}`);
    }
    return { dtype: q.dtype, shape: [b, hq, s, v.shape[3]] };
  },
  doc: 'softmax(q k^T * scale + mask [+ causal]) v; kv heads repeat for GQA; causal aligns the last query with the last key',
});

/**
 * Softmax over the last axis of attention scores [..., S, T] with attention's masking:
 * with `causal`, key j of query row i counts iff j <= i + T - S; keys that do not count,
 * and rows where nothing counts or every score is -inf, get probability 0.
 */
export const attentionSoftmax = defineOp({
  name: 'attention_softmax',
  arity: 1,
  attrs: z.strictObject({ causal: z.boolean().default(true) }),
  infer: ([x]) => {
    if (x.shape.length < 2 || x.dtype !== 'f32')
      throw new ShapeError(
        `attention_softmax needs f32 scores [..., S, T], got ${x.dtype}${formatShape(x.shape)}`,
      );
    return x;
  },
  doc: "attention's probabilities from its scores (causal keys and -inf rows give 0): the backward's recompute",
});
