// Issue 6 "Loss: causal-LM cross-entropy with shifted labels and ignore index, as
// Hugging Face computes it": the model's `loss` output against an independent
// float64 computation from its own `logits` output, HF style:
//   shift_logits = logits[..., :-1, :], shift_labels = labels[..., 1:],
//   loss = mean over positions with label != -100 of -log_softmax(shift_logits)[label].
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../src/models/llama/index.ts';

/** Mean CE of position t's logits against the label at t + shift (HF: shift 1). */
function hfLoss(
  logits: ArrayLike<number>,
  labels: number[],
  B: number,
  S: number,
  V: number,
  shift = 1,
): number {
  let sum = 0;
  let count = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + shift < S; t++) {
      const label = labels[b * S + t + shift];
      if (label === -100) continue;
      const row = b * S * V + t * V;
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits[row + v]);
      let z = 0;
      for (let v = 0; v < V; v++) z += Math.exp(logits[row + v] - max);
      sum += -(logits[row + label] - max - Math.log(z));
      count++;
    }
  }
  return sum / count;
}

describe('causal-LM loss (audit, issue 6)', () => {
  const c = presetConfig('tiny');
  const w = randomLlamaWeights(c, 3);
  const B = 2;
  const S = 6;
  const ids = Array.from({ length: B * S }, (_, i) => (i * 37 + 5) % 256);

  function run(labels: number[]) {
    const g = buildLlama(c, { batch: B, seq: S }, { loss: true });
    return runGraph(
      g,
      {
        input_ids: tensor('i32', [B, S], ids),
        labels: tensor('i32', [B, S], labels),
        step: tensor('i32', [], [1]),
      },
      w,
      { precision: 'f64' },
    );
  }

  it('equals the HF shifted cross-entropy, ignoring -100 (including a row with no labels left)', () => {
    // Row 0: labels = ids with the prompt (first 3) masked; row 1: everything after
    // position 0 masked, so it contributes nothing (label at position 0 is never used).
    const labels = ids.map((id, i) => (i < 3 ? -100 : i >= S ? (i === S ? id : -100) : id));
    const out = run(labels);
    const want = hfLoss(out.logits.data, labels, B, S, c.vocabSize);
    expect(Math.abs(out.loss.data[0] - want)).toBeLessThan(1e-9);
    // Not the unshifted loss: the shift matters.
    const unshifted = hfLoss(out.logits.data, labels, B, S, c.vocabSize, 0);
    expect(Math.abs(out.loss.data[0] - unshifted)).toBeGreaterThan(1e-3);
  });

  it('labels equal to input_ids everywhere: mean over all B*(S-1) positions', () => {
    const out = run(ids);
    const want = hfLoss(out.logits.data, ids, B, S, c.vocabSize);
    expect(Math.abs(out.loss.data[0] - want)).toBeLessThan(1e-9);
  });
});
