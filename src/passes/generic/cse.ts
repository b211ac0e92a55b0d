// cse: merges nodes that compute the same value: same op, same (rewritten) inputs,
// same attrs and type. Decisions:
// - never merges `input` or `param` nodes (each is a distinct name in the interface);
// - dropout merges only with the same seed and p (attrs), i.e. the same mask;
// - scope is ignored (the first node's scope is kept) except for module ops that
//   methods target by scope (linear, embedding, attention): two modules stay two.
import type { Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import type { PassDef } from '../pass.ts';
import { rebuild, removeDead } from '../rewrite/rebuild.ts';

const NEVER = new Set(['input', 'param']);
const SCOPED = new Set(['linear', 'embedding', 'attention']);

function keyOf(n: Node, inputs: readonly Value[]): string {
  const scope = SCOPED.has(n.op) ? n.scope : '';
  return JSON.stringify([n.op, inputs.map((v) => v.id), n.attrs, n.type, scope]);
}

export function cse(g: Graph): Graph {
  const seen = new Map<string, Value>();
  let merged = 0;
  const out = rebuild(g, (n, inputs, r) => {
    if (NEVER.has(n.op)) return undefined;
    const key = keyOf(n, inputs);
    const prev = seen.get(key);
    if (prev) {
      merged++;
      return prev;
    }
    const v = r.b.copy(n, inputs);
    seen.set(key, v);
    return v;
  });
  return merged ? removeDead(out) : g;
}

export const csePass: PassDef = {
  name: 'cse',
  description: 'merge nodes computing the same value (never params, inputs, or dropouts with other seeds)',
  run: (g) => cse(g),
};
