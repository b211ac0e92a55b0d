// VJPs of elementwise ops. Binary ops reduce the cotangent back to each input's
// shape (broadcasting's transpose). Rules emit nodes only for inputs that need them.
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { oneMinus, scalarLike, unbroadcast } from '../helpers.ts';
import { attrsOf, none, type VjpContext, type VjpRule, vjp } from '../rule.ts';

/** Builds dL/da and dL/db of a binary op from the broadcast-shaped local products. */
function binary(da: ((c: VjpContext) => Value) | null, db: ((c: VjpContext) => Value) | null): VjpRule {
  return vjp((c) => {
    const [a, b] = c.inputs;
    return [
      c.needs[0] && da ? unbroadcast(c.b, da(c), a.type.shape) : null,
      c.needs[1] && db ? unbroadcast(c.b, db(c), b.type.shape) : null,
    ];
  });
}

function unary(dx: (c: VjpContext, x: Value) => Value): VjpRule {
  return vjp((c) => [c.needs[0] ? dx(c, c.inputs[0]) : null]);
}

/** mask_a * g where a wins, half each on ties (as PyTorch's maximum/minimum). */
function tieSplit(b: GraphBuilder, win: Value, tie: Value, g: Value): Value {
  return b.mul(g, b.add(win, b.scale(tie, 0.5)));
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
const GELU_TANH_K = 0.044715;

/** d gelu / dx, exact: Phi(x) + x phi(x). Phi comes from the forward output (gelu = x Phi), 0.5 at x = 0. */
function geluExactGrad(b: GraphBuilder, x: Value, out: Value): Value {
  const isZero = b.equal(x, scalarLike(b, 0, x));
  const phiCdf = b.where(isZero, scalarLike(b, 0.5, x), b.div(out, b.add(x, isZero)));
  const pdf = b.scale(b.exp(b.scale(b.mul(x, x), -0.5)), INV_SQRT_2PI);
  return b.add(phiCdf, b.mul(x, pdf));
}

/** d gelu_tanh / dx = 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3k x^2), t = tanh(c (x + k x^3)). */
function geluTanhGrad(b: GraphBuilder, x: Value): Value {
  const x2 = b.mul(x, x);
  const inner = b.scale(b.add(x, b.scale(b.mul(x2, x), GELU_TANH_K)), SQRT_2_OVER_PI);
  const t = b.unary('tanh', inner);
  const dInner = b.scale(b.add(scalarLike(b, 1, x), b.scale(x2, 3 * GELU_TANH_K)), SQRT_2_OVER_PI);
  const left = b.scale(b.add(scalarLike(b, 1, x), t), 0.5);
  const right = b.mul(b.scale(x, 0.5), b.mul(oneMinus(b, b.mul(t, t)), dInner));
  return b.add(left, right);
}

export const elementwiseVjps = {
  add: binary(
    (c) => c.cot,
    (c) => c.cot,
  ),
  sub: binary(
    (c) => c.cot,
    (c) => c.b.neg(c.cot),
  ),
  mul: binary(
    (c) => c.b.mul(c.cot, c.inputs[1]),
    (c) => c.b.mul(c.cot, c.inputs[0]),
  ),
  div: binary(
    (c) => c.b.div(c.cot, c.inputs[1]),
    // d(a/b)/db = -(a/b)/b
    (c) => c.b.neg(c.b.div(c.b.mul(c.cot, c.out), c.inputs[1])),
  ),
  pow: binary(
    (c) => {
      const [a, e] = c.inputs;
      return c.b.mul(c.cot, c.b.mul(e, c.b.pow(a, c.b.sub(e, scalarLike(c.b, 1, e)))));
    },
    // d(a^e)/de = a^e log a (defined for a > 0)
    (c) => c.b.mul(c.b.mul(c.cot, c.out), c.b.unary('log', c.inputs[0])),
  ),
  maximum: binary(
    (c) => tieSplit(c.b, c.b.greater(c.inputs[0], c.inputs[1]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
    (c) => tieSplit(c.b, c.b.greater(c.inputs[1], c.inputs[0]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
  ),
  minimum: binary(
    (c) => tieSplit(c.b, c.b.greater(c.inputs[1], c.inputs[0]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
    (c) => tieSplit(c.b, c.b.greater(c.inputs[0], c.inputs[1]), c.b.equal(c.inputs[0], c.inputs[1]), c.cot),
  ),
  neg: unary((c) => c.b.neg(c.cot)),
  abs: unary((c, x) => c.b.mul(c.cot, c.b.sign(x))),
  exp: unary((c) => c.b.mul(c.cot, c.out)),
  log: unary((c, x) => c.b.div(c.cot, x)),
  sqrt: unary((c) => c.b.scale(c.b.div(c.cot, c.out), 0.5)),
  // d x^-1/2 = -1/2 x^-3/2 = -1/2 out^3
  rsqrt: unary((c) => c.b.mul(c.cot, c.b.scale(c.b.mul(c.out, c.b.mul(c.out, c.out)), -0.5))),
  relu: unary((c, x) => c.b.mul(c.cot, c.b.greater(x, scalarLike(c.b, 0, x)))),
  sigmoid: unary((c) => c.b.mul(c.cot, c.b.mul(c.out, oneMinus(c.b, c.out)))),
  tanh: unary((c) => c.b.mul(c.cot, oneMinus(c.b, c.b.mul(c.out, c.out)))),
  // silu' = s (1 + x (1 - s)), s = sigmoid(x)
  silu: unary((c, x) => {
    const s = c.b.unary('sigmoid', x);
    return c.b.mul(c.cot, c.b.mul(s, c.b.add(scalarLike(c.b, 1, x), c.b.mul(x, oneMinus(c.b, s)))));
  }),
  gelu: unary((c, x) => {
    const { approximate } = attrsOf(c, 'gelu');
    const d = approximate === 'tanh' ? geluTanhGrad(c.b, x) : geluExactGrad(c.b, x, c.out);
    return c.b.mul(c.cot, d);
  }),
  scale: unary((c) => c.b.scale(c.cot, attrsOf(c, 'scale').factor)),
  where: vjp(
    (c) => {
      const [cond, a, b] = c.inputs;
      const zero = scalarLike(c.b, 0, c.cot);
      return [
        null,
        c.needs[1] ? unbroadcast(c.b, c.b.where(cond, c.cot, zero), a.type.shape) : null,
        c.needs[2] ? unbroadcast(c.b, c.b.where(cond, zero, c.cot), b.type.shape) : null,
      ];
    },
    [0], // the condition selects; it has no derivative
  ),
  // Float to float passes the cotangent back in the source dtype. Integer values never get a
  // cotangent (autodiff only differentiates float values), so no other case reaches here.
  cast: unary((c, x) => c.b.cast(c.cot, x.type.dtype)),
  // Same mask as forward: same seed and step input, so the kept elements match.
  dropout: vjp(
    (c) => {
      const { p, seed } = attrsOf(c, 'dropout');
      return [c.needs[0] ? c.b.dropout(c.cot, p, seed, c.inputs[1]) : null, null];
    },
    [1], // the step counter is an integer
  ),
  sign: none('sign is piecewise constant: its derivative is zero almost everywhere'),
  greater: none('greater is a 0/1 mask: piecewise constant'),
  equal: none('equal is a 0/1 mask: piecewise constant'),
} satisfies Record<string, VjpRule>;
