// What a pass changed: the nodes it added, removed or rewired, matched by content
// rather than by id (passes rebuild graphs and ids renumber).
//
// Matching walks the new graph in order. A node is unchanged when an unmatched old
// node has the same op, attrs, type and scope and reads the counterparts of its
// inputs. Failing that, an unmatched old node with the same op, attrs, type and scope
// is its counterpart but "changed" (it reads something else: e.g. the consumer of a
// linear that LoRA rerouted through its branch add). Either way the pair is recorded,
// so the nodes downstream of a change match exactly again and the diff stays small.
import type { Graph, Node } from '../ir/graph.ts';
import { printAttrs, printNode, printScope } from '../ir/printer.ts';

export interface GraphDiff {
  /** Nodes of the new graph with no counterpart in the old one. */
  readonly added: readonly Node[];
  /** Nodes of the old graph with no counterpart in the new one. */
  readonly removed: readonly Node[];
  /** Nodes of the new graph whose counterpart read other values. */
  readonly changed: readonly { readonly before: Node; readonly after: Node }[];
  /** Output names whose value is new, gone, or another value. */
  readonly outputs: { readonly added: string[]; readonly removed: string[]; readonly changed: string[] };
}

/** Op, attrs, result type and scope: what a node is, apart from what it reads. */
function localKey(n: Node): string {
  return `${n.op} ${printAttrs(n.op, n.attrs)} ${n.type.dtype}[${n.type.shape.join(',')}]${printScope(n.scope)}`;
}

class Buckets {
  private readonly map = new Map<string, number[]>();
  add(key: string, id: number): void {
    const list = this.map.get(key);
    if (list) list.push(id);
    else this.map.set(key, [id]);
  }
  /** The first id under `key` that `free` accepts, removed from the bucket. */
  take(key: string, free: (id: number) => boolean): number | undefined {
    const list = this.map.get(key);
    if (!list) return undefined;
    while (list.length && !free(list[0])) list.shift();
    return list.shift();
  }
}

export function diffGraphs(before: Graph, after: Graph): GraphDiff {
  const exact = new Buckets();
  const loose = new Buckets();
  for (const n of before.nodes) {
    const local = localKey(n);
    exact.add(`${local} <- ${n.inputs.join(',')}`, n.id);
    loose.add(local, n.id);
  }
  const counterpart = new Map<number, number>(); // after id -> before id
  const taken = new Set<number>();
  const free = (id: number) => !taken.has(id);
  const added: Node[] = [];
  const changed: { before: Node; after: Node }[] = [];
  for (const n of after.nodes) {
    const local = localKey(n);
    // An input with no counterpart makes an exact match impossible ('new' is no old id).
    const ins = n.inputs.map((i) => counterpart.get(i) ?? 'new').join(',');
    let old = exact.take(`${local} <- ${ins}`, free);
    const same = old !== undefined;
    old ??= loose.take(local, free);
    if (old === undefined) {
      added.push(n);
      continue;
    }
    taken.add(old);
    counterpart.set(n.id, old);
    if (!same) changed.push({ before: before.node(old), after: n });
  }
  const removed = before.nodes.filter((n) => !taken.has(n.id));
  const oldOut = new Map(before.outputs.map((o) => [o.name, o.id]));
  const newOut = new Map(after.outputs.map((o) => [o.name, o.id]));
  const outputs = {
    added: [...newOut.keys()].filter((k) => !oldOut.has(k)),
    removed: [...oldOut.keys()].filter((k) => !newOut.has(k)),
    changed: [...newOut]
      .filter(([k, id]) => oldOut.has(k) && counterpart.get(id) !== oldOut.get(k))
      .map(([k]) => k),
  };
  return { added, removed, changed, outputs };
}

export function isEmptyDiff(d: GraphDiff): boolean {
  const o = d.outputs;
  return (
    !d.added.length &&
    !d.removed.length &&
    !d.changed.length &&
    !o.added.length &&
    !o.removed.length &&
    !o.changed.length
  );
}

/**
 * The diff as text: `+` added and `-` removed nodes, `~` rewired ones (new form, then
 * `was` with the old inputs), then output changes. Ids are each graph's own.
 */
export function printDiff(d: GraphDiff): string {
  const lines = [
    `// ${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed`,
    ...d.removed.map((n) => `- ${printNode(n)}`),
    ...d.added.map((n) => `+ ${printNode(n)}`),
    ...d.changed.map(
      ({ before, after }) =>
        `~ ${printNode(after)}\n    was %${before.id} reading (${before.inputs.map((i) => `%${i}`).join(', ')})`,
    ),
  ];
  const o = d.outputs;
  if (o.added.length) lines.push(`+ return ${o.added.join(', ')}`);
  if (o.removed.length) lines.push(`- return ${o.removed.join(', ')}`);
  if (o.changed.length) lines.push(`~ return ${o.changed.join(', ')}`);
  return `${lines.join('\n')}\n`;
}
