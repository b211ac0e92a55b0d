// VJPs of elementwise ops: the math ops' from their definitions (ir/ops/math.ts), the rest
// here. Binary ops reduce the cotangent back to each input's shape (broadcasting's transpose). Rules emit nodes only for inputs that need them.
import type { GraphBuilder, Value } from '../../../ir/builder.ts';
import { type LocalGrad, MATH_OPS, type MathDef, type MathOpName } from '../../../ir/ops/math.ts';
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

/** A math op's VJP from its definition (ir/ops/math.ts): local cotangents, broadcast axes summed away. */
function mathVjp(d: MathDef): VjpRule {
  if ('none' in d.grad) return none(d.grad.none);
  if (d.kind === 'unary') return unary(d.grad as LocalGrad);
  const [da, db] = d.grad as readonly [LocalGrad, LocalGrad];
  return binary(da, db);
}

const mathVjps = Object.fromEntries(
  (Object.values(MATH_OPS) as MathDef[]).map((d) => [d.name, mathVjp(d)]),
) as Record<MathOpName, VjpRule>;

export const elementwiseVjps = {
  ...mathVjps,
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
} satisfies Record<string, VjpRule>;
