// VJPs of rope and attention. Attention's backward recomputes the probabilities from
// matmul/softmax primitives (nothing of the forward kernel is kept), masking exactly
// as the CPU reference does: causal keys and -inf mask entries get weight 0, and a
// row with no visible key gives zeros.
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { scalarLike, unbroadcast } from '../helpers.ts';
import { attrsOf, type VjpRule, vjp } from '../rule.ts';

/** f32's lowest finite value: below every finite score, so it never wins a row max. */
const LOWEST = -3.4028234663852886e38;
/** Guards 0/0 in rows where every key is masked (their weights are all 0). */
const TINY = 1e-30;

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

/** 1 where query i may see key j (j <= i + T - S), else 0; [S, T] from two small index consts. */
function causalVisible(b: GraphBuilder, s: number, t: number, like: Value): Value {
  const rows = b.const(
    Array.from({ length: s }, (_, i) => i + t - s + 0.5),
    [s, 1],
    like.type.dtype,
  );
  const cols = b.const(
    Array.from({ length: t }, (_, j) => j),
    [1, t],
    like.type.dtype,
  );
  return b.greater(rows, cols);
}

/** Attention probabilities [B, Hq, S, T] with the CPU kernel's masking semantics. */
function probabilities(
  b: GraphBuilder,
  q: Value,
  kx: Value,
  mask: Value | undefined,
  causal: boolean,
  scale: number,
): Value {
  const [, , s] = q.type.shape;
  const t = kx.type.shape[2];
  let scores = b.scale(b.matmul(q, kx, { transpose_b: true }), scale);
  if (mask) scores = b.add(scores, mask);
  // Causal masking only matters when some query cannot see every key (s > 1 or t < s).
  const visible = causal && s > 1 ? causalVisible(b, s, t, q) : null;
  if (visible) scores = b.where(visible, scores, scalarLike(b, LOWEST, scores));
  const m = b.maximum(b.max(scores, [-1], true), scalarLike(b, LOWEST, scores));
  let e = b.exp(b.sub(scores, m));
  if (visible) e = b.mul(e, visible);
  const total = b.maximum(b.sum(e, [-1], true), scalarLike(b, TINY, e));
  return b.div(e, total);
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
} satisfies Record<string, VjpRule>;
