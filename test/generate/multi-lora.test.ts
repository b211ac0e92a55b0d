// The multi-adapter runtime inside KV-cache decoding: a DecodeSession over slotted graphs
// (AdapterSlots.wrap + setRow), rows on different adapters (LoRA and DoRA, different ranks
// and targets) and the base model, prompts of different lengths; every prefill and decode
// step of every row equals that row decoded alone with its adapter through the ordinary
// path (DecodeSession.create with the adapter attached), on the cpu and on webgpu.
import { expect, it } from 'vitest';
import type { Backend } from '../../src/backends/backend.ts';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { argmax, DecodeSession } from '../../src/generate/index.ts';
import { prepareMultiLora } from '../../src/models/multi-lora.ts';
import { openModel } from '../../src/models/open.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { MODULES, makeAdapter } from '../models/multi-lora-cases.ts';

const model = openModel('examples/models/tiny-llama');
const maxLen = 16;
const STEPS = 3;
const prompts = [
  [256, 1, 2, 3, 4, 5],
  [256, 70, 80],
  [256, 9],
];

async function check(backend: Backend) {
  const dirs = [
    makeAdapter(model, { r: 2, targets: ['q_proj', 'v_proj', 'down_proj'], alpha: 8, seed: 21 }),
    makeAdapter(model, { r: 5, targets: ['o_proj', 'up_proj'], alpha: 16, seed: 22, dora: true }),
  ];
  const rowAdapters = [0, 1, -1];
  const { slots } = prepareMultiLora(
    model,
    { batch: 1, seq: 1 },
    { target_modules: MODULES, max_loras: 2, max_lora_rank: 8 },
  );
  const session = await DecodeSession.fromFactory(
    slots.wrap(backend),
    (shape, kvCache) => prepareMultiLora(model, shape, slots.layout.settings, { kvCache, slots }),
    model.config,
    { batch: prompts.length, maxLen },
  );
  for (const [i, d] of dirs.entries()) await slots.load(`a${i}`, d);
  rowAdapters.forEach((a, r) => {
    slots.setRow(r, a < 0 ? null : `a${a}`);
  });
  const alone = await Promise.all(
    rowAdapters.map((a) =>
      DecodeSession.create(backend, model, { batch: 1, maxLen, adapters: a < 0 ? [] : [dirs[a]] }),
    ),
  );
  let worst = 0;
  const close = (x: Float32Array, y: Float32Array) => {
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
  };
  let logits = await session.prefill(prompts.map((tokens, row) => ({ row, tokens })));
  for (const [r, s] of alone.entries())
    close(logits[r], (await s.prefill([{ row: 0, tokens: prompts[r] }]))[0]);
  for (let k = 0; k < STEPS; k++) {
    const next = logits.map(argmax);
    logits = await session.step(next.map((token, row) => ({ row, token })));
    for (const [r, s] of alone.entries()) close(logits[r], (await s.step([{ row: 0, token: next[r] }]))[0]);
  }
  expect(worst).toBeLessThan(1e-4);
  session.dispose();
  for (const s of alone) s.dispose();
}

it('decoding rows on different adapters in one session equals each alone (cpu)', async () => {
  await check(new CpuBackend());
}, 20_000);

await gpuSuite('multi-LoRA decoding on webgpu', ({ backend }) => {
  it('decoding rows on different adapters in one session equals each alone', async () => {
    await check(backend);
  }, 20_000);
});
