// Greedy decoding with the KV cache equals the argmax of full-recompute logits at every
// step, on both backends, for a base, an adapted (unmerged), a merged and a 4-bit model;
// rows of different lengths share one batch.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, Executable } from '../../src/backends/backend.ts';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import type { WebGpuExecutable } from '../../src/backends/webgpu/index.ts';
import { argmax, DecodeSession } from '../../src/generate/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { isKvParam } from '../../src/models/llama/index.ts';
import { type OpenedModel, openModel } from '../../src/models/open.ts';
import { prepareModel } from '../../src/models/prepare.ts';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { writeTinyModels } from '../cli/fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-gen-'));
const plain = join(dir, 'plain');
const bnb = join(dir, 'bnb');
const adapter = join(dir, 'adapter');
const prompts = [
  [256, 1, 2, 3, 4, 5, 6, 7, 8],
  [256, 70, 80],
];
const STEPS = 4;

beforeAll(() =>
  writeTinyModels(
    { plain, bnb, adapter },
    5,
    { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'up_proj'], scaleB: 5 },
    plain,
  ),
);

interface Case {
  readonly name: string;
  readonly model: () => OpenedModel;
  readonly adapters?: string[];
  readonly merge?: boolean;
}

const CASES: Case[] = [
  { name: 'base', model: () => openModel(plain) },
  { name: 'adapter', model: () => openModel(plain), adapters: [adapter] },
  { name: 'merged', model: () => openModel(plain), adapters: [adapter], merge: true },
  { name: '4-bit', model: () => openModel(bnb) },
  { name: '4-bit with an adapter', model: () => openModel(bnb), adapters: [adapter] },
];

/** Next-token logits of `ids` by running the whole sequence (no cache). */
async function recompute(
  backend: Backend,
  exes: Map<number, Executable>,
  k: Case,
  model: OpenedModel,
  ids: number[],
): Promise<Float32Array> {
  let exe = exes.get(ids.length);
  if (!exe) {
    const { graph, weights } = prepareModel(
      model,
      { batch: 1, seq: ids.length },
      { adapters: k.adapters, merge: k.merge },
    );
    exe = await backend.compile(graph, bindParams(graph, weights));
    exes.set(ids.length, exe);
  }
  const { logits } = await exe.run({ feeds: { input_ids: tensor('i32', [1, ids.length], ids) } });
  const V = logits.shape[2];
  return (logits.data as Float32Array).slice((ids.length - 1) * V);
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function checks(backend: () => Backend) {
  for (const k of CASES) {
    it(`${k.name}: cached greedy steps equal the argmax of full recompute`, async () => {
      const b = backend();
      const model = k.model();
      const s = await DecodeSession.create(b, model, {
        batch: 3,
        maxLen: 16,
        prefillChunk: 8, // the 9-token prompt runs in two chunks
        adapters: k.adapters,
        merge: k.merge,
      });
      const exes = new Map<number, Executable>();
      try {
        const seqs = prompts.map((p) => [...p]);
        // Rows 0 and 2: row 1 idles throughout, as a free slot of a serving batch.
        const rows = [0, 2];
        let logits = await s.prefill(rows.map((row, i) => ({ row, tokens: seqs[i] })));
        for (let step = 0; step < STEPS; step++) {
          for (const [i, seq] of seqs.entries()) {
            const want = await recompute(b, exes, k, model, seq);
            expect(maxAbs(logits[i], want)).toBeLessThan(2e-4);
            expect(argmax(logits[i])).toBe(argmax(want));
            seq.push(argmax(logits[i]));
          }
          expect(s.length(0)).toBe(seqs[0].length - 1);
          logits = await s.step(rows.map((row, i) => ({ row, token: seqs[i][seqs[i].length - 1] })));
        }
      } finally {
        s.dispose();
        for (const e of exes.values()) e.dispose();
      }
    });
  }
}

describe('KV-cache decoding on the cpu backend', () => {
  const cpu = new CpuBackend();
  checks(() => cpu);
});

await gpuSuite('KV-cache decoding on the webgpu backend', ({ backend }) => {
  checks(() => backend);

  it('prefill executables hold no weights of their own: one copy however many prefill shapes', async () => {
    // The backend as the session sees it, recording what it compiles.
    const compiled: WebGpuExecutable[] = [];
    const recording: Backend = {
      name: backend.name,
      compile: async (g, w, o) => {
        const exe = (await backend.compile(g, w, o)) as WebGpuExecutable;
        compiled.push(exe);
        return exe;
      },
      dispose: () => undefined,
    };
    const model = openModel(plain);
    const s = await DecodeSession.create(recording, model, { batch: 2, maxLen: 16, adapters: [adapter] });
    try {
      await s.prefill([{ row: 0, tokens: prompts[0] }]); // batch 1 x seq 16
      await s.prefill([{ row: 1, tokens: prompts[1] }]); // batch 1 x seq 4
      const [decoder, ...prefills] = compiled;
      expect(prefills).toHaveLength(2);
      const weightBytes = decoder.graph
        .params()
        .filter((p) => !isKvParam(String(p.attrs.name)))
        .reduce((sum, p) => sum + 4 * p.type.shape.reduce((a, b) => a * b, 1), 0);
      for (const p of prefills) expect(p.memory.deviceBytes).toBeLessThan(weightBytes / 4);
    } finally {
      s.dispose();
    }
  });
});
