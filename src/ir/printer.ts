// The textual form of the IR. One node per line:
//   %3 = linear(%1, %2) {} : f32[1,8,64] @model.layers.0.self_attn.q_proj
// Attr values are JSON plus NaN, Infinity, -Infinity and -0 (masks use -Infinity;
// JSON would turn them into null or 0); `dtype` and `shape` of input/param/const are
// not printed because the type already says them (parser.ts restores them).
import type { Attrs, AttrValue, Graph, Node } from './graph.ts';

/** Ops whose `dtype`/`shape` attrs equal their type, so only the type is printed. */
export const SOURCE_OPS: ReadonlySet<string> = new Set(['input', 'param', 'const']);
export const BARE_SCOPE = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;
export const BARE_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

export function printAttrValue(v: AttrValue): string {
  if (typeof v === 'number') return printNumber(v);
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(printAttrValue).join(', ')}]`;
  return printEntries(Object.entries(v as Record<string, AttrValue>));
}

function printNumber(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
  return Object.is(v, -0) ? '-0' : JSON.stringify(v);
}

/** `{k=v, ...}`; keys holding undefined are left out, as JSON does. */
function printEntries(entries: [string, AttrValue][]): string {
  const kept = entries.filter(([, x]) => x !== undefined);
  return `{${kept.map(([k, x]) => `${printKey(k)}=${printAttrValue(x)}`).join(', ')}}`;
}

function printKey(k: string): string {
  return BARE_KEY.test(k) ? k : JSON.stringify(k);
}

export function printAttrs(op: string, attrs: Attrs): string {
  const entries = Object.entries(attrs).filter(
    ([k]) => !(SOURCE_OPS.has(op) && (k === 'dtype' || k === 'shape')),
  );
  return printEntries(entries);
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
