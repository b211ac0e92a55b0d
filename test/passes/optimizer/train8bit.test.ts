// Training the bundled tiny-llama with LoRA and the 8-bit / paged optimizers lowers the eval
// loss (min_8bit_size 0, so every LoRA state is 8-bit; bitsandbytes' default 4096 would leave
// these small adapters at 32-bit), and the state saved in a checkpoint is u8 codes + absmax.
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { runTrain } from '../../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../../src/io/safetensors/index.ts';
import { gpuSuite } from '../../backends/webgpu/gpu.ts';

const sink = { write: () => true, isTTY: false };

function recipeFile(type: string): string {
  const f = join(mkdtempSync(join(tmpdir(), 'peftc-8bit-')), 'recipe.json');
  writeFileSync(
    f,
    JSON.stringify({
      methods: [
        {
          method: 'lora',
          r: 8,
          lora_alpha: 16,
          target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'up_proj', 'down_proj'],
        },
      ],
      optimizer: { type, lr: 5e-3, weight_decay: 0, min_8bit_size: 0 },
      schedule: { type: 'constant', warmup_steps: 0 },
      max_grad_norm: 1.0,
    }),
  );
  return f;
}

await gpuSuite('training with 8-bit AdamW', () => {
  for (const type of ['adamw8bit', 'paged_adamw8bit']) {
    it(`${type}: LoRA on tiny-llama lowers the eval loss`, async () => {
      const out = mkdtempSync(join(tmpdir(), 'peftc-8bit-out-'));
      const r = await runTrain(
        {
          model: 'examples/models/tiny-llama',
          recipe: recipeFile(type),
          data: 'examples/data/tiny-instruct.jsonl',
          out,
          steps: 16,
          batch: 4,
          seq: 48,
          backend: 'webgpu',
          plot: false,
          evalEvery: 16,
          saveEvery: 8,
        },
        sink as never,
      );
      const first = r.evalLosses[0].loss;
      const last = r.evalLosses[r.evalLosses.length - 1].loss;
      console.log(`${type}: eval loss ${first.toFixed(4)} -> ${last.toFixed(4)}`);
      expect(r.losses.every(Number.isFinite)).toBe(true);
      expect(last).toBeLessThan(first - 0.05);
      // The checkpoint holds the 8-bit state as bitsandbytes does: u8 codes, f32 absmax.
      const ckpt = readdirSync(out).find((d) => d.startsWith('checkpoint-'));
      const st = SafetensorsFile.open(join(out, ckpt as string, 'optimizer.safetensors'));
      const name = st
        .keys()
        .find((k) => k.startsWith('optimizer.exp_avg.') && k.includes('q_proj.lora_A')) as string;
      expect(st.read(name).dtype).toBe('u8');
      expect(st.read(name.replace('exp_avg.', 'exp_avg_sq_absmax.')).dtype).toBe('f32');
    });
  }
});
