// The multi-adapter runtime on WebGPU (the sgmv WGSL kernel inside the model): mixed
// batches equal each row run alone with its adapter on the same backend; and on a 4-bit
// base (the base linears stay linear_4bit) on both backends.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import type { Backend } from '../../src/backends/index.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { prepareMultiLora } from '../../src/models/multi-lora.ts';
import { openModel } from '../../src/models/open.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { caseArb, checkMixedBatch, MODULES } from './multi-lora-cases.ts';

const model = openModel('examples/models/tiny-llama');
const shape = { batch: 3, seq: 4 };
const options = { target_modules: MODULES, max_loras: 3, max_lora_rank: 8 };
const bnbDir = join(mkdtempSync(join(tmpdir(), 'peftc-multi-lora-4bit-')), 'bnb');
quantizeCheckpoint('examples/models/tiny-llama', bnbDir, {
  quantType: 'nf4',
  blocksize: 64,
  doubleQuant: true,
});
const bnb = openModel(bnbDir);

async function mixed(
  backend: Backend,
  m: typeof model,
  runs: number,
  cases = caseArb({ maxRank: 8, maxAdapters: 3, ...shape }),
) {
  const { graph, weights, slots } = prepareMultiLora(m, shape, options);
  const exe = await backend.compile(graph, bindParams(graph, weights));
  slots.attach(exe);
  try {
    await fc.assert(
      fc.asyncProperty(cases, async (c) => {
        await checkMixedBatch(backend, m, exe, slots, c, shape);
      }),
      { numRuns: runs },
    );
  } finally {
    exe.dispose();
  }
  return graph;
}

it('4-bit base on the cpu: the base linears stay linear_4bit; mixed batches equal rows alone', async () => {
  const g = await mixed(new CpuBackend(), bnb, 8);
  expect(g.ofOp('linear_4bit').length).toBeGreaterThanOrEqual(2 * MODULES.length);
  expect(g.ofOp('linear').filter((n) => MODULES.some((m) => n.scope.endsWith(m)))).toHaveLength(0);
}, 20_000);

await gpuSuite('multi-LoRA runtime on webgpu', ({ backend }) => {
  it('each row of a mixed batch equals that request run alone with its adapter', async () => {
    await mixed(backend, model, 5);
  }, 20_000);

  it('on a 4-bit base too', async () => {
    await mixed(backend, bnb, 4);
  }, 20_000);
});
