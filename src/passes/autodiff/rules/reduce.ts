// VJPs of reductions, softmax-likes, norms and cross-entropy. Norms recompute their
// statistics from x (cheap, and nothing extra has to live until backward).
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { normAxes } from '../../../ir/shape.ts';
import { expandReduced, scalarLike } from '../helpers.ts';
import { attrsOf, none, type VjpRule, vjp } from '../rule.ts';

/** Sum of x over every axis but the last: the gradient of a per-feature weight. */
function sumToLast(b: GraphBuilder, x: Value): Value {
  const r = x.type.shape.length;
  return r === 1 ? x : b.sum(x, [...Array(r - 1).keys()], false);
}

export const reduceVjps = {
  sum: vjp((c) => {
    const { axes, keepdims } = attrsOf(c, 'sum');
    return [c.needs[0] ? expandReduced(c.b, c.cot, c.inputs[0].type.shape, axes, keepdims) : null];
  }),
  mean: vjp((c) => {
    if (!c.needs[0]) return [null];
    const { axes, keepdims } = attrsOf(c, 'mean');
    const shape = c.inputs[0].type.shape;
    const count = normAxes(axes, shape.length).reduce((p, a) => p * shape[a], 1);
    return [c.b.scale(expandReduced(c.b, c.cot, shape, axes, keepdims), 1 / count)];
  }),
  // Ties share the cotangent equally (as torch.amax).
  max: vjp((c) => {
    if (!c.needs[0]) return [null];
    const { axes, keepdims } = attrsOf(c, 'max');
    const x = c.inputs[0];
    const hit = c.b.equal(x, expandReduced(c.b, c.out, x.type.shape, axes, keepdims));
    const ties = c.b.sum(hit, axes, true);
    const g = expandReduced(c.b, c.cot, x.type.shape, axes, keepdims);
    return [c.b.mul(hit, c.b.div(g, ties))];
  }),
  // dx = y (g - sum(g y))
  softmax: vjp((c) => {
    if (!c.needs[0]) return [null];
    const { axis } = attrsOf(c, 'softmax');
    const dot = c.b.sum(c.b.mul(c.cot, c.out), [axis], true);
    return [c.b.mul(c.out, c.b.sub(c.cot, dot))];
  }),
  // dx = g - softmax(x) sum(g)
  log_softmax: vjp((c) => {
    if (!c.needs[0]) return [null];
    const { axis } = attrsOf(c, 'log_softmax');
    const total = c.b.sum(c.cot, [axis], true);
    return [c.b.sub(c.cot, c.b.mul(c.b.exp(c.out), total))];
  }),
  // y = xhat w, xhat = x r, r = rsqrt(mean(x^2) + eps):
  // dx = r (g w - xhat mean(g w xhat)), dw = sum(g xhat)
  rmsnorm: vjp((c) => {
    const { eps } = attrsOf(c, 'rmsnorm');
    const [x, w] = c.inputs;
    const b = c.b;
    const r = b.unary('rsqrt', b.add(b.mean(b.mul(x, x), [-1], true), scalarLike(b, eps, x)));
    const xhat = b.mul(x, r);
    const gw = c.needs[0] ? b.mul(c.cot, w) : null;
    return [
      gw ? b.mul(r, b.sub(gw, b.mul(xhat, b.mean(b.mul(gw, xhat), [-1], true)))) : null,
      c.needs[1] ? sumToLast(b, b.mul(c.cot, xhat)) : null,
    ];
  }),
  // dx = r (gw - mean(gw) - xhat mean(gw xhat)), dw = sum(g xhat), db = sum(g)
  layernorm: vjp((c) => {
    const { eps } = attrsOf(c, 'layernorm');
    const [x, w] = c.inputs;
    const b = c.b;
    const wantX = c.needs[0] || c.needs[1];
    let xhat: Value | null = null;
    let r: Value | null = null;
    if (wantX) {
      const xc = b.sub(x, b.mean(x, [-1], true));
      r = b.unary('rsqrt', b.add(b.mean(b.mul(xc, xc), [-1], true), scalarLike(b, eps, x)));
      xhat = b.mul(xc, r);
    }
    let dx: Value | null = null;
    if (c.needs[0] && xhat && r) {
      const gw = b.mul(c.cot, w);
      const centred = b.sub(gw, b.mean(gw, [-1], true));
      dx = b.mul(r, b.sub(centred, b.mul(xhat, b.mean(b.mul(gw, xhat), [-1], true))));
    }
    return [
      dx,
      c.needs[1] && xhat ? sumToLast(b, b.mul(c.cot, xhat)) : null,
      c.needs[2] ? sumToLast(b, c.cot) : null,
    ];
  }),
  // d/dlogits = (softmax - one_hot(label)) on counted rows, times g per row ('none'),
  // g ('sum') or g / counted rows ('mean'). Rows labelled ignore_index get 0.
  // One op: (softmax(logits) - one_hot(labels)) times each counted row's share of the
  // cotangent (ops/reduce.ts cross_entropy_grad), instead of a one_hot, a softmax and the
  // masks and sums around them.
  cross_entropy: vjp(
    (c) => {
      if (!c.needs[0]) return [null];
      const attrs = attrsOf(c, 'cross_entropy');
      return [c.b.emit('cross_entropy_grad', [c.inputs[0], c.inputs[1], c.cot], attrs), null];
    },
    [1], // labels are integer class ids
  ),
  cross_entropy_grad: none('cross_entropy_grad is itself a gradient (no second order)'),
} satisfies Record<string, VjpRule>;
