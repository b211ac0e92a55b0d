// Patterns: plain data that matches a node by op, attrs, scope and input sub-patterns,
// capturing nodes by name (tinygrad's UPat, in TypeScript object literals):
//   { op: 'scale', attrs: { factor: 1 }, inputs: [{ capture: 'x' }] }
import type { Attrs, AttrValue, Graph, Node } from '../../ir/graph.ts';

export interface Pattern {
  /** An op name or a list of op names; absent matches any op. */
  readonly op?: string | readonly string[];
  /** Partial attrs (each given key deep-equal) or a predicate over all attrs. */
  readonly attrs?: { readonly [k: string]: AttrValue } | ((attrs: Attrs) => boolean);
  /** Exact scope, a RegExp (tested as written: anchor it yourself), or a predicate. */
  readonly scope?: string | RegExp | ((scope: string) => boolean);
  /** Sub-patterns for the inputs; when given, the input count must equal its length. */
  readonly inputs?: readonly Pattern[];
  /** Binds the matched node to this name; a name used twice must bind the same node. */
  readonly capture?: string;
  /** Any further condition (types, users, ...). */
  readonly where?: (node: Node, graph: Graph) => boolean;
}

/** Matches anything and captures it. */
export function cap(name: string, p: Pattern = {}): Pattern {
  return { ...p, capture: name };
}

export function deepEqual(a: AttrValue | undefined, b: AttrValue | undefined): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) {
    return typeof a === 'number' && typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b);
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as readonly AttrValue[];
    return a.length === bb.length && a.every((x, i) => deepEqual(x, bb[i]));
  }
  const ka = Object.keys(a);
  const bo = b as Record<string, AttrValue>;
  return (
    ka.length === Object.keys(bo).length &&
    ka.every((k) => deepEqual((a as Record<string, AttrValue>)[k], bo[k]))
  );
}

function matchInto(p: Pattern, n: Node, g: Graph, caps: Map<string, Node>): boolean {
  if (p.op !== undefined && (typeof p.op === 'string' ? p.op !== n.op : !p.op.includes(n.op))) return false;
  if (p.attrs !== undefined) {
    if (typeof p.attrs === 'function') {
      if (!p.attrs(n.attrs)) return false;
    } else {
      for (const [k, v] of Object.entries(p.attrs)) if (!deepEqual(n.attrs[k], v)) return false;
    }
  }
  if (p.scope !== undefined) {
    const s = p.scope;
    const ok = typeof s === 'string' ? s === n.scope : s instanceof RegExp ? s.test(n.scope) : s(n.scope);
    if (!ok) return false;
  }
  if (p.inputs !== undefined) {
    if (p.inputs.length !== n.inputs.length) return false;
    for (let i = 0; i < p.inputs.length; i++) {
      if (!matchInto(p.inputs[i], g.node(n.inputs[i]), g, caps)) return false;
    }
  }
  if (p.where && !p.where(n, g)) return false;
  if (p.capture !== undefined) {
    const prev = caps.get(p.capture);
    if (prev && prev.id !== n.id) return false;
    caps.set(p.capture, n);
  }
  return true;
}

/** The captures when `p` matches at `n`, else undefined. */
export function match(p: Pattern, n: Node, g: Graph): Map<string, Node> | undefined {
  const caps = new Map<string, Node>();
  return matchInto(p, n, g, caps) ? caps : undefined;
}
