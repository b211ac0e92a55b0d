// The package's own test (`npm test` after `npm run build`): one row of logits per token,
// all finite, and the padding rule holds: a prefix run on a shorter compiled length gives the
// same logits as the same tokens at the front of a longer input (attention is causal).
// Generation: greedy picks the most likely token first, repeats, and stops on an eos id.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModel, MODEL } from './runner.ts';

test('logits: a row per token, finite, and the same for a prefix whatever the padding', async () => {
  const model = await loadModel();
  try {
    const V = MODEL.vocabSize;
    const n = Math.min(5, MODEL.lengths[MODEL.lengths.length - 1]);
    const ids = Array.from({ length: n }, (_, i) => (7 * i + 1) % V);
    const all = await model.logits(ids);
    assert.equal(all.length, n * V);
    assert.ok(all.every(Number.isFinite), 'logits are finite');
    const k = Math.max(1, n - 2);
    const prefix = await model.logits(ids.slice(0, k));
    let diff = 0;
    for (let i = 0; i < k * V; i++) diff = Math.max(diff, Math.abs(prefix[i] - all[i]));
    assert.ok(diff < 1e-4, `prefix logits differ by ${diff}`);
    await assert.rejects(model.logits([V]), /not a token id/);
  } finally {
    model.dispose();
  }
});

test("generate: greedy starts at the logits' argmax, repeats, and stops on an eos id", async (t) => {
  if (!MODEL.generation) return t.skip('exported without generate plans');
  const model = await loadModel();
  try {
    const V = MODEL.vocabSize;
    const ids = [1, 2, 3].map((i) => i % V);
    const rows = await model.logits(ids);
    const last = rows.subarray((ids.length - 1) * V);
    const a = await model.generate(ids, { maxNewTokens: 6 });
    // The KV-cache plans' kernels differ from the logits plan's: a near-tie may go either way.
    assert.ok(last[a.outputIds[0]] > Math.max(...last) - 1e-3, 'the first token is the most likely');
    assert.equal(a.finishReason, 'length');
    assert.equal(a.outputIds.length, 6);
    assert.deepEqual(await model.generate(ids, { maxNewTokens: 6 }), a);
    const stop = await model.generate(ids, { maxNewTokens: 6, eos: [a.outputIds[2]] });
    assert.equal(stop.finishReason, 'stop');
    assert.deepEqual(stop.outputIds, a.outputIds.slice(0, a.outputIds.indexOf(a.outputIds[2]) + 1));
  } finally {
    model.dispose();
  }
});
