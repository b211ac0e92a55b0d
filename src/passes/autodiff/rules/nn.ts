// VJPs of rope and attention. Attention's backward recomputes the probabilities (a
// scores matmul and one attention_softmax; nothing of the forward kernel is kept), masking
// exactly as the CPU reference does: causal keys and -inf mask entries get weight 0, and
// a row with no visible key gives zeros.
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { unbroadcast } from '../helpers.ts';
import { attrsOf, none, type VjpRule, vjp } from '../rule.ts';

/**
 * GQA without repeating k and v: query head h = kvHead * G + g, so a [B, Hq, S, X] value
 * is the view [B, Hkv, G * S, X] (rows (g, s) of kv head kvHead, contiguous), and every
 * product of the backward is a matmul of such a view with k or v [B, Hkv, T, .]: the
 * sums over a kv head's query heads happen inside the matmul's reduction (dk, dv).
 */
const byKvHead = (b: GraphBuilder, x: Value, hkv: number) => {
  const [nb, hq, s, d] = x.type.shape;
  return hq === hkv ? x : b.reshape(x, [nb, hkv, (hq / hkv) * s, d]);
};
/** The inverse view: [B, Hkv, G * S, X] back to `like`'s [B, Hq, S] with X kept. */
const byQueryHead = (b: GraphBuilder, x: Value, like: Value) =>
  x.type.shape[1] === like.type.shape[1]
    ? x
    : b.reshape(x, [...like.type.shape.slice(0, 3), x.type.shape[3]]);

/**
 * Attention probabilities [B, Hq, S, T] with the CPU kernel's masking semantics: the
 * scores of every query head against its kv head, then one attention_softmax (causal keys
 * and rows with nothing visible give 0).
 */
function probabilities(
  b: GraphBuilder,
  q: Value,
  k: Value,
  mask: Value | undefined,
  causal: boolean,
  scale: number,
): Value {
  const hkv = k.type.shape[1];
  const flat = b.scale(b.matmul(byKvHead(b, q, hkv), k, { transpose_b: true }), scale);
  let scores = byQueryHead(b, flat, q);
  if (mask) scores = b.add(scores, mask);
  return b.emit('attention_softmax', [scores], { causal });
}

export const nnVjps = {
  // The rotation is orthogonal: its transpose is the rotation by -angle, from the output's
  // layout back to the input's.
  rope: vjp(
    (c) => {
      const attrs = attrsOf(c, 'rope');
      const back = { inverse: !attrs.inverse, layout_in: attrs.layout_out, layout_out: attrs.layout_in };
      return [c.needs[0] ? c.b.rope(c.cot, c.inputs[1], { ...attrs, ...back }) : null, null];
    },
    [1], // positions are integers
  ),
  attention: vjp((c) => {
    const { causal, scale: sc } = attrsOf(c, 'attention');
    const [q, k, v, mask] = c.inputs;
    const b = c.b;
    const hkv = k.type.shape[1];
    const scale = sc ?? 1 / Math.sqrt(q.type.shape[3]);
    const p = probabilities(b, q, k, mask, causal, scale);
    const g = c.cot;
    // [B, Hkv, G*S, .] views of the probabilities and the output's cotangent.
    const pk = byKvHead(b, p, hkv);
    const gk = byKvHead(b, g, hkv);
    const dv = c.needs[2] ? b.matmul(pk, gk, { transpose_a: true }) : null;
    const wantScores = c.needs[0] || c.needs[1] || c.needs[3];
    let ds: Value | null = null;
    if (wantScores) {
      // softmax VJP: dS = P (dP - sum(dP P)); masked entries have P = 0 and get 0.
      const dp = byQueryHead(b, b.matmul(gk, v, { transpose_b: true }), q);
      ds = b.mul(p, b.sub(dp, b.sum(b.mul(dp, p), [-1], true)));
    }
    const dsk = ds ? byKvHead(b, b.scale(ds, scale), hkv) : null;
    return [
      c.needs[0] && dsk ? byQueryHead(b, b.matmul(dsk, k), q) : null,
      c.needs[1] && dsk ? b.matmul(dsk, byKvHead(b, q, hkv), { transpose_a: true }) : null,
      dv,
      c.needs[3] && ds && mask ? unbroadcast(b, ds, mask.type.shape) : null,
    ];
  }),
  attention_softmax: none(
    'attention_softmax recomputes probabilities in the attention backward (no second order)',
  ),
} satisfies Record<string, VjpRule>;
