// Writing a PEFT LoRA adapter folder exactly as PEFT's save_pretrained does: config
// JSON (indent 2, sorted keys), weights as f32 safetensors with metadata {"format":"pt"},
// non-default adapters in a subfolder named after them. Written via a temp folder.

import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../../ir/tensor.ts';
import { writeDirAtomic } from '../atomic.ts';
import { FormatError } from '../errors.ts';
import { writeSafetensors } from '../safetensors/write.ts';
import { formatLoraConfig } from './config.ts';
import { type AdapterKey, fileKey, parseGraphName } from './keys.ts';
import { parsePeftConfig } from './parse.ts';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from './read.ts';
import { checkAdapterShapes, type KeyedTensor } from './validate.ts';

export interface WritePeftAdapterArgs {
  /** Parsed (or partial) config; defaults are filled as PEFT's LoraConfig (AdaLoraConfig for peft_type ADALORA). */
  config: Readonly<Record<string, unknown>>;
  /** Graph-named tensors of this adapter (see keys.ts). */
  weights: Map<string, Tensor> | Record<string, Tensor>;
  adapterName?: string;
}

function keyOf(name: string, adapter: string): AdapterKey {
  const k = parseGraphName(name, adapter);
  if (k) return k;
  const parts = name.split('.');
  if (parts.some((p) => p.startsWith('lora_') || p === 'modules_to_save') || parts.length < 2) {
    throw new FormatError(
      '(adapter weights)',
      `not a tensor of adapter '${adapter}': expected <module>.lora_A.${adapter}.weight, ` +
        `<module>.lora_B.${adapter}.weight, <module>.lora_magnitude_vector.${adapter}.weight, ` +
        `<module>.lora_embedding_A.${adapter}, <module>.modules_to_save.${adapter}.<param> or a base <module>.<param>`,
      name,
    );
  }
  return { kind: 'base', module: parts.slice(0, -1).join('.'), param: parts[parts.length - 1] };
}

/** Writes the adapter; returns the folder written (`dir`, or `dir/<adapterName>` when not 'default'). */
export function writePeftAdapter(dir: string, args: WritePeftAdapterArgs): string {
  const adapter = args.adapterName ?? 'default';
  const target = adapter === 'default' ? dir : path.join(dir, adapter);
  // Validate against the config as it will be read back: sorted keys change which
  // rank_pattern key matches first when several do (as with PEFT's own sort_keys=True).
  const configText = formatLoraConfig(parsePeftConfig(args.config, path.join(target, ADAPTER_CONFIG)));
  const config = parsePeftConfig(JSON.parse(configText), path.join(target, ADAPTER_CONFIG));
  const named = args.weights instanceof Map ? [...args.weights] : Object.entries(args.weights);
  const entries: KeyedTensor[] = named.map(([name, t]) => {
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
      throw new FormatError('(adapter weights)', `expected a floating-point tensor, got ${t.dtype}`, name);
    }
    // PEFT saves adapters in f32; host f16/bf16 data is already f32.
    return { key: keyOf(name, adapter), name, tensor: { dtype: 'f32', shape: t.shape, data: t.data } };
  });
  checkAdapterShapes(path.join(target, ADAPTER_WEIGHTS), config, entries);
  const wrapped = new Set(
    entries.flatMap((e) =>
      e.key.kind === 'lora' || e.key.kind === 'svd' || e.key.kind === 'moe' ? [e.key.module] : [],
    ),
  );
  const out = new Map<string, Tensor>();
  for (const e of entries) {
    const k = fileKey(e.key, wrapped.has(e.key.module));
    if (out.has(k))
      throw new FormatError(path.join(target, ADAPTER_WEIGHTS), `two tensors map to file key '${k}'`, e.name);
    out.set(k, e.tensor);
  }
  writeDirAtomic(target, (tmp) => {
    writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS), out, { format: 'pt' });
    writeFileSync(path.join(tmp, ADAPTER_CONFIG), configText);
    // Weights first, so a reader never sees a new config beside old weights.
    return [ADAPTER_WEIGHTS, ADAPTER_CONFIG];
  });
  return target;
}
