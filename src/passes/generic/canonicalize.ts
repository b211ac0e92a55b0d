// canonicalize: algebraic identities that make later matching simpler. Each rule is
// one named row; all are value-preserving (exactly, not just up to rounding).
import type { Graph, Node } from '../../ir/graph.ts';
import { normAxis, sameShape } from '../../ir/shape.ts';
import type { PassDef } from '../pass.ts';
import { type Rule, rewrite } from '../rewrite/engine.ts';
import { cap } from '../rewrite/pattern.ts';

/** A const whose every element equals `v`. */
function constOf(v: number) {
  return {
    op: 'const',
    where: (n: Node) => {
      const val = n.attrs.value;
      return Array.isArray(val) ? val.every((x) => x === v) : val === v;
    },
  };
}

/** The result has the same type as input `i` (so dropping the op changes no shape). */
const keepsType = (i: number) => (n: Node, g: Graph) => {
  const x = g.node(n.inputs[i]);
  return x.type.dtype === n.type.dtype && sameShape(x.type.shape, n.type.shape);
};

const sameTranspose = (n: Node, g: Graph) => {
  const inner = g.node(n.inputs[0]);
  const r = n.type.shape.length;
  const a = [normAxis(Number(n.attrs.dim0), r), normAxis(Number(n.attrs.dim1), r)].sort();
  const b = [normAxis(Number(inner.attrs.dim0), r), normAxis(Number(inner.attrs.dim1), r)].sort();
  return a[0] === b[0] && a[1] === b[1];
};

export const canonicalizeRules: readonly Rule[] = [
  [{ op: 'scale', attrs: { factor: 1 }, inputs: [cap('x')] }, (m) => m.value('x'), 'scale-by-one'],
  [
    { op: 'scale', inputs: [{ op: 'scale', capture: 'inner', inputs: [cap('x')] }] },
    (m, b) => b.scale(m.value('x'), Number(m.node.attrs.factor) * Number(m.get('inner').attrs.factor)),
    'scale-of-scale',
  ],
  [{ op: 'reshape', where: keepsType(0), inputs: [cap('x')] }, (m) => m.value('x'), 'reshape-to-same-shape'],
  [
    { op: 'reshape', inputs: [{ op: 'reshape', inputs: [cap('x')] }] },
    (m, b) => b.reshape(m.value('x'), [...m.node.type.shape]),
    'reshape-of-reshape',
  ],
  [
    { op: 'transpose', where: sameTranspose, inputs: [{ op: 'transpose', inputs: [cap('x')] }] },
    (m) => m.value('x'),
    'double-transpose',
  ],
  [
    { op: 'transpose', where: (n) => n.attrs.dim0 === n.attrs.dim1, inputs: [cap('x')] },
    (m) => m.value('x'),
    'transpose-same-axis',
  ],
  [
    { op: 'permute', where: (n) => (n.attrs.perm as number[]).every((p, i) => p === i), inputs: [cap('x')] },
    (m) => m.value('x'),
    'identity-permute',
  ],
  [{ op: 'cast', where: keepsType(0), inputs: [cap('x')] }, (m) => m.value('x'), 'cast-to-same-dtype'],
  [{ op: 'neg', inputs: [{ op: 'neg', inputs: [cap('x')] }] }, (m) => m.value('x'), 'double-negation'],
  [{ op: 'dropout', attrs: { p: 0 } }, (m) => m.inputs[0], 'dropout-p-zero'],
  [{ op: 'add', where: keepsType(0), inputs: [cap('x'), constOf(0)] }, (m) => m.value('x'), 'add-zero'],
  [{ op: 'add', where: keepsType(1), inputs: [constOf(0), cap('x')] }, (m) => m.value('x'), 'zero-add'],
  [{ op: 'sub', where: keepsType(0), inputs: [cap('x'), constOf(0)] }, (m) => m.value('x'), 'sub-zero'],
  [{ op: 'mul', where: keepsType(0), inputs: [cap('x'), constOf(1)] }, (m) => m.value('x'), 'mul-one'],
  [{ op: 'mul', where: keepsType(1), inputs: [constOf(1), cap('x')] }, (m) => m.value('x'), 'one-mul'],
  [{ op: 'div', where: keepsType(0), inputs: [cap('x'), constOf(1)] }, (m) => m.value('x'), 'div-one'],
];

export function canonicalize(g: Graph): Graph {
  return rewrite(g, canonicalizeRules).graph;
}

export const canonicalizePass: PassDef = {
  name: 'canonicalize',
  description: 'algebraic identities: scale by 1, same-shape reshape, double transpose, x+0, x*1, ...',
  run: (g, ctx) =>
    rewrite(g, canonicalizeRules, {
      onStep: ctx.trace ? (s) => ctx.log(`canonicalize: ${s.rule} at %${s.node} ${s.op}`) : undefined,
    }).graph,
};
