// The train-step benchmarks' stated config and feeds: a fixed pseudo-random batch, step k.
import { type Tensor, tensor } from '../src/ir/tensor.ts';

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
