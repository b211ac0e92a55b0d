// The pass manager: runs a list of named passes in order, threading the graph and
// the weights, with MLIR-style debugging hooks (verify after each pass, print the IR
// after all / changed / named passes, timings). A failure names the pass, the
// passes that ran before it, and shows the bad nodes.
import type { Graph } from '../ir/graph.ts';
import { printGraph } from '../ir/printer.ts';
import { contextAround, findProblems } from '../ir/verify.ts';
import type { WeightStore } from '../ir/weights.ts';
import { diffGraphs, isEmptyDiff, printDiff } from './graph-diff.ts';
import { asResult, getPass, type ModelInfo, PassError } from './pass.ts';

export interface PipelineStep {
  readonly name: string;
  readonly options?: unknown;
  /**
   * Options computed from the graph this step receives, instead of `options`: for
   * options that depend on what earlier passes made (the optimizer's param groups
   * name the trainable params the recipe's methods added). Errors it throws pass
   * through unwrapped (they are the user's, e.g. a param group that matches nothing).
   */
  readonly resolve?: (graph: Graph) => unknown;
}

/** What one pass did to the graph's size (PipelineOptions.stats). */
export interface PassStats {
  readonly pass: string;
  readonly ms: number;
  /** Nodes after the pass. */
  readonly nodes: number;
  /** Node count change per op (only ops whose count changed). */
  readonly opDelta: Readonly<Record<string, number>>;
}

export interface PipelineOptions {
  /** Run the verifier after every pass (default true). */
  readonly verify?: boolean;
  /**
   * Print the IR after every pass, after passes that changed it, or after the named
   * passes; 'diff': after every pass, only what it added, removed or rewired (graph-diff.ts).
   */
  readonly printAfter?: 'all' | 'change' | 'diff' | readonly string[];
  /** Count nodes per op after every pass (PipelineResult.stats). */
  readonly stats?: boolean;
  /** Collect per-pass wall time (always returned; also logged when true). */
  readonly timings?: boolean;
  /** Log every rewrite step (rule name, node, scope). */
  readonly trace?: boolean;
  /** Where printAfter, timings and trace lines go (default: stderr). */
  readonly log?: (s: string) => void;
  /** Facts about the model the graph came from (PassContext.model). */
  readonly model?: ModelInfo;
  readonly weights?: WeightStore;
}

export interface PipelineResult {
  readonly graph: Graph;
  /** The weights after the pipeline (the given store unless a pass changed weights). */
  readonly weights?: WeightStore;
  readonly timings: readonly { readonly pass: string; readonly ms: number }[];
  /** With PipelineOptions.stats: one entry per pass, in order. */
  readonly stats?: readonly PassStats[];
}

function opCounts(g: Graph): Map<string, number> {
  const m = new Map<string, number>();
  for (const n of g.nodes) m.set(n.op, (m.get(n.op) ?? 0) + 1);
  return m;
}

function opDelta(before: Map<string, number>, after: Map<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const op of new Set([...before.keys(), ...after.keys()])) {
    const k = (after.get(op) ?? 0) - (before.get(op) ?? 0);
    if (k !== 0) d[op] = k;
  }
  return d;
}

export class PipelineError extends PassError {
  override name = 'PipelineError';
}

function describeStep(i: number, name: string, before: readonly string[]): string {
  const prior = before.length ? `after ${before.join(' -> ')}` : 'as the first pass';
  return `pass '${name}' (step ${i + 1}, ${prior})`;
}

/** Accepts `['dce', {name: 'lora', options: {...}}]` as well as full steps. */
export function normalizePipeline(p: readonly (string | PipelineStep)[]): PipelineStep[] {
  return p.map((s) => (typeof s === 'string' ? { name: s } : s));
}

export function runPipeline(
  graph: Graph,
  pipeline: readonly (string | PipelineStep)[],
  opts: PipelineOptions = {},
): PipelineResult {
  const log = opts.log ?? ((s: string) => process.stderr.write(`${s}\n`));
  const steps = normalizePipeline(pipeline);
  const verifyEach = opts.verify ?? true;
  const timings: { pass: string; ms: number }[] = [];
  const stats: PassStats[] = [];
  let counts = opts.stats ? opCounts(graph) : undefined;
  let weights = opts.weights;
  let current = graph;
  const done: string[] = [];
  // Resolve every name first so a typo fails before any work is done.
  const defs = steps.map((s, i) => {
    try {
      return getPass(s.name);
    } catch (e) {
      throw new PipelineError(`step ${i + 1}: ${(e as Error).message}`, s.name);
    }
  });
  for (let i = 0; i < steps.length; i++) {
    const step = steps[i];
    const def = defs[i];
    const where = describeStep(i, step.name, done);
    let options: unknown = step.resolve ? step.resolve(current) : (step.options ?? {});
    if (def.options) {
      const parsed = def.options.safeParse(options);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const path = issue.path.length ? `${issue.path.join('.')}: ` : '';
        throw new PipelineError(`${where}: bad options: ${path}${issue.message}`, step.name);
      }
      options = parsed.data;
    }
    const t0 = performance.now();
    let out: ReturnType<typeof asResult>;
    try {
      out = asResult(
        def.run(current, { options, weights, log, trace: opts.trace ?? false, model: opts.model }),
        weights,
      );
    } catch (e) {
      throw new PipelineError(`${where} failed: ${(e as Error).message}`, step.name, { cause: e });
    }
    const ms = performance.now() - t0;
    timings.push({ pass: step.name, ms });
    if (opts.timings) log(`// ${step.name}: ${ms.toFixed(2)} ms`);
    if (verifyEach) {
      const problems = findProblems(out.graph);
      if (problems.length) {
        const shown = problems
          .slice(0, 3)
          .map((p) => `${p.message}\n${contextAround(out.graph, p.at)}`)
          .join('\n');
        throw new PipelineError(
          `${where} produced invalid IR (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n${shown}`,
          step.name,
        );
      }
    }
    if (counts) {
      const next = opCounts(out.graph);
      stats.push({ pass: step.name, ms, nodes: out.graph.nodes.length, opDelta: opDelta(counts, next) });
      counts = next;
    }
    const pa = opts.printAfter;
    if (pa === 'diff') {
      const d = diffGraphs(current, out.graph);
      log(`// diff after ${step.name}${isEmptyDiff(d) ? ' (unchanged)' : ''}`);
      if (!isEmptyDiff(d)) log(printDiff(d).trimEnd());
    } else if (pa) {
      const changed = out.graph !== current && printGraph(out.graph) !== printGraph(current);
      if (pa === 'all' || (pa === 'change' && changed) || (Array.isArray(pa) && pa.includes(step.name))) {
        log(`// IR after ${step.name}${changed ? '' : ' (unchanged)'}\n${printGraph(out.graph)}`);
      }
    }
    current = out.graph;
    weights = out.weights;
    done.push(step.name);
  }
  return { graph: current, weights, timings, ...(opts.stats ? { stats } : {}) };
}
