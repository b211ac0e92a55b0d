// `peftc plan --model <dir|preset> --recipe <file> [--batch N] [--seq N] [--json]`: the
// device memory of the full training step by kind, its kernel and dispatch counts and the
// compile time (methods, autodiff, checkpoint, optimizer, fusion, memory planning), from
// the compiled graph of the real shapes. No weight is read or allocated: methods apply to
// the graph alone and the memory plan is the one the WebGPU executor follows
// (backends/webgpu/memory-plan.ts), so its bytes are the executor's.
import type { Command } from 'commander';
import type { KernelTarget } from '../../backends/webgpu/kernel-list.ts';
import { type MemoryKind, planMemory } from '../../backends/webgpu/memory-plan.ts';
import { planPaging } from '../../backends/webgpu/paging.ts';
import type { Graph } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { bindRecipe, loadRecipe } from '../../methods/index.ts';
import { quantizedBaseReport } from '../../methods/qlora/memory.ts';
import { PRESETS } from '../../models/llama/index.ts';
import { GRAD_PREFIX } from '../../passes/autodiff/index.ts';
import { runPipeline } from '../../passes/index.ts';
import { runPipelines } from '../../train/setup.ts';
import { positiveInt } from '../options.ts';
import { thisMachineKernelTarget } from './kernel-target.ts';
import { commandModelGraph } from './model-graph.ts';

export interface PlanOptions {
  readonly model: string;
  readonly recipe: string;
  readonly batch?: number;
  readonly seq?: number;
  readonly json?: boolean;
  /** Plan for a software adapter's kernels (lavapipe) or a hardware one's; default: this machine's adapter. */
  readonly target?: 'software' | 'hardware';
}

/** The report's kinds (the names) from the plan's finer ones. */
const KINDS: Record<MemoryKind, string> = {
  frozen: 'frozen_weights',
  trainable: 'adapters',
  gradients: 'gradients',
  optimizer: 'optimizer_states',
  activations: 'activations',
  inputs: 'activations',
  workspace: 'workspace',
  constants: 'workspace',
  uniforms: 'workspace',
};

export interface PlanReport {
  readonly model: string;
  readonly recipe: string;
  readonly batch: number;
  readonly seq: number;
  readonly target: string;
  readonly peak_bytes: number;
  readonly by_kind: Record<string, number>;
  readonly dispatches: number;
  readonly kernels: number;
  readonly compile_ms: number;
  readonly params: { readonly frozen: number; readonly trainable: number };
  readonly bits_per_param: number | null;
}

/**
 * Without weights the double-quant offset (bitsandbytes' nested_offset, a mean of the
 * absmax values) is unknown; it is one uniform of the kernel, so 0 plans the same
 * dispatches and buffers.
 */
function placeholderOffsets(g: Graph): Graph {
  return g.with(
    g.nodes.map((n) => {
      const a = n.attrs as { offset?: unknown; nested?: { offset?: unknown } | null };
      if (n.op === 'dequant_absmax' && a.offset === null) return { ...n, attrs: { ...n.attrs, offset: 0 } };
      if (n.op === 'linear_4bit' && a.nested && a.nested.offset === null)
        return { ...n, attrs: { ...n.attrs, nested: { ...a.nested, offset: 0 } } };
      return n;
    }),
  );
}

async function adapterTarget(o: PlanOptions): Promise<KernelTarget & { name: string }> {
  // A software adapter stages large matmuls in textures: at least WebGPU's default 8192 a side.
  if (o.target)
    return {
      f16: false,
      software: o.target === 'software',
      textureDimension: o.target === 'software' ? 8192 : undefined,
      name: `${o.target} adapter`,
    };
  return thisMachineKernelTarget();
}

/** Model params (as the model has them, before 4-bit packing) left frozen, and trainable params after the methods. */
function paramCounts(model: Graph, adapted: Graph): { frozen: number; trainable: number } {
  const trainableNames = new Set<string>();
  let trainable = 0;
  for (const p of adapted.params())
    if (p.attrs.role === 'trainable') {
      trainableNames.add(String(p.attrs.name));
      trainable += numel(p.type.shape);
    }
  let frozen = 0;
  for (const p of model.params())
    if (!trainableNames.has(String(p.attrs.name))) frozen += numel(p.type.shape);
  return { frozen, trainable };
}

export async function planStep(o: PlanOptions): Promise<PlanReport> {
  const recipe = loadRecipe(o.recipe);
  const batch = o.batch ?? recipe.batch_size ?? 1;
  const seq = o.seq ?? recipe.seq_len ?? 512;
  const target = await adapterTarget(o);
  const t0 = performance.now();
  const model = commandModelGraph(o.model, { batch, seq }, { loss: true, logits: false });
  // Entries that shape a later one (rank-rule) are bound to the model first, as the trainer does.
  const pipelines = runPipelines(bindRecipe(recipe, model.graph).recipe);
  const applied = runPipeline(model.graph, pipelines.methods, { log: () => {}, model: model.info });
  // The train phase pass by pass, to know which values autodiff made the gradients.
  let step = applied.graph;
  const gradients = new Set<number>();
  for (const pass of pipelines.train) {
    step = runPipeline(step, [pass], { log: () => {}, model: model.info }).graph;
    if (pass.name === 'autodiff')
      for (const out of step.outputs) if (out.name.startsWith(GRAD_PREFIX)) gradients.add(out.id);
  }
  step = placeholderOffsets(step);
  const { paged } = planPaging(step);
  const plan = planMemory(step, target, { paged, gradients, inPlaceAssigns: recipe.optimizer.per_layer });
  const compileMs = performance.now() - t0;
  const byKind: Record<string, number> = {};
  for (const k of Object.values(KINDS)) byKind[k] = 0;
  for (const [k, bytes] of Object.entries(plan.byKind)) byKind[KINDS[k as MemoryKind]] += bytes;
  const q = quantizedBaseReport(step);
  const kernels = new Set<string>();
  for (const n of plan.nodes)
    if (typeof n !== 'string') for (const s of n.steps) if (s.workgroups) kernels.add(s.desc.op);
  return {
    model: o.model,
    recipe: o.recipe,
    batch,
    seq,
    target: target.name,
    peak_bytes: plan.deviceBytes,
    by_kind: byKind,
    dispatches: plan.dispatches,
    kernels: kernels.size,
    compile_ms: Math.round(compileMs),
    params: paramCounts(model.graph, applied.graph),
    bits_per_param: q.params ? Number(q.bitsPerParameter.toFixed(4)) : null,
  };
}

function size(b: number): string {
  const [unit, div] = b >= 2 ** 30 ? ['GiB', 2 ** 30] : b >= 2 ** 20 ? ['MiB', 2 ** 20] : ['KiB', 2 ** 10];
  return `${(b / div).toFixed(2)} ${unit}`;
}

export function formatPlan(r: PlanReport): string {
  const lines = [
    `training step of ${r.model} with ${r.recipe}, batch ${r.batch} x seq ${r.seq}, kernels for ${r.target}`,
    `peak device memory: ${size(r.peak_bytes)} (${r.peak_bytes} bytes)`,
    ...Object.entries(r.by_kind).map(([k, b]) => `  ${k.padEnd(17)} ${size(b).padStart(12)}`),
    `params: ${r.params.frozen} frozen, ${r.params.trainable} trainable` +
      (r.bits_per_param !== null ? `; 4-bit base at ${r.bits_per_param} bits/param` : ''),
    `${r.dispatches} dispatches per step, ${r.kernels} distinct kernels; compiled and planned in ${r.compile_ms} ms`,
  ];
  return `${lines.join('\n')}\n`;
}

export async function runPlan(o: PlanOptions, write: (s: string) => void): Promise<PlanReport> {
  const r = await planStep(o);
  write(o.json ? `${JSON.stringify(r)}\n` : formatPlan(r));
  return r;
}

export function register(program: Command): void {
  program
    .command('plan')
    .description(
      'the training step of a recipe planned without weights: device memory by kind, dispatches, kernels, compile time',
    )
    .requiredOption(
      '--model <preset|dir>',
      `a preset (${Object.keys(PRESETS).join(', ')}) or an HF model directory (only its config and tensor headers are read)`,
    )
    .requiredOption('--recipe <file>', 'recipe JSON')
    .option('--batch <n>', "batch size (default: the recipe's batch_size, else 1)", positiveInt('--batch'))
    .option('--seq <n>', "sequence length (default: the recipe's seq_len, else 512)", positiveInt('--seq'))
    .option(
      '--target <software|hardware>',
      "plan a software (lavapipe) or hardware adapter's kernels; default: this machine's",
    )
    .option(
      '--json',
      'one JSON object: peak_bytes, by_kind, dispatches, kernels, compile_ms, params, bits_per_param',
    )
    .action(async (o: PlanOptions) => {
      await runPlan(o, (s) => process.stdout.write(s));
    });
}
