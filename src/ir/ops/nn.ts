// Transformer building blocks kept whole until lowering: RoPE and attention.
import { z } from 'zod';
import { broadcastShapes, formatShape, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

export const rope = defineOp({
  name: 'rope',
  arity: 2,
  attrs: z.strictObject({
    theta: z.number().positive().default(10000),
    /** Linear position scaling (rope_scaling type linear): positions are divided by this. */
    scaling_factor: z.number().positive().default(1),
    /** Rotate by -angle: the transpose of the rotation, used by the VJP. */
    inverse: z.boolean().default(false),
  }),
  infer: ([x, pos]) => {
    if (x.shape.length !== 4)
      throw new ShapeError(`rope input must be [batch, heads, seq, head_dim], got ${formatShape(x.shape)}`);
    const [b, , s, d] = x.shape;
    if (d % 2 !== 0) throw new ShapeError(`rope head_dim must be even, got ${d}`);
    if (pos.dtype !== 'i32') throw new ShapeError(`rope positions must be i32, got ${pos.dtype}`);
    const ok =
      (pos.shape.length === 1 && pos.shape[0] === s) ||
      (pos.shape.length === 2 && pos.shape[0] === b && pos.shape[1] === s);
    if (!ok)
      throw new ShapeError(`rope positions must be [${s}] or [${b},${s}], got ${formatShape(pos.shape)}`);
    return x;
  },
  doc: 'HF rotary embedding (rotate_half): x*cos + rotate_half(x)*sin, inv_freq = theta^(-2i/d)',
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

const attentionAttrs = {
  causal: z.boolean().default(true),
  /** Softmax scale; null means 1/sqrt(head_dim). */
  scale: z.number().nullable().default(null),
};

/** The mask check shared by the attention ops: additive, of q's dtype, broadcasting to the scores. */
function checkMask(
  op: string,
  mask: { dtype: string; shape: readonly number[] },
  scores: readonly number[],
  dtype: string,
) {
  const bs = broadcastShapes(mask.shape, scores);
  if (bs.length !== 4 || bs.some((x, i) => x !== scores[i]))
    throw new ShapeError(`${op} mask ${formatShape(mask.shape)} does not broadcast to [${scores}]`);
  if (mask.dtype !== dtype) throw new ShapeError(`${op} mask must be additive ${dtype}, got ${mask.dtype}`);
}

/**
 * The softmax statistics of attention's rows, for its backward (autodiff): per query row
 * [max visible score, sum of exp(score - max)], [B, Hq, S, 2]; a row with no visible key
 * has sum 0. Same scores, masking and GQA as `attention`.
 */
export const attentionStats = defineOp({
  name: 'attention_stats',
  arity: [2, 3],
  attrs: z.strictObject(attentionAttrs),
  infer: ([q, k, mask]) => {
    if (q.shape.length !== 4 || k.shape.length !== 4 || k.shape[3] !== q.shape[3] || q.shape[1] % k.shape[1])
      throw new ShapeError(
        `attention_stats q ${formatShape(q.shape)} and k ${formatShape(k.shape)} are not attention operands`,
      );
    const [b, hq, s] = q.shape;
    if (mask) checkMask('attention_stats', mask, [b, hq, s, k.shape[2]], q.dtype);
    return { dtype: 'f32', shape: [b, hq, s, 2] };
  },
  doc: "attention's row statistics (max score, sum of exponentials) for its fused backward",
});

/**
 * One gradient of attention (`wrt` q, k or v) from q, k, v, the output's cotangent dO,
 * attention_stats and D = rowsum(dO * O), without materialising the probabilities:
 * P = exp(score - max) / sum on visible keys, dS = P (dO . v - D), dq = scale dS k,
 * dk = scale dS^T q and dv = P^T dO summed over each kv head's query heads.
 */
export const attentionGrad = defineOp({
  name: 'attention_grad',
  arity: [6, 7],
  attrs: z.strictObject({ ...attentionAttrs, wrt: z.enum(['q', 'k', 'v']) }),
  infer: ([q, k, v, dout, stats, d, mask], a) => {
    const [b, hq, s] = q.shape;
    const t = k.shape[2];
    const want = [
      [dout, [b, hq, s, v.shape[3]]],
      [stats, [b, hq, s, 2]],
      [d, [b, hq, s, 1]],
    ] as const;
    for (const [x, shape] of want)
      if (x.shape.length !== 4 || x.shape.some((n, i) => n !== shape[i]))
        throw new ShapeError(`attention_grad operand ${formatShape(x.shape)} should be [${shape}]`);
    if (mask) checkMask('attention_grad', mask, [b, hq, s, t], q.dtype);
    return { dtype: q.dtype, shape: [...(a.wrt === 'q' ? q : a.wrt === 'k' ? k : v).shape] };
  },
  doc: "one of attention's input gradients, fused (autodiff's attention backward)",
});
