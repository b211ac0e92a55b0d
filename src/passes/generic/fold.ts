// fold: constant folding. A node whose inputs are all `const` is evaluated with the
// CPU reference interpreter (the spec) and replaced by a `const`. Results larger than
// `maxElements` stay unfolded so the IR stays printable.
import { z } from 'zod';
import { runGraph } from '../../backends/cpu/index.ts';
import { GraphBuilder } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { MapWeightStore } from '../../ir/weights.ts';
import type { PassDef } from '../pass.ts';
import { type Match, type Rule, rewrite } from '../rewrite/engine.ts';

const SKIP = new Set(['input', 'param', 'const', 'dropout']);

export const foldOptions = z.strictObject({ maxElements: z.number().int().positive().default(1024) });
export type FoldOptions = z.infer<typeof foldOptions>;

function evaluate(m: Match): number[] {
  const b = new GraphBuilder();
  const ins = m.node.inputs.map((id) => b.copy(m.graph.node(id), []));
  const out = b.copy(m.node, ins);
  const t = runGraph(b.build({ out }), {}, new MapWeightStore()).out;
  return Array.from(t.data);
}

export function foldRules(maxElements = 1024): Rule[] {
  const foldable = (n: Node, g: Graph) =>
    !SKIP.has(n.op) &&
    n.inputs.length > 0 &&
    n.type.dtype !== 'u4' &&
    numel(n.type.shape) <= maxElements &&
    n.inputs.every((i) => g.node(i).op === 'const');
  return [
    [
      { where: foldable },
      (m, b) => {
        const vals = evaluate(m);
        const uniform = vals.every((v) => Object.is(v, vals[0]));
        return b.const(uniform && vals.length > 0 ? vals[0] : vals, m.node.type.shape, m.node.type.dtype);
      },
      'fold-constant',
    ],
  ];
}

export function fold(g: Graph, opts: Partial<FoldOptions> = {}): Graph {
  return rewrite(g, foldRules(opts.maxElements)).graph;
}

export const foldPass: PassDef<FoldOptions> = {
  name: 'fold',
  description: 'evaluate ops whose inputs are all constants (with the CPU interpreter)',
  options: foldOptions,
  run: (g, ctx) =>
    rewrite(g, foldRules(ctx.options.maxElements), {
      onStep: ctx.trace ? (s) => ctx.log(`fold: ${s.rule} at %${s.node} ${s.op}`) : undefined,
    }).graph,
};
