// The textual form of the IR. One node per line:
//   %3 = linear(%1, %2) {} : f32[1,8,64] @model.layers.0.self_attn.q_proj
// Attr values are JSON; `dtype` and `shape` of input/param/const are not printed
// because the type already says them (the parser restores them).
import type { Attrs, AttrValue, Graph, Node } from './graph.ts';

const SOURCE_OPS = new Set(['input', 'param', 'const']);
const BARE_SCOPE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
const BARE_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function printAttrValue(v: AttrValue): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(printAttrValue).join(', ')}]`;
  const entries = Object.entries(v as Record<string, AttrValue>);
  return `{${entries.map(([k, x]) => `${printKey(k)}=${printAttrValue(x)}`).join(', ')}}`;
}

function printKey(k: string): string {
  return BARE_KEY.test(k) ? k : JSON.stringify(k);
}

export function printAttrs(op: string, attrs: Attrs): string {
  const entries = Object.entries(attrs).filter(
    ([k]) => !(SOURCE_OPS.has(op) && (k === 'dtype' || k === 'shape')),
  );
  return `{${entries.map(([k, v]) => `${printKey(k)}=${printAttrValue(v)}`).join(', ')}}`;
}

export function printScope(scope: string): string {
  if (scope === '') return '';
  return ` @${BARE_SCOPE.test(scope) ? scope : JSON.stringify(scope)}`;
}

export function printNode(n: Node): string {
  const ins = n.inputs.map((i) => `%${i}`).join(', ');
  return `%${n.id} = ${n.op}(${ins}) ${printAttrs(n.op, n.attrs)} : ${n.type.dtype}[${n.type.shape.join(',')}]${printScope(n.scope)}`;
}

export function printGraph(g: Graph): string {
  const lines = ['graph {'];
  for (const n of g.nodes) lines.push(`  ${printNode(n)}`);
  const outs = g.outputs
    .map((o) => `${BARE_KEY.test(o.name) ? o.name : JSON.stringify(o.name)}=%${o.id}`)
    .join(', ');
  lines.push(`  return ${outs}`);
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
