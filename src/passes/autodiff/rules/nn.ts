// VJPs of rope and attention. Attention's backward recomputes the probabilities (a
// scores matmul and one attention_softmax; nothing of the forward kernel is kept), masking
// exactly as the CPU reference does: causal keys and -inf mask entries get weight 0, and
// a row with no visible key gives zeros.
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { unbroadcast } from '../helpers.ts';
import { attrsOf, none, type VjpRule, vjp } from '../rule.ts';

/** [B, Hkv, T, D] -> [B, Hkv*G, T, D]: kv head h serves query heads [h*G, (h+1)*G). */
function repeatHeads(b: GraphBuilder, x: Value, group: number): Value {
  if (group === 1) return x;
  const [nb, hkv, t, d] = x.type.shape;
  const wide = b.broadcastTo(b.reshape(x, [nb, hkv, 1, t, d]), [nb, hkv, group, t, d]);
  return b.reshape(wide, [nb, hkv * group, t, d]);
}

/** The transpose of repeatHeads: sum each kv head's group of query heads. */
function sumHeads(b: GraphBuilder, x: Value, group: number): Value {
  if (group === 1) return x;
  const [nb, hq, t, d] = x.type.shape;
  return b.sum(b.reshape(x, [nb, hq / group, group, t, d]), [2], false);
}

/**
 * Attention probabilities [B, Hq, S, T] with the CPU kernel's masking semantics: one
 * attention_softmax over the scores (causal keys and rows with nothing visible give 0).
 */
function probabilities(
  b: GraphBuilder,
  q: Value,
  kx: Value,
  mask: Value | undefined,
  causal: boolean,
  scale: number,
): Value {
  let scores = b.scale(b.matmul(q, kx, { transpose_b: true }), scale);
  if (mask) scores = b.add(scores, mask);
  return b.emit('attention_softmax', [scores], { causal });
}

export const nnVjps = {
  // The rotation is orthogonal: its transpose is the rotation by -angle.
  rope: vjp(
    (c) => {
      const attrs = attrsOf(c, 'rope');
      return [c.needs[0] ? c.b.rope(c.cot, c.inputs[1], { ...attrs, inverse: !attrs.inverse }) : null, null];
    },
    [1], // positions are integers
  ),
  attention: vjp((c) => {
    const { causal, scale: sc } = attrsOf(c, 'attention');
    const [q, k, v, mask] = c.inputs;
    const b = c.b;
    const group = q.type.shape[1] / k.type.shape[1];
    const scale = sc ?? 1 / Math.sqrt(q.type.shape[3]);
    const kx = repeatHeads(b, k, group);
    const vx = repeatHeads(b, v, group);
    const p = probabilities(b, q, kx, mask, causal, scale);
    const g = c.cot;
    const dv = c.needs[2] ? sumHeads(b, b.matmul(p, g, { transpose_a: true }), group) : null;
    const wantScores = c.needs[0] || c.needs[1] || c.needs[3];
    let ds: Value | null = null;
    if (wantScores) {
      // softmax VJP: dS = P (dP - sum(dP P)); masked entries have P = 0 and get 0.
      const dp = b.matmul(g, vx, { transpose_b: true });
      ds = b.mul(p, b.sub(dp, b.sum(b.mul(dp, p), [-1], true)));
    }
    const dsScaled = ds ? b.scale(ds, scale) : null;
    return [
      c.needs[0] && dsScaled ? b.matmul(dsScaled, kx) : null,
      c.needs[1] && dsScaled ? sumHeads(b, b.matmul(dsScaled, q, { transpose_a: true }), group) : null,
      dv,
      c.needs[3] && ds && mask ? unbroadcast(b, ds, mask.type.shape) : null,
    ];
  }),
  attention_softmax: none(
    'attention_softmax recomputes probabilities in the attention backward (no second order)',
  ),
} satisfies Record<string, VjpRule>;
