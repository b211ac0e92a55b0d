// `peftc ir`: build a model's graph, run a pipeline on it, print the IR. Without
// --train/--eval the pipeline is the recipe's methods; with them it is the methods
// followed by that phase's passes, the very lists the trainer runs (train/setup.ts
// runPipelines, passes/phases.ts).
import type { Command } from 'commander';
import { listKernels } from '../../backends/webgpu/kernel-list.ts';
import type { Graph } from '../../ir/graph.ts';
import { printGraph } from '../../ir/printer.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { bindRecipe, loadRecipe, recipePipeline } from '../../methods/index.ts';
import { PRESETS } from '../../models/llama/index.ts';
import { type ModelInfo, type PipelineStep, phasePasses, runPipeline } from '../../passes/index.ts';
import { runPipelines } from '../../train/setup.ts';
import { UsageError } from '../errors.ts';
import { positiveInt } from '../options.ts';
import { formatKernels, formatStats } from './ir-views.ts';
import { thisMachineKernelTarget } from './kernel-target.ts';
import { commandModelGraph } from './model-graph.ts';

export interface IrOptions {
  readonly model: string;
  readonly recipe?: string;
  /** The train-step graph (methods, autodiff, checkpoint, optimizer, fusion). */
  readonly train?: boolean;
  /** The eval graph (methods, fusion, eval mode). */
  readonly eval?: boolean;
  readonly printAfter?: string;
  /** Same as printAfter 'diff'. */
  readonly diff?: boolean;
  readonly stats?: boolean;
  readonly kernels?: boolean;
  readonly seq: number;
  readonly batch: number;
  readonly loss?: boolean;
}

const MODES = ['all', 'change', 'diff'] as const;
type PrintAfter = (typeof MODES)[number] | string[];

function parsePrintAfter(o: IrOptions): PrintAfter | undefined {
  if (o.diff && o.printAfter !== undefined && o.printAfter !== 'diff')
    throw new UsageError(
      `--diff is --print-after diff; drop one of --diff and --print-after ${o.printAfter}`,
    );
  const v = o.diff ? 'diff' : o.printAfter;
  if (v === undefined || (MODES as readonly string[]).includes(v)) return v as PrintAfter | undefined;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The model graph as the trainer builds it (a model dir's 4-bit storage included). */
function modelFor(o: IrOptions, loss: boolean): { graph: Graph; weights?: WeightStore; info: ModelInfo } {
  // A phase graph is the trainer's: loss, no logits output.
  const build = o.train || o.eval ? { loss: true, logits: false } : { loss };
  return commandModelGraph(o.model, { batch: o.batch, seq: o.seq }, build);
}

/** The pipeline; with the model's graph `g`, the recipe is bound to it first (rank-rule's ranks). */
function pipelineFor(o: IrOptions, g?: Graph): { steps: PipelineStep[]; phase: string } {
  if (o.train && o.eval) throw new UsageError('--train and --eval pick one graph each; give one of them');
  if (o.train && !o.recipe)
    throw new UsageError('--train needs --recipe (the trainable params and the optimizer come from it)');
  if (!o.recipe) return { steps: o.eval ? phasePasses('eval') : [], phase: o.eval ? 'eval' : 'methods' };
  const loaded = loadRecipe(o.recipe);
  const recipe = g ? bindRecipe(loaded, g).recipe : loaded;
  if (!o.train && !o.eval) return { steps: recipePipeline(recipe), phase: 'methods' };
  const p = runPipelines(recipe);
  return { steps: [...p.methods, ...(o.train ? p.train : p.eval)], phase: o.train ? 'train' : 'eval' };
}

/** The command's work; `write` gets the output (stdout for the CLI). */
export async function runIr(o: IrOptions, write: (s: string) => void): Promise<void> {
  const printAfter = parsePrintAfter(o);
  let { steps, phase } = pipelineFor(o);
  const names = steps.map((s) => s.name);
  const unknown = Array.isArray(printAfter) ? printAfter.filter((p) => !names.includes(p)) : [];
  if (unknown.length)
    throw new UsageError(
      `--print-after: no pass named ${unknown.join(', ')} in the pipeline (passes: ${names.join(', ') || 'none without --recipe'}; or ${MODES.join(', ')})`,
    );
  const model = modelFor(o, !!o.loss);
  if (o.recipe) steps = pipelineFor(o, model.graph).steps;
  const line = (s: string) => write(`${s}\n`);
  if (printAfter || o.stats) line(`// pipeline (${phase}): ${names.join(' -> ') || '(no passes)'}`);
  const out = runPipeline(model.graph, steps, {
    verify: true,
    printAfter,
    stats: o.stats,
    log: line,
    weights: model.weights,
    model: model.info,
  });
  if (o.stats) write(formatStats(model.graph.nodes.length, out.stats ?? []));
  if (o.kernels) {
    const target = await thisMachineKernelTarget();
    write(formatKernels(listKernels(out.graph, target), target.name));
  }
  // The final IR, unless a view of its own was asked for.
  if (!o.stats && !o.kernels && (!printAfter || steps.length === 0)) write(printGraph(out.graph));
}

export function register(program: Command): void {
  program
    .command('ir')
    .description("print the IR of a model after a pipeline: the recipe's methods, or the train or eval phase")
    .requiredOption(
      '--model <preset|dir>',
      `a preset (${Object.keys(PRESETS).join(', ')}) or an HF model directory`,
    )
    .option('--recipe <file>', 'recipe JSON; without it the plain model is printed')
    .option(
      '--train',
      "the train-step graph: methods, autodiff, checkpoint, optimizer, fuse-dequant (the trainer's)",
    )
    .option('--eval', "the eval graph: methods, fuse-dequant, eval-mode (the trainer's evaluation)")
    .option(
      '--print-after <all|change|diff|passes>',
      'also print the IR after every pass, changed ones, only what each pass changed (diff), or after the named passes (comma-separated)',
    )
    .option('--diff', 'same as --print-after diff')
    .option('--stats', 'a table per pass: wall time, node count, op counts added/removed')
    .option(
      '--kernels',
      'the WebGPU dispatches the final graph makes (kernel, workgroups, node, cache key); runs nothing',
    )
    .option('--seq <n>', 'sequence length', positiveInt('--seq'), 8)
    .option('--batch <n>', 'batch size', positiveInt('--batch'), 1)
    .option('--loss', 'include the loss (input labels); implied by --train and --eval')
    .action((o: IrOptions) => runIr(o, (s) => process.stdout.write(s)));
}
