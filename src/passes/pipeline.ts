// The pass manager: runs a list of named passes in order, threading the graph and
// the weights, with MLIR-style debugging hooks (verify after each pass, print the IR
// after all / changed / named passes, timings). A failure names the pass, the
// passes that ran before it, and shows the bad nodes.
import type { Graph } from '../ir/graph.ts';
import { printGraph } from '../ir/printer.ts';
import { contextAround, findProblems } from '../ir/verify.ts';
import type { WeightStore } from '../ir/weights.ts';
import { asResult, getPass, PassError } from './pass.ts';

export interface PipelineStep {
  readonly name: string;
  readonly options?: unknown;
}

export interface PipelineOptions {
  /** Run the verifier after every pass (default true). */
  readonly verify?: boolean;
  /** Print the IR after every pass, after passes that changed it, or after the named passes. */
  readonly printAfter?: 'all' | 'change' | readonly string[];
  /** Collect per-pass wall time (always returned; also logged when true). */
  readonly timings?: boolean;
  /** Log every rewrite step (rule name, node, scope). */
  readonly trace?: boolean;
  /** Where printAfter, timings and trace lines go (default: stderr). */
  readonly log?: (s: string) => void;
  readonly weights?: WeightStore;
}

export interface PipelineResult {
  readonly graph: Graph;
  /** The weights after the pipeline (the given store unless a pass changed weights). */
  readonly weights?: WeightStore;
  readonly timings: readonly { readonly pass: string; readonly ms: number }[];
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
    let options: unknown = step.options ?? {};
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
      out = asResult(def.run(current, { options, weights, log, trace: opts.trace ?? false }), weights);
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
    const pa = opts.printAfter;
    if (pa) {
      const changed = out.graph !== current && printGraph(out.graph) !== printGraph(current);
      if (pa === 'all' || (pa === 'change' && changed) || (Array.isArray(pa) && pa.includes(step.name))) {
        log(`// IR after ${step.name}${changed ? '' : ' (unchanged)'}\n${printGraph(out.graph)}`);
      }
    }
    current = out.graph;
    weights = out.weights;
    done.push(step.name);
  }
  return { graph: current, weights, timings };
}
