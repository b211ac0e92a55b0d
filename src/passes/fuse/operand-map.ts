// fuse-operand-map (issue 21): a one-input f32 elementwise node (one fusable op, or a
// fused_map of one input) whose every reader, through reshapes, is a matmul, linear or
// matmul_map reading it as operand a or b is applied by those products as they load the
// operand (matmul_map's `pre`), so it is no dispatch and no buffer of its own: LoRA's
// backward `scale(g, s)`, read by the products making B's gradient and the gradient
// through B. The readers read the node's input instead (a view of it where they read a
// reshape). Runs after fuse-dropout (an operand carries a dropout or a map, not both).
// CPU: the program through the ops' own kernels on the operand, then the product (bit for
// bit the unfused graph's); WebGPU: `pre_map` from the same emitters as fused_map.
import type { Graph, Node } from '../../ir/graph.ts';
import { stepOf } from '../../ir/ops/math.ts';
import type { PassDef } from '../pass.ts';
import { rewrite } from '../rewrite/engine.ts';
import { asMatmulMap, operandReaders, operandView } from './dropout.ts';
import { FUSABLE, type FusedStep } from './fused-map.ts';
import type { MatmulMapAttrs } from './matmul-map.ts';

/** The one-input program of `n`, if it is one (f32 in and out, same shape). */
function programOf(g: Graph, n: Node): FusedStep[] | undefined {
  if (n.inputs.length !== 1 || n.type.dtype !== 'f32') return undefined;
  const x = g.node(n.inputs[0]);
  if (x.type.dtype !== 'f32' || x.type.shape.join() !== n.type.shape.join()) return undefined;
  if (n.op === 'fused_map') return (n.attrs as unknown as { steps: FusedStep[] }).steps;
  return FUSABLE.has(n.op) ? [stepOf(n.op, [0], n.attrs)] : undefined;
}

interface Pre {
  readonly node: Node;
  readonly steps: FusedStep[];
  readonly operand: 0 | 1;
}

/** The graph with one-input maps applied in the loads of the products that read them (see the header). */
export function fuseOperandMap(g: Graph): Graph {
  const users = g.users();
  const outputs = new Set(g.outputs.map((o) => o.id));
  const found = new Map<number, Pre>();
  for (const n of g.nodes) {
    const steps = programOf(g, n);
    if (!steps || outputs.has(n.id)) continue;
    const readers = operandReaders(g, n, users, outputs, (r, operand) => {
      const a = asMatmulMap(r);
      return r.type.dtype === 'f32' && !found.has(r.id) && !a.pre && a.dropout?.at !== 'ab'[operand];
    });
    if (!readers?.size) continue;
    for (const [r, operand] of readers) found.set(r, { node: n, steps, operand });
  }
  if (found.size === 0) return g;
  return rewrite(
    g,
    [
      [
        { where: (n) => found.has(n.id) },
        (m, b) => {
          const r = m.node;
          const { node, steps, operand } = found.get(r.id) as Pre;
          const ins = [...m.inputs];
          ins[operand] = operandView(
            b,
            m.value(g.node(node.inputs[0])),
            g.node(r.inputs[operand]).type.shape,
            r.scope,
          );
          const a: MatmulMapAttrs = { ...asMatmulMap(r), pre: { at: operand ? 'b' : 'a', steps } };
          return b.emit('matmul_map', ins, a as never, r.scope);
        },
        'fuse-operand-map',
      ],
    ],
    { once: true },
  ).graph;
}

export const fuseOperandMapPass: PassDef = {
  name: 'fuse-operand-map',
  description:
    'apply one-input elementwise maps in the operand loads of the matmuls that read them (matmul_map pre)',
  run: (g) => fuseOperandMap(g),
};
