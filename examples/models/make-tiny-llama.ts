// Builds the bundled base model `examples/models/tiny-llama`: the `tiny` LLaMA preset
// (2 layers, hidden 64, GQA 4:2, byte-level vocabulary) pretrained from HF's init on
// examples/data/tiny-stories.txt with full-parameter AdamW on the CPU interpreter,
// saved in bf16 like a typical HF checkpoint. Deterministic (seeded).
//   node bin/run-ts.js examples/models/make-tiny-llama.ts [steps]
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { Graph } from '../../src/ir/graph.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { ByteTokenizer } from '../../src/models/tokenizer/index.ts';
import { Batcher, evalBatches, loadDataset } from '../../src/train/data/index.ts';
import { Progress } from '../../src/train/progress.ts';
import { lrAt } from '../../src/train/schedule.ts';
import { buildTrainStep } from '../../src/train/step.ts';

const steps = Number(process.argv[2] ?? 400);
const config = { ...presetConfig('tiny'), torchDtype: 'bfloat16' as const };
const seq = 64;
const batch = 8;
const dataset = loadDataset({
  data: 'examples/data/tiny-stories.txt',
  tokenizer: new ByteTokenizer(),
  seq,
  seed: 0,
});
const fwd0 = buildLlama(config, { batch, seq }, { loss: true, logits: false });
// Full pretraining: every weight trainable.
const forward = new Graph(
  fwd0.nodes.map((n) => (n.op === 'param' ? { ...n, attrs: { ...n.attrs, role: 'trainable' } } : n)),
  fwd0.outputs,
);
const optimizer = { type: 'adamw', lr: 3e-3, weight_decay: 0.01 } as const;
const step = buildTrainStep(forward, { optimizer, maxGradNorm: 1 });
const weights = bindParams(step, randomLlamaWeights(config, 0), 0);
const backend = new CpuBackend();
const exe = await backend.compile(step, weights);
const evalExe = await backend.compile(forward, weights);
const batcher = new Batcher(dataset.train, { batchSize: batch, seed: 0 });
const progress = new Progress({ total: steps });
for (let k = 0; k < steps; k++) {
  const b = batcher.batchAt(k);
  const lr = lrAt({ type: 'cosine', warmup_steps: 20 }, optimizer.lr, k, steps);
  const { loss } = await exe.run({
    feeds: {
      input_ids: b.input_ids,
      labels: b.labels,
      lr: tensor('f32', [], [lr]),
      step: tensor('i32', [], [k + 1]),
    },
    outputs: ['loss'],
  });
  progress.update({ step: k + 1, loss: loss.data[0], lr, tokens: b.tokens });
}
progress.stop();
const names = forward.params().map((p) => String(p.attrs.name));
for (const n of names) await evalExe.writeParam(n, await exe.readParam(n));
let sum = 0;
let count = 0;
for (const b of evalBatches(dataset.eval, batch, dataset.padId)) {
  const { loss } = await evalExe.run({
    feeds: { input_ids: b.input_ids, labels: b.labels },
    outputs: ['loss'],
  });
  sum += loss.data[0] * b.labelTokens;
  count += b.labelTokens;
}
console.log(
  `eval loss after ${steps} steps: ${(sum / count).toFixed(4)} (uniform over bytes would be ${Math.log(259).toFixed(4)})`,
);
const trained = new Map(await Promise.all(names.map(async (n) => [n, await exe.readParam(n)] as const)));
saveModelDir(
  'examples/models/tiny-llama',
  config,
  { get: (n) => trained.get(n), has: (n) => trained.has(n), names: () => trained.keys() },
  {
    _name_or_path: 'peftc/tiny-llama',
  },
);
console.log('wrote examples/models/tiny-llama');
