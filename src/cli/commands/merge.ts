// `peftc merge --model <hf dir> --adapter <peft dir>... --out <dir>`: folds the adapters
// into the base weights and writes an HF model directory that transformers loads:
// config.json as it was, model.safetensors in the checkpoint's own dtype, and the
// tokenizer/generation files copied. Written into a temp dir, then renamed.
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { writeSafetensors } from '../../io/safetensors/index.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { openModel } from '../../models/open.ts';
import { prepareModel } from '../../models/prepare.ts';
import { UserError } from '../errors.ts';
import { collect } from '../options.ts';

const COPIED = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
];

interface MergeOptions {
  readonly model: string;
  readonly adapter: string[];
  readonly out: string;
}

export function mergeToDir(o: MergeOptions): { tensors: number; changed: string[] } {
  const model = openModel(o.model);
  if (!model.dir)
    throw new UserError(`--model ${o.model}: merge needs a Hugging Face model directory, not a preset`);
  const { weights, merged } = prepareModel(model, { batch: 1, seq: 2 }, { adapters: o.adapter, merge: true });
  const tensors = new Map<string, Tensor>();
  // Every tensor of the checkpoint (including ones the graph does not use), merged ones replaced.
  for (const name of model.weights.names()) tensors.set(name, model.weights.get(name)!);
  for (const name of merged) tensors.set(name, weights.get(name)!);
  const out = resolve(o.out);
  const tmp = join(dirname(out), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  try {
    const dtype =
      model.config.torchDtype === 'bfloat16' ? 'bf16' : model.config.torchDtype === 'float16' ? 'f16' : 'f32';
    writeSafetensors(join(tmp, 'model.safetensors'), tensors, { format: 'pt' }, { dtype });
    for (const f of COPIED)
      if (existsSync(join(model.dir, f))) copyFileSync(join(model.dir, f), join(tmp, f));
    rmSync(out, { recursive: true, force: true });
    renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { tensors: tensors.size, changed: merged };
}

export function register(program: Command): void {
  program
    .command('merge')
    .description('merge PEFT adapters into a Hugging Face model and write the merged model directory')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory (repeat to merge several, in order)', collect)
    .requiredOption('--out <dir>', 'output model directory')
    .action((o: MergeOptions) => {
      const r = mergeToDir(o);
      console.log(`merged ${r.changed.length} weight(s) of ${r.tensors} into ${o.out}`);
    });
}
