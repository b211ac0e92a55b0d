// Random (non-zero) PEFT LoRA adapters over a model, as training would leave them, written
// to a temp directory: what the multi-adapter benches load.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Tensor } from '../src/ir/tensor.ts';
import { bindParams } from '../src/ir/weights.ts';
import { injectLora, loraOptions } from '../src/methods/lora/index.ts';
import { savePeftAdapter } from '../src/models/adapters.ts';
import { buildLlama } from '../src/models/llama/index.ts';
import type { OpenedModel } from '../src/models/open.ts';

export const ALL_LINEARS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/**
 * `count` adapters of rank `rank` on every linear (alpha 2r), seeded `seed`, `seed + 1`, ...:
 * their dirs, and `root` (the temp dir holding them, for the caller to remove).
 */
export function writeRandomAdapters(
  model: OpenedModel,
  count: number,
  rank: number,
  seed: number,
): { dirs: string[]; root: string } {
  const tmp = mkdtempSync(join(tmpdir(), 'peftc-bench-adapters-'));
  const options = loraOptions.parse({
    r: rank,
    lora_alpha: 2 * rank,
    target_modules: ALL_LINEARS,
    init_lora_weights: false,
  });
  const dirs = Array.from({ length: count }, (_, i) => {
    const inj = injectLora(buildLlama(model.config, { batch: 1, seq: 1 }), options, model.weights);
    const w = bindParams(inj.graph, inj.weights!, seed + i);
    const dir = join(tmp, `adapter${i}`);
    savePeftAdapter(dir, inj.graph, (n) => w.get(n)! as Tensor, options, model.source);
    return dir;
  });
  return { dirs, root: tmp };
}
