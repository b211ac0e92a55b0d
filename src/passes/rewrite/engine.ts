// The rewrite driver. Rules are data rows `[pattern, build, name?]`; `build` gets the
// match and a GraphBuilder (its scope set to the matched node's) and returns the
// replacement Value, or undefined to leave the node alone. A sweep visits every node
// once in order (first matching rule wins); the fixed-point driver repeats sweeps
// until none fires, and reports the rules still firing when it hits its limit.
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Graph, Node } from '../../ir/graph.ts';
import { match, type Pattern } from './pattern.ts';
import { rebuild, removeDead } from './rebuild.ts';

export interface Match {
  /** The matched node, in the graph being rewritten. */
  readonly node: Node;
  readonly graph: Graph;
  /** Captured nodes (source graph) by capture name. */
  readonly nodes: ReadonlyMap<string, Node>;
  /** The matched node's inputs, already rewritten. */
  readonly inputs: readonly Value[];
  /** The rewritten Value of a captured node (or of any already-visited node). */
  value(capture: string | Node): Value;
  /** A captured node (throws naming the capture when absent). */
  get(capture: string): Node;
}

export type Build = (m: Match, b: GraphBuilder) => Value | undefined;
export type Rule = readonly [pattern: Pattern, build: Build, name?: string];

export interface RewriteStep {
  readonly rule: string;
  readonly node: number;
  readonly op: string;
  readonly scope: string;
  readonly iteration: number;
}

export interface RewriteOptions {
  /** One sweep only (for rules whose output would match again, e.g. adapter injection). */
  readonly once?: boolean;
  /** Sweeps before giving up (default 50). */
  readonly maxIterations?: number;
  /** Called for each rewrite step. */
  readonly onStep?: (s: RewriteStep) => void;
}

export interface RewriteResult {
  readonly graph: Graph;
  readonly steps: readonly RewriteStep[];
}

export class RewriteError extends Error {
  override name = 'RewriteError';
}

export function ruleName(rule: Rule, index: number): string {
  const [p, , name] = rule;
  if (name) return name;
  const op = p.op === undefined ? 'any' : typeof p.op === 'string' ? p.op : p.op.join('|');
  return `rule${index}(${op})`;
}

function sweep(g: Graph, rules: readonly Rule[], iteration: number): RewriteResult {
  const steps: RewriteStep[] = [];
  const out = rebuild(g, (n, inputs, r) => {
    for (let i = 0; i < rules.length; i++) {
      const [pattern, build] = rules[i];
      const caps = match(pattern, n, g);
      if (!caps) continue;
      const m: Match = {
        node: n,
        graph: g,
        nodes: caps,
        inputs,
        value: (c) => r.value(typeof c === 'string' ? m.get(c).id : c.id),
        get: (c) => {
          const x = caps.get(c);
          if (!x) throw new RewriteError(`rule ${ruleName(rules[i], i)}: no capture named '${c}'`);
          return x;
        },
      };
      const v = build(m, r.b);
      if (v === undefined) continue;
      steps.push({ rule: ruleName(rules[i], i), node: n.id, op: n.op, scope: n.scope, iteration });
      return v;
    }
    return undefined;
  });
  return steps.length ? { graph: removeDead(out), steps } : { graph: g, steps };
}

/**
 * Applies `rules` until none fires (or once). Returns the input graph itself when no
 * rule matched anything; otherwise the rewritten graph with dead nodes removed.
 */
export function rewrite(g: Graph, rules: readonly Rule[], opts: RewriteOptions = {}): RewriteResult {
  const limit = opts.once ? 1 : (opts.maxIterations ?? 50);
  const all: RewriteStep[] = [];
  let current = g;
  for (let it = 0; it < limit; it++) {
    const r = sweep(current, rules, it);
    if (r.steps.length === 0) return { graph: current, steps: all };
    for (const s of r.steps) opts.onStep?.(s);
    all.push(...r.steps);
    current = r.graph;
    if (opts.once) return { graph: current, steps: all };
    if (it === limit - 1) {
      const counts = new Map<string, RewriteStep[]>();
      for (const s of r.steps) counts.set(s.rule, [...(counts.get(s.rule) ?? []), s]);
      const firing = [...counts]
        .map(
          ([rule, ss]) =>
            `${rule} (${ss.length}x, e.g. at %${ss[0].node} ${ss[0].op}${ss[0].scope ? ` @${ss[0].scope}` : ''})`,
        )
        .join(', ');
      throw new RewriteError(
        `rewrite did not converge after ${limit} iterations; still firing: ${firing}. ` +
          'A rule probably rebuilds what it matches; make its build return undefined when nothing changes.',
      );
    }
  }
  return { graph: current, steps: all };
}
