// What a low-rank branch reads: the module's input, through the adapter's own dropout
// (`<M>.lora_dropout.<a>`, its mask seeded by that name and, when the graph has one, the
// `step` input, so the mask changes per step as torch's does). LoRA, AdaLoRA and the
// MALoRA mixture share it, so their masks agree for one module and adapter.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { Match } from '../../passes/rewrite/engine.ts';
import { seedOf } from '../../util/rng.ts';

/** A scalar u32/i32 graph input named `step`, if any: dropout masks then change per step. */
export function stepInput(g: Graph): Node | undefined {
  return g.inputs().find((n) => n.attrs.name === 'step' && n.type.shape.length === 0);
}

/** x through adapter `a`'s dropout on module M (x itself when p is 0). */
export function branchInput(
  b: GraphBuilder,
  m: Match,
  x: Value,
  at: { module: string; adapter: string; p: number; step?: Node },
): Value {
  if (at.p <= 0) return x;
  const scope = `${at.module}.lora_dropout.${at.adapter}`;
  const step = at.step;
  return b.atScope(scope, () => b.dropout(x, at.p, seedOf(scope), step && m.value(step)));
}
