// `peftc export --format webgpu-ts`: compiles the inference graph (the model with its adapters,
// merged or not, 4-bit with --quant nf4) for each of a set of lengths, plans it as the WebGPU
// backend would (plan.ts), and writes a standalone package (emit.ts), all or nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import cliProgress from 'cli-progress';
import { LIMITS_WANTED } from '../../backends/webgpu/device.ts';
import { listKernels } from '../../backends/webgpu/kernel-list.ts';
import { writeDirAtomic } from '../../io/atomic.ts';
import { asOutput } from '../../io/fs-errors.ts';
import { bindParams } from '../../ir/weights.ts';
import { quantizeCheckpoint } from '../../models/bnb4bit.ts';
import { type OpenedModel, openModel, tokenizerOf } from '../../models/open.ts';
import { mergeAttached, prepareModel, withAdapters } from '../../models/prepare.ts';
import { runPipeline } from '../../passes/index.ts';
import { UsageError } from '../../util/errors.ts';
import type { ExportOptions } from '../format.ts';
import { writePackage } from './emit.ts';
import { graphPlan, PackageData } from './plan.ts';
import type { ModelManifest, Plan, PlanTarget } from './runtime/plan-types.ts';

export const QUANTS = ['none', 'nf4'] as const;
/** The longest length compiled (or the model's max_position_embeddings when smaller). */
export const MAX_EXPORT_LENGTH = 512;
/** The longest prefill chunk of the generate plans: DecodeSession's default `prefillChunk`. */
export const PREFILL_CHUNK = 64;
const TARGETS: Record<PlanTarget, { f16: boolean; software: boolean }> = {
  gpu: { f16: false, software: false },
  software: { f16: false, software: true },
};

/** Compiled lengths: powers of two up to the cap, and the cap itself. */
export function exportLengths(maxPositions: number): number[] {
  const cap = Math.max(1, Math.min(MAX_EXPORT_LENGTH, maxPositions));
  const out: number[] = [];
  for (let l = 1; l < cap; l *= 2) out.push(l);
  out.push(cap);
  return out;
}

/** An npm package name from the model's folder name. */
function packageName(model: string): string {
  const base = basename(resolve(model))
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '');
  return `${base || 'model'}-webgpu`;
}

/** The model to export: as given, or written to 4-bit NF4 first (peftc quantize's code). */
function openForExport(o: ExportOptions, quant: string, tmp: () => string): OpenedModel {
  if (quant === 'none') return openModel(o.model);
  const given = openModel(o.model);
  if (given.quantization)
    throw new UsageError(
      `--model ${o.model} is already 4-bit (${given.quantization}); drop --quant nf4 to export it as stored`,
    );
  if (!given.dir)
    throw new UsageError(`--quant nf4 needs --model to be a model directory, not the preset '${o.model}'`);
  const dir = join(tmp(), 'nf4');
  quantizeCheckpoint(given.dir, dir, { quantType: 'nf4', blocksize: 64, doubleQuant: false });
  return openModel(dir);
}

/** Dispatches of the graph before the serve phase's fusion (dropout off), for the kernel count. */
function unfusedDispatches(model: OpenedModel, seq: number, o: ExportOptions): number {
  let { graph, weights } = withAdapters(model, { batch: 1, seq }, o.adapter);
  if (o.merge) ({ graph, weights } = mergeAttached(graph, weights));
  graph = runPipeline(graph, [{ name: 'eval-mode' }], { weights }).graph;
  return listKernels(graph, TARGETS.gpu).dispatches.length;
}

/** One compiled graph of the package: a logits plan, or a KV-cache plan (`generate`). */
interface PlanJob {
  readonly seq: number;
  /** File name stem under plans/ (`<target>-<stem>.json`). */
  readonly stem: string;
  /** The cache length of a KV-cache graph (batch 1), absent for a logits graph. */
  readonly maxLen?: number;
}

/** The plans of every job and target, their kernels and weights in one PackageData. */
function planJobs(model: OpenedModel, jobs: readonly PlanJob[], o: ExportOptions) {
  const data = new PackageData();
  const plans: Record<PlanTarget, Plan[]> = { gpu: [], software: [] };
  const files: Record<PlanTarget, string[]> = { gpu: [], software: [] };
  // A bar on a terminal only (pipes and CI logs get the summary lines alone).
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
        {
          format: ' planning {bar} {value}/{total} graphs ({what})',
          stream: process.stderr,
          barsize: 20,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  const what = (j: PlanJob) => (j.maxLen ? `generate, ${j.seq} tokens` : `logits, ${j.seq} tokens`);
  bar?.start(jobs.length, 0, { what: what(jobs[0]) });
  try {
    for (const job of jobs) {
      bar?.increment(0, { what: what(job) });
      // The graph DecodeSession.create compiles for one row (prepareModel with kvCache), or logits'.
      const { graph, weights } = prepareModel(
        model,
        { batch: 1, seq: job.seq },
        { adapters: o.adapter, merge: o.merge, ...(job.maxLen ? { kvCache: { maxLen: job.maxLen } } : {}) },
      );
      const bound = bindParams(graph, weights);
      for (const target of Object.keys(TARGETS) as PlanTarget[]) {
        plans[target].push(graphPlan(graph, bound, TARGETS[target], data, { kv: !!job.maxLen }));
        files[target].push(`plans/${target}-${job.stem}.json`);
      }
      bar?.increment(1);
    }
  } finally {
    bar?.stop();
  }
  return { data, plans, files };
}

export async function runWebgpuTs(o: ExportOptions): Promise<string[]> {
  const quant = o.quant ?? 'none';
  if (!(QUANTS as readonly string[]).includes(quant))
    throw new UsageError(`--quant must be one of ${QUANTS.join(', ')}, got '${quant}'`);
  let tmpDir: string | undefined;
  const tmp = () => (tmpDir ??= mkdtempSync(join(tmpdir(), 'peftc-webgpu-ts-')));
  try {
    const model = openForExport(o, quant, tmp);
    const lengths = exportLengths(model.config.maxPositionEmbeddings);
    // Generation: the cache as long as the longest logits length, prefill chunks as DecodeSession's.
    const maxLen = lengths[lengths.length - 1];
    const chunks = exportLengths(Math.min(PREFILL_CHUNK, maxLen));
    const jobs: PlanJob[] = [
      ...lengths.map((seq) => ({ seq, stem: String(seq) })),
      ...chunks.map((seq) => ({ seq, stem: `kv${maxLen}-${seq}`, maxLen })),
    ];
    const { data, plans: all, files: allFiles } = planJobs(model, jobs, o);
    const split = <T>(r: Record<PlanTarget, T[]>, kv: boolean) =>
      Object.fromEntries(
        (Object.keys(r) as PlanTarget[]).map((t) => [
          t,
          kv ? r[t].slice(lengths.length) : r[t].slice(0, lengths.length),
        ]),
      ) as Record<PlanTarget, T[]>;
    const plans = split(all, false);
    const files = split(allFiles, false);
    const longest = lengths[lengths.length - 1];
    const tok = tokenizerOf(model);
    const eos = [
      ...new Set([...(model.config.eosTokenIds ?? []), ...(tok?.eosId !== undefined ? [tok.eosId] : [])]),
    ];
    const manifest: ModelManifest = {
      model: o.model,
      vocabSize: model.config.vocabSize,
      padId: 0,
      lengths,
      kernels: data.kernels.map((k) => k.file),
      plans: files,
      adapters: o.adapter ?? [],
      merged: !!o.merge,
      quant: quant as ModelManifest['quant'],
      limits: [...LIMITS_WANTED],
      dispatches: {
        fused: plans.gpu[plans.gpu.length - 1].dispatches.length,
        unfused: unfusedDispatches(model, longest, o),
      },
      generation: { maxLen, lengths: chunks, plans: split(allFiles, true), eos },
    };
    const name = packageName(o.model);
    asOutput('--out', o.out, () =>
      writeDirAtomic(o.out, (dir) => void writePackage(dir, { name, manifest, plans: all, data }), {
        replace: o.overwrite,
      }),
    );
    return [
      `wrote ${o.out}: package ${name}, ${data.kernels.length} WGSL kernels, ${lengths.length} lengths (${lengths[0]} to ${longest} tokens) x ${Object.keys(TARGETS).length} targets`,
      `  generate: a ${maxLen}-slot KV cache (batch 1), prefill chunks of ${chunks.join(', ')} tokens (1 = the decode plan)`,
      `  ${manifest.dispatches.fused} dispatches per run at ${longest} tokens (unfused graph: ${manifest.dispatches.unfused}); ${data.blobs.size} weight tensors${quant === 'nf4' ? ' (NF4)' : ''}`,
      `  cd ${o.out} && npm install && npm run build && node dist/cli.js logits --tokens <json> --out <file.safetensors>`,
      `  node dist/cli.js generate --tokens <json> [--max-new-tokens N] [--json]`,
    ];
  } finally {
    if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
  }
}
