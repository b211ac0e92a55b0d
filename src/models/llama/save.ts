// Writes an HF model directory (config.json + model.safetensors) for a LLaMA config
// and weights: the bundled tiny model, test fixtures, full fine-tunes.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDirAtomic } from '../../io/atomic.ts';
import { writeSafetensors } from '../../io/safetensors/index.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { buildLlama } from './build.ts';
import { type LlamaConfig, storageDtype, toHfConfig } from './config.ts';

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
  writeDirAtomic(dir, (tmp) => {
    writeSafetensors(
      join(tmp, 'model.safetensors'),
      tensors,
      { format: 'pt' },
      { dtype: storageDtype(c.torchDtype) },
    );
    writeFileSync(join(tmp, 'config.json'), `${JSON.stringify({ ...toHfConfig(c), ...extra }, null, 2)}\n`);
    // The weights before the config that announces them.
    return ['model.safetensors', 'config.json'];
  });
}
