// The verifier: structural checks plus, per op, the op table's own checks (arity,
// attrs schema, type rule). Errors name the node, its scope, and show its neighbours.
import type { Graph, Node, TensorType } from './graph.ts';
import { getOp, hasOp } from './ops/index.ts';
import { printNode, printScope } from './printer.ts';
import { sameShape } from './shape.ts';

export interface Problem {
  /** Index of the offending node in graph order, or -1 for graph-level problems. */
  readonly at: number;
  readonly message: string;
}

export class VerifyError extends Error {
  override name = 'VerifyError';
  constructor(
    readonly problems: readonly Problem[],
    readonly context: string,
    where?: string,
  ) {
    const first = problems[0]?.message ?? 'no problem recorded';
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    super(`${where ? `${where}: ` : ''}IR verification failed: ${first}${more}\n${context}`);
  }
}

function arityOk(arity: number | readonly [number, number], n: number): boolean {
  return typeof arity === 'number' ? n === arity : n >= arity[0] && n <= arity[1];
}

function arityText(arity: number | readonly [number, number]): string {
  if (typeof arity === 'number') return `${arity}`;
  return arity[1] === Number.POSITIVE_INFINITY ? `at least ${arity[0]}` : `${arity[0]} to ${arity[1]}`;
}

/**
 * Nodes that checked clean, by their attrs object: the attrs parsed, the type inferred from
 * these input types. A pass's copy of an unchanged node (GraphBuilder.copySameTypes)
 * shares its attrs and type objects, and its inputs' types when they did not change, so
 * the verifier after each pass need not parse and infer it again: the 7B QLoRA plan
 * re-checked ~7,000 unchanged nodes after each of its 11 passes (~0.3 s of its ~2 s).
 * Nodes are immutable (passes build new ones), so a hit is the same check's answer.
 */
const checkedClean = new WeakMap<object, { op: string; type: TensorType; inputs: readonly TensorType[] }>();

export function checkNode(n: Node, typeOf: (id: number) => Node['type']): string | null {
  const inputs = n.inputs.map(typeOf);
  const hit = checkedClean.get(n.attrs);
  if (
    hit &&
    hit.op === n.op &&
    hit.type === n.type &&
    hit.inputs.every((t, i) => t === inputs[i]) &&
    hit.inputs.length === inputs.length
  )
    return null;
  const problem = checkNodeNow(n, inputs);
  if (problem === null) checkedClean.set(n.attrs, { op: n.op, type: n.type, inputs });
  return problem;
}

function checkNodeNow(n: Node, inputs: readonly TensorType[]): string | null {
  if (!hasOp(n.op)) return `unknown op '${n.op}'`;
  const def = getOp(n.op);
  if (!arityOk(def.arity, n.inputs.length))
    return `${n.op} takes ${arityText(def.arity)} inputs, got ${n.inputs.length}`;
  const parsed = def.attrs.safeParse(n.attrs);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return `${n.op} attrs: ${issue.path.length ? `${issue.path.join('.')}: ` : ''}${issue.message}`;
  }
  try {
    const t = def.infer(inputs, parsed.data);
    if (t.dtype !== n.type.dtype || !sameShape(t.shape, n.type.shape)) {
      return `${n.op} result should be ${t.dtype}[${t.shape.join(',')}] but the node says ${n.type.dtype}[${n.type.shape.join(',')}]`;
    }
  } catch (e) {
    return `${n.op}: ${(e as Error).message}`;
  }
  return null;
}

/** How messages name a node: `%3 (linear @model.layers.0.mlp.up_proj)`. */
export function nodeLabel(n: Node): string {
  return `%${n.id} (${n.op}${printScope(n.scope)})`;
}

/** All problems in a graph (empty when it is well formed). */
export function findProblems(g: Graph): Problem[] {
  const problems: Problem[] = [];
  const seen = new Map<number, Node>();
  const everywhere = new Set(g.nodes.map((n) => n.id));
  const names = new Map<string, number>();
  g.nodes.forEach((n, at) => {
    if (seen.has(n.id)) {
      problems.push({ at, message: `${nodeLabel(n)}: %${n.id} is defined twice` });
      return;
    }
    const bad = n.inputs.find((i) => !seen.has(i));
    if (bad !== undefined) {
      problems.push({
        at,
        message: everywhere.has(bad)
          ? `${nodeLabel(n)}: uses %${bad} before its definition (a cycle, or nodes out of order)`
          : `${nodeLabel(n)}: uses %${bad}, which is not defined anywhere (dangling input)`,
      });
      seen.set(n.id, n);
      return;
    }
    const msg = checkNode(n, (id) => seen.get(id)!.type);
    if (msg) problems.push({ at, message: `${nodeLabel(n)}: ${msg}` });
    if (n.op === 'param' || n.op === 'input') {
      const key = `${n.op}:${String(n.attrs.name)}`;
      if (names.has(key))
        problems.push({
          at,
          message: `${nodeLabel(n)}: ${n.op} name '${String(n.attrs.name)}' is already used by %${names.get(key)}`,
        });
      else names.set(key, n.id);
    }
    seen.set(n.id, n);
  });
  const outNames = new Set<string>();
  for (const o of g.outputs) {
    if (!everywhere.has(o.id))
      problems.push({ at: -1, message: `output '${o.name}' refers to %${o.id}, which is not defined` });
    if (outNames.has(o.name)) problems.push({ at: -1, message: `output name '${o.name}' is used twice` });
    outNames.add(o.name);
  }
  return problems;
}

/**
 * A few nodes around position `at` (the bad one marked with '>'), then the bad node's
 * inputs defined further away, since their types explain most shape errors.
 */
export function contextAround(g: Graph, at: number, radius = 2): string {
  if (at < 0 || at >= g.nodes.length)
    return `  outputs: ${g.outputs.map((o) => `${o.name}=%${o.id}`).join(', ')}`;
  const lo = Math.max(0, at - radius);
  const hi = Math.min(g.nodes.length - 1, at + radius);
  const lines: string[] = [];
  for (let i = lo; i <= hi; i++) lines.push(`${i === at ? '>' : ' '} ${printNode(g.nodes[i])}`);
  const far = new Set<number>();
  for (const id of g.nodes[at].inputs) {
    const pos = g.nodes.findIndex((n) => n.id === id);
    if (pos >= 0 && (pos < lo || pos > hi) && !far.has(pos)) far.add(pos);
  }
  if (far.size > 0) lines.push('  its inputs:');
  for (const pos of [...far].sort((a, b) => a - b)) lines.push(`    ${printNode(g.nodes[pos])}`);
  return lines.join('\n');
}

/** Throws a VerifyError naming the first bad node (with neighbours) when the graph is malformed. */
export function verify(g: Graph, where?: string): Graph {
  const problems = findProblems(g);
  if (problems.length > 0) throw new VerifyError(problems, contextAround(g, problems[0].at), where);
  return g;
}
