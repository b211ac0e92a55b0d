// End-to-end training: loss falls on both backends and they agree step by step;
// resume is bit-exact on the CPU; --init-adapter starts from exactly those weights;
// a NaN stops the run with a clear message and keeps the last good checkpoint.
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runTrain, type TrainCliOptions } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';

const MODEL = 'examples/models/tiny-llama';
const sink = { write: () => true, isTTY: false };

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'peftc-train-'));
}

function recipe(extra: Record<string, unknown> = {}): string {
  const f = join(tmp(), 'recipe.json');
  writeFileSync(
    f,
    JSON.stringify({
      methods: [
        {
          method: 'lora',
          r: 4,
          lora_alpha: 8,
          lora_dropout: 0.1,
          target_modules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'],
        },
      ],
      optimizer: { type: 'adamw', lr: 5e-3, weight_decay: 0 },
      schedule: { type: 'constant', warmup_steps: 0 },
      max_grad_norm: 1.0,
      ...extra,
    }),
  );
  return f;
}

const base = (o: Partial<TrainCliOptions>): TrainCliOptions => ({
  model: MODEL,
  recipe: recipe(),
  data: 'examples/data/tiny-instruct.jsonl',
  out: tmp(),
  steps: 12,
  batch: 4,
  seq: 48,
  backend: 'cpu',
  plot: false,
  // Eval at step 0 and the last step only: what these tests read (the default, every
  // steps/10, ran more eval forwards than training steps).
  evalEvery: 1000,
  ...o,
});

function adapterB(dir: string): Float32Array {
  return SafetensorsFile.open(join(dir, 'adapter_model.safetensors')).read(
    'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
  ).data as Float32Array;
}

describe('training', () => {
  // The cpu run once, for both tests (the webgpu one compiles the train step: seconds cold).
  let cpuRun: ReturnType<typeof runTrain> | undefined;
  const cpuLora = () => {
    cpuRun ??= runTrain(base({ backend: 'cpu', steps: 20 }), sink as never);
    return cpuRun;
  };

  it('LoRA lowers eval loss on cpu', async () => {
    const cpu = await cpuLora();
    const first = cpu.evalLosses[0].loss;
    const last = cpu.evalLosses[cpu.evalLosses.length - 1].loss;
    // Stated margin: 20 LoRA steps on the instruct data cut eval loss by at least 10%.
    expect(last).toBeLessThan(first * 0.9);
  });

  it('LoRA lowers eval loss on webgpu too, and the backends agree step by step', async () => {
    const cpu = await cpuLora();
    const gpu = await runTrain(base({ backend: 'webgpu', steps: 20 }), sink as never);
    const gFirst = gpu.evalLosses[0].loss;
    expect(gpu.evalLosses[gpu.evalLosses.length - 1].loss).toBeLessThan(gFirst * 0.9);
    expect(gpu.losses.length).toBe(cpu.losses.length);
    // Stated tolerance: f32 on both, different summation orders: 2e-3 relative per step.
    cpu.losses.forEach((l, i) => {
      expect(Math.abs(gpu.losses[i] - l)).toBeLessThan(2e-3 * Math.abs(l));
    });
  });

  it('N steps in one go equal k steps + resume + N-k steps, bit for bit (cpu)', async () => {
    // Small rows: the property is about state, not size (dropout on, AdamW moments, lr).
    const o = { recipe: recipe(), batch: 2, seq: 16 };
    const one = await runTrain(base({ ...o, steps: 5 }), sink as never);
    const out = tmp();
    await runTrain(base({ ...o, steps: 2, out }), sink as never);
    const two = await runTrain(base({ ...o, steps: 5, out, resume: true }), sink as never);
    expect(two.losses).toEqual(one.losses.slice(2));
    expect(Array.from(adapterB(out))).toEqual(Array.from(adapterB(one.adapterDirs[0])));
  });

  it('--init-adapter starts from exactly those weights; --save-every writes step-N adapters', async () => {
    const first = base({ steps: 4, saveEvery: 2, batch: 2, seq: 16 });
    const r1 = await runTrain(first, sink as never);
    expect(existsSync(join(first.out, 'step-2', 'adapter_model.safetensors'))).toBe(true);
    // Every multiple of --save-every, the last step included.
    expect(existsSync(join(first.out, 'step-4', 'adapter_config.json'))).toBe(true);
    expect(readdirSync(first.out)).toContain('checkpoint-4');
    // lr tiny: after one step the weights barely move from the init adapter.
    const next = base({ steps: 1, initAdapter: first.out, lr: 1e-12, batch: 2, seq: 16 });
    const r2 = await runTrain(next, sink as never);
    // Exactly: the eval before the first step of the new run sees the first run's final adapter.
    expect(r2.evalLosses[0]).toEqual({ step: 0, loss: r1.evalLosses[r1.evalLosses.length - 1].loss });
    const a = adapterB(first.out);
    const b = adapterB(next.out);
    a.forEach((x, i) => {
      expect(Math.abs(b[i] - x)).toBeLessThan(1e-9 + 1e-6 * Math.abs(x));
    });
  });

  it('a NaN loss stops the run, names the step, and keeps the last good checkpoint', async () => {
    // lr 1e30: step 1's loss is finite, its update blows the adapter up, step 2's loss is not.
    const o = base({ steps: 6, saveEvery: 1, recipe: recipe({ max_grad_norm: null }), lr: 1e30 });
    await expect(runTrain(o, sink as never)).rejects.toThrow(
      /step 2: the loss is (NaN|Infinity|-Infinity); training stopped\. The last good checkpoint is .*checkpoint-1\./,
    );
    expect(existsSync(join(o.out, 'checkpoint-1', 'trainer_state.json'))).toBe(true);
    expect(existsSync(join(o.out, 'checkpoint-2'))).toBe(false);
  });
});

describe('QLoRA training', () => {
  // One test per backend: each stays well under the per-test limit with a cold shader cache.
  for (const backend of ['webgpu', 'cpu'] as const) {
    it(`lowers eval loss like LoRA does, on ${backend}${backend === 'webgpu' ? ' (fused 4-bit kernels)' : ''}`, async () => {
      const q = join(tmp(), 'qlora.json');
      writeFileSync(
        q,
        JSON.stringify({
          methods: [
            { method: 'qlora', quant_type: 'nf4', blocksize: 64, double_quant: true },
            {
              method: 'lora',
              r: 4,
              lora_alpha: 8,
              target_modules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'],
            },
          ],
          optimizer: { type: 'adamw', lr: 5e-3, weight_decay: 0 },
          max_grad_norm: 1.0,
        }),
      );
      const r = await runTrain(base({ backend, recipe: q, steps: 20 }), sink as never);
      const first = r.evalLosses[0].loss;
      const last = r.evalLosses[r.evalLosses.length - 1].loss;
      // Stated margin, as for LoRA: at least 10% lower eval loss after 20 steps.
      expect(last, backend).toBeLessThan(first * 0.9);
    });
  }
});
