// A Hugging Face model directory (config.json + model.safetensors, the tokenizer and
// generation files copied from the source model): what `peftc merge` writes, and what a
// training run of a method whose result is the model itself (MethodDef.savesModel, GaLore)
// saves. Written through a temp dir: a fresh --out appears whole; into an existing one
// (a run's --out beside its checkpoints) the files are renamed in data first, config last;
// `replace` swaps an existing directory whole (merge --overwrite).
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeDirAtomic } from '../io/atomic.ts';
import { asOutput } from '../io/fs-errors.ts';
import { writeSafetensors } from '../io/safetensors/index.ts';
import type { Tensor } from '../ir/tensor.ts';
import { type LlamaConfig, toHfConfig } from './llama/index.ts';

export const MODEL_FILES = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
];

export interface ModelDirOptions {
  /** The model directory whose config and tokenizer files are copied. */
  readonly srcDir?: string;
  /** Written as config.json when there is no srcDir config (a preset model). */
  readonly config?: LlamaConfig;
  readonly dtype?: 'f32' | 'f16' | 'bf16';
  readonly editConfig?: (cfg: Record<string, unknown>) => void;
  /** Swap an existing directory whole (default: add/replace the files in it). */
  readonly replace?: boolean;
  /** The flag named in errors (default --out). */
  readonly flag?: string;
}

export function writeModelDir(outDir: string, tensors: Map<string, Tensor>, o: ModelDirOptions): void {
  const fill = (tmp: string) => {
    writeSafetensors(join(tmp, 'model.safetensors'), tensors, { format: 'pt' }, { dtype: o.dtype });
    const written = ['model.safetensors'];
    for (const f of MODEL_FILES) {
      if (f === 'config.json') continue;
      if (o.srcDir && existsSync(join(o.srcDir, f))) {
        copyFileSync(join(o.srcDir, f), join(tmp, f));
        written.push(f);
      }
    }
    const srcConfig = o.srcDir ? join(o.srcDir, 'config.json') : undefined;
    let cfg: Record<string, unknown> | undefined;
    if (srcConfig && existsSync(srcConfig)) {
      if (o.editConfig) cfg = JSON.parse(readFileSync(srcConfig, 'utf8')) as Record<string, unknown>;
      else copyFileSync(srcConfig, join(tmp, 'config.json'));
    } else if (o.config) cfg = toHfConfig(o.config);
    if (cfg) {
      o.editConfig?.(cfg);
      writeFileSync(join(tmp, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
    }
    // The config last: a reader that finds it finds the weights it announces.
    if (existsSync(join(tmp, 'config.json'))) written.push('config.json');
    return written;
  };
  asOutput(o.flag ?? '--out', outDir, () => writeDirAtomic(outDir, fill, { replace: o.replace }));
}
