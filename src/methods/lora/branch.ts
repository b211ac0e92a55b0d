// Finding LoRA branches in a graph. A branch is the structure inject.ts builds:
//   add(base, scale(linear(linear(dropout?(x), A), B)))         (linear modules)
//   add(base, scale(linear(embedding(transpose(A), ids), B)))   (embedding modules)
// identified by B's param name `<module>.lora_B.<adapter>.weight` (or
// `<module>.lora_embedding_B.<adapter>`). The scale may be gone (s = 1 after
// canonicalize). `base` may itself be another adapter's add: adapters stack.
import type { Graph, Node } from '../../ir/graph.ts';

export interface LoraBranch {
  /** The add joining base and branch. */
  readonly add: Node;
  readonly module: string;
  readonly adapter: string;
  readonly kind: 'linear' | 'embedding';
  readonly A: Node;
  readonly B: Node;
  readonly scale: number;
  /** The module's own op (linear / embedding), under any stacked adapters. */
  readonly base: Node;
}

const B_NAME = /^(.*)\.lora_(embedding_)?B\.([A-Za-z0-9_-]+)(\.weight)?$/;

export function loraParamNames(module: string, adapter: string, kind: 'linear' | 'embedding') {
  return kind === 'linear'
    ? { A: `${module}.lora_A.${adapter}.weight`, B: `${module}.lora_B.${adapter}.weight` }
    : { A: `${module}.lora_embedding_A.${adapter}`, B: `${module}.lora_embedding_B.${adapter}` };
}

/** The branch whose add is `n`, or undefined. */
export function branchAt(g: Graph, n: Node): LoraBranch | undefined {
  if (n.op !== 'add' || n.inputs.length !== 2) return undefined;
  let y = g.node(n.inputs[1]);
  let scale = 1;
  if (y.op === 'scale') {
    scale = Number(y.attrs.factor);
    y = g.node(y.inputs[0]);
  }
  if (y.op !== 'linear' || y.inputs.length !== 2) return undefined;
  const B = g.node(y.inputs[1]);
  const m = B.op === 'param' ? B_NAME.exec(String(B.attrs.name)) : null;
  if (!m) return undefined;
  const [, module, emb, adapter] = m;
  const h = g.node(y.inputs[0]);
  let A: Node | undefined;
  if (!emb && h.op === 'linear') A = g.node(h.inputs[1]);
  if (emb && h.op === 'embedding') {
    const t = g.node(h.inputs[0]);
    if (t.op === 'transpose') A = g.node(t.inputs[0]);
  }
  const kind = emb ? 'embedding' : 'linear';
  if (A?.op !== 'param' || A.attrs.name !== loraParamNames(module, adapter, kind).A) return undefined;
  let base = g.node(n.inputs[0]);
  while (base.op === 'add' && branchAt(g, base)) base = g.node(base.inputs[0]);
  return { add: n, module, adapter, kind, A, B, scale, base };
}

export function loraBranches(g: Graph): LoraBranch[] {
  const out: LoraBranch[] = [];
  for (const n of g.nodes) {
    const b = branchAt(g, n);
    if (b) out.push(b);
  }
  return out;
}

/** Adapter names present in the graph, in order of first appearance. */
export function adapterNames(g: Graph): string[] {
  return [...new Set(loraBranches(g).map((b) => b.adapter))];
}
