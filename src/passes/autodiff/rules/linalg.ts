// VJPs of matmul and linear. Batch broadcasting of matmul is undone by unbroadcast.
import { unbroadcast } from '../helpers.ts';
import { attrsOf, type VjpRule, vjp } from '../rule.ts';

export const linalgVjps = {
  // C = op(A) op(B). dop(A) = G op(B)^T, dop(B) = op(A)^T G; a transposed operand takes
  // the transpose of that, written as one matmul with flipped flags.
  matmul: vjp((c) => {
    const { transpose_a: ta, transpose_b: tb } = attrsOf(c, 'matmul');
    const [a, b] = c.inputs;
    const g = c.cot;
    const da = !c.needs[0]
      ? null
      : ta
        ? c.b.matmul(b, g, { transpose_a: tb, transpose_b: true })
        : c.b.matmul(g, b, { transpose_b: !tb });
    const db = !c.needs[1]
      ? null
      : tb
        ? c.b.matmul(g, a, { transpose_a: true, transpose_b: ta })
        : c.b.matmul(a, g, { transpose_a: !ta });
    return [da ? unbroadcast(c.b, da, a.type.shape) : null, db ? unbroadcast(c.b, db, b.type.shape) : null];
  }),
  // y = x W^T + b over rows of x flattened to [N, in]: dx = G W, dW = G^T X, db = sum(G).
  linear: vjp((c) => {
    const [x, w] = c.inputs;
    const [outF, inF] = w.type.shape;
    const g2 = c.b.reshape(c.cot, [-1, outF]);
    return [
      c.needs[0] ? c.b.reshape(c.b.matmul(g2, w), [...x.type.shape]) : null,
      c.needs[1] ? c.b.matmul(g2, c.b.reshape(x, [-1, inF]), { transpose_a: true }) : null,
      c.needs[2] ? c.b.sum(g2, [0]) : null,
    ];
  }),
} satisfies Record<string, VjpRule>;
