// The train-step benchmarks' stated config and feeds: a fixed pseudo-random batch, step k.
import type { Executable } from '../src/backends/backend.ts';
import { type Tensor, tensor } from '../src/ir/tensor.ts';
import { type Column, num } from './table.ts';

export function stepFeeds(batch: number, seq: number): (k: number) => Record<string, Tensor> {
  const ids = tensor(
    'i32',
    [batch, seq],
    Array.from({ length: batch * seq }, (_, i) => (i * 7919) % 256),
  );
  return (k) => ({
    input_ids: ids,
    labels: ids,
    lr: tensor('f32', [], [1e-4]),
    step: tensor('i32', [], [k + 1]),
  });
}

/** Flags (node:util parseArgs) shared by the train-step benchmarks, defaulting to the stated config. */
export const STEP_BENCH_OPTIONS = {
  model: { type: 'string', default: 'examples/models/tiny-llama' },
  recipe: { type: 'string', default: 'examples/recipes/lora-tiny.json' },
  batch: { type: 'string', default: '4' },
  seq: { type: 'string', default: '64' },
} as const;

export interface StepTiming {
  readonly tokensPerS: number;
  readonly msPerStep: number;
}

/**
 * Mean wall time of `steps` training steps on fed batches 1..steps, after one warm-up
 * step (pipeline compilation, first touch) on batch 0; tokens/s = batch * seq / that.
 */
export async function timeSteps(
  exe: Executable,
  batch: number,
  seq: number,
  steps: number,
): Promise<StepTiming> {
  const feeds = stepFeeds(batch, seq);
  await exe.run({ feeds: feeds(0), outputs: ['loss'] });
  const t0 = performance.now();
  for (let k = 1; k <= steps; k++) await exe.run({ feeds: feeds(k), outputs: ['loss'] });
  const ms = (performance.now() - t0) / steps;
  return { tokensPerS: (batch * seq * 1000) / ms, msPerStep: ms };
}

export interface InterleavedRow {
  readonly name: string;
  readonly dispatches: number;
  readonly min: number;
  readonly median: number;
}

/** The table columns of interleavedSteps' rows after the step's name: dispatches, min and median ms. */
export function interleavedColumns(rounds: number, steps: number): Column<InterleavedRow>[] {
  return [
    { header: 'dispatches', legend: 'compute dispatches per step', cell: (r) => String(r.dispatches) },
    {
      header: 'min ms',
      legend: `fastest of ${rounds} interleaved rounds of ${steps} steps`,
      cell: (r) => num(r.min, 2),
    },
    { header: 'median ms', legend: 'median of those rounds', cell: (r) => num(r.median, 2) },
  ];
}

/** Steps of several compiled forms of one step, interleaved round by round: min and median ms per step of each. */
export async function interleavedSteps(
  variants: readonly {
    readonly name: string;
    readonly exe: Executable & { readonly stats: { dispatches: number } };
  }[],
  rounds: number,
  batch: number,
  seq: number,
  steps: number,
): Promise<InterleavedRow[]> {
  const ms = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let r = 0; r < rounds; r++)
    for (const v of variants) ms.get(v.name)?.push((await timeSteps(v.exe, batch, seq, steps)).msPerStep);
  return variants.map((v) => {
    const sorted = [...(ms.get(v.name) ?? [])].sort((x, y) => x - y);
    return {
      name: v.name,
      dispatches: v.exe.stats.dispatches,
      min: sorted[0],
      median: sorted[sorted.length >> 1],
    };
  });
}
