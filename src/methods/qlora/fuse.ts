// fuse-dequant: at lowering time (after autodiff), every product against a
// dequantized 4-bit weight becomes linear_4bit, which dequantizes inside the matmul,
// so no full-precision copy of a frozen weight is ever materialized:
//   linear(x, dequant_4bit(p, a)[, b])          -> linear_4bit(x, p, a[, b])
//   matmul(g, dequant_4bit(p, a))               -> linear_4bit(g, p, a, transpose)  (g W: dx of a linear)
//   matmul(g, dequant_4bit(p, a), transpose_b)  -> linear_4bit(g, p, a)             (g W^T)
// With double quantization (a = dequant_absmax(q, nested, map)) the absmax decode is
// fused too: linear_4bit(x, p, q, nested, map) reads the u8 codes, never an f32 absmax.
// The dequant_4bit nodes die once all their users are fused.

import type { Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { PassDef } from '../../passes/pass.ts';
import { type Match, type Rule, rewrite } from '../../passes/rewrite/engine.ts';
import type { Dequant4bitAttrs, DequantAbsmaxAttrs, NestedAbsmax } from './ops.ts';
import { linear4bit } from './ops.ts';

const dequant = { op: 'dequant_4bit', capture: 'w', where: (n: Node) => n.type.shape.length === 2 };

function storage(m: Match) {
  const w = m.get('w');
  const a = w.attrs as unknown as Dequant4bitAttrs;
  const [outF, inF] = a.shape;
  const am = m.graph.node(w.inputs[1]);
  const v = (id: number) => m.value(m.graph.node(id));
  const absmax: Value | NestedAbsmax =
    am.op === 'dequant_absmax'
      ? {
          q: v(am.inputs[0]),
          nested: v(am.inputs[1]),
          map: v(am.inputs[2]),
          attrs: am.attrs as unknown as DequantAbsmaxAttrs,
        }
      : m.value(am);
  return {
    packed: v(w.inputs[0]),
    absmax,
    attrs: { quant_type: a.quant_type, blocksize: a.blocksize, out_features: outF, in_features: inF },
  };
}

export const fuseDequantRules: readonly Rule[] = [
  [
    { op: 'linear', inputs: [{}, dequant], where: (n, g) => g.node(n.inputs[0]).type.dtype === 'f32' },
    (m, b) => {
      const s = storage(m);
      return linear4bit(b, m.inputs[0], s.packed, s.absmax, s.attrs);
    },
    'fuse-linear-4bit',
  ],
  [
    { op: 'linear', inputs: [{}, dequant, {}], where: (n, g) => g.node(n.inputs[0]).type.dtype === 'f32' },
    (m, b) => {
      const s = storage(m);
      return linear4bit(b, m.inputs[0], s.packed, s.absmax, s.attrs, m.inputs[2]);
    },
    'fuse-linear-4bit-bias',
  ],
  [
    {
      op: 'matmul',
      attrs: { transpose_a: false },
      inputs: [{ where: (n) => n.type.shape.length === 2 && n.type.dtype === 'f32' }, dequant],
    },
    (m, b) => {
      const s = storage(m);
      return linear4bit(b, m.inputs[0], s.packed, s.absmax, {
        ...s.attrs,
        transpose: !m.node.attrs.transpose_b,
      });
    },
    'fuse-matmul-4bit',
  ],
];

/** Rewrites products against dequant_4bit into linear_4bit. */
export function fuseDequant(g: Graph): Graph {
  return rewrite(g, fuseDequantRules).graph;
}

export const fuseDequantPass: PassDef = {
  name: 'fuse-dequant',
  description: 'fuse dequant_4bit into the products that read it (linear_4bit): no f32 copy of 4-bit weights',
  run: (g) => fuseDequant(g),
};
