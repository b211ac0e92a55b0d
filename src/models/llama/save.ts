// Writes an HF model directory (config.json + model.safetensors) for a LLaMA config
// and weights: the bundled tiny model, test fixtures, full fine-tunes.
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { writeSafetensors } from '../../io/safetensors/index.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { buildLlama } from './build.ts';
import { type LlamaConfig, toHfConfig } from './config.ts';

export function saveModelDir(
  dir: string,
  c: LlamaConfig,
  weights: WeightStore,
  extra: Record<string, unknown> = {},
): void {
  const tensors = new Map<string, Tensor>();
  for (const p of buildLlama(c, { batch: 1, seq: 2 }).params()) {
    const name = String(p.attrs.name);
    const t = weights.get(name);
    if (!t) throw new Error(`saveModelDir: no weight '${name}'`);
    tensors.set(name, t);
  }
  const out = resolve(dir);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const dtype = c.torchDtype === 'bfloat16' ? 'bf16' : c.torchDtype === 'float16' ? 'f16' : 'f32';
  writeSafetensors(join(tmp, 'model.safetensors'), tensors, { format: 'pt' }, { dtype });
  writeFileSync(join(tmp, 'config.json'), `${JSON.stringify({ ...toHfConfig(c), ...extra }, null, 2)}\n`);
  rmSync(out, { recursive: true, force: true });
  renameSync(tmp, out);
}
