// Feeds for a train-step graph in the benchmarks: a fixed pseudo-random batch, step k.
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
