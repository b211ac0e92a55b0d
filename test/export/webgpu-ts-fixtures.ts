// What the webgpu-ts package tests share: the model, the environment the package's CLI runs
// in, and the random LoRA adapter they export (unmerged or merged).
import { join, resolve } from 'node:path';
import { buildLlama } from '../../src/models/llama/index.ts';
import { openModel } from '../../src/models/open.ts';
import { writeRandomAdapter } from '../cli/fixtures.ts';

export const ENV = { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' };
export const ROOT = resolve(import.meta.dirname, '../..');
export const MODEL = join(ROOT, 'examples/models/tiny-llama');

/** A random LoRA adapter of tiny-llama (q, v, down projections; large B so that it shows). */
export function writeTestAdapter(dir: string): void {
  const m = openModel(MODEL);
  writeRandomAdapter(
    dir,
    buildLlama(m.config, { batch: 1, seq: 4 }),
    m.weights,
    { r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj', 'down_proj'], scaleB: 5 },
    MODEL,
  );
}
