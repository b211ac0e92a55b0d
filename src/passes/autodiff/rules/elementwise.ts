// VJPs of elementwise ops: the math ops' from their definitions (ir/ops/math.ts), the rest
// here. A math op's local cotangents are reduced back to each input's shape (broadcasting's
// transpose). Rules emit nodes only for inputs that need them.
import type { Attrs } from '../../../ir/graph.ts';
import { type LocalGrad, MATH_OPS, type MathDef, type MathOpName } from '../../../ir/ops/math.ts';
import { unbroadcast } from '../helpers.ts';
import { attrsOf, none, type VjpRule, vjp } from '../rule.ts';

/** A math op's VJP from its definition: local cotangents, broadcast axes summed away. */
function mathVjp(d: MathDef): VjpRule {
  if ('none' in d.grad) return none(d.grad.none);
  // A ternary op's first input selects: it has no derivative.
  const first = d.kind === 'ternary' ? 1 : 0;
  const grads: readonly LocalGrad<Attrs>[] = d.kind === 'unary' ? [d.grad as LocalGrad<Attrs>] : d.grad;
  return vjp(
    (c) =>
      c.inputs.map((x, i) =>
        i >= first && c.needs[i] ? unbroadcast(c.b, grads[i - first](c, c.node.attrs), x.type.shape) : null,
      ),
    first ? [0] : [],
  );
}

const mathVjps = Object.fromEntries(
  (Object.values(MATH_OPS) as MathDef[]).map((d) => [d.name, mathVjp(d)]),
) as Record<MathOpName, VjpRule>;

export const elementwiseVjps = {
  ...mathVjps,
  // Float to float passes the cotangent back in the source dtype. Integer values never get a
  // cotangent (autodiff only differentiates float values), so no other case reaches here.
  cast: vjp((c) => [c.needs[0] ? c.b.cast(c.cot, c.inputs[0].type.dtype) : null]),
  // Same mask as forward: same seed and step input, so the kept elements match.
  dropout: vjp(
    (c) => {
      const { p, seed } = attrsOf(c, 'dropout');
      return [c.needs[0] ? c.b.dropout(c.cot, p, seed, c.inputs[1]) : null, null];
    },
    [1], // the step counter is an integer
  ),
} satisfies Record<string, VjpRule>;
