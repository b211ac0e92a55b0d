// Reading a PEFT LoRA (or AdaLoRA) adapter folder into graph-named f32 tensors.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Tensor } from '../../ir/tensor.ts';
import { FormatError } from '../errors.ts';
import { SafetensorsFile } from '../safetensors/file.ts';
import { graphName, parseFileKey } from './keys.ts';
import { type PeftAdapterConfig, parsePeftConfig } from './parse.ts';
import { checkAdapterShapes, type KeyedTensor } from './validate.ts';

export const ADAPTER_CONFIG = 'adapter_config.json';
export const ADAPTER_WEIGHTS = 'adapter_model.safetensors';

export interface PeftAdapter {
  config: PeftAdapterConfig;
  /** Graph names (see keys.ts) -> f32 tensors. */
  weights: Map<string, Tensor>;
  /** The folder actually read (a subfolder for a non-default adapter saved by PEFT). */
  dir: string;
}

/** The folder holding adapter `adapterName`: PEFT saves non-default adapters in `<dir>/<name>/`. */
export function adapterFolder(dir: string, adapterName: string): string {
  const sub = path.join(dir, adapterName);
  if (adapterName !== 'default' && fs.existsSync(path.join(sub, ADAPTER_CONFIG))) return sub;
  return dir;
}

/** The parsed adapter_config.json of adapter `adapterName` in `dir`, and the folder and file it came from. */
export function readPeftConfig(
  dir: string,
  adapterName = 'default',
): { config: PeftAdapterConfig; folder: string; file: string } {
  const folder = adapterFolder(dir, adapterName);
  const configPath = path.join(folder, ADAPTER_CONFIG);
  if (!fs.existsSync(configPath)) {
    throw new FormatError(
      configPath,
      `missing: a PEFT adapter folder holds ${ADAPTER_CONFIG} and ${ADAPTER_WEIGHTS}` +
        (adapterName !== 'default' ? ` (also looked in ${path.join(dir, adapterName)})` : ''),
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(configPath, 'utf8'));
  } catch (e) {
    throw new FormatError(configPath, `not valid JSON (${(e as Error).message})`);
  }
  return { config: parsePeftConfig(json, configPath), folder, file: configPath };
}

/**
 * Reads the adapter as PEFT saved it, every config field kept (see refused.ts for the
 * fields a model may not load yet: checkImplemented).
 */
export function readPeftAdapter(dir: string, adapterName = 'default'): PeftAdapter {
  const { config, folder } = readPeftConfig(dir, adapterName);
  const weightsPath = path.join(folder, ADAPTER_WEIGHTS);
  if (!fs.existsSync(weightsPath)) {
    const pickle = fs.existsSync(path.join(folder, 'adapter_model.bin'));
    throw new FormatError(
      weightsPath,
      pickle
        ? 'missing; only adapter_model.bin (PyTorch pickle) is present, which peftc does not load: re-save with safe_serialization=True'
        : 'missing',
    );
  }
  const st = SafetensorsFile.open(weightsPath);
  const entries: KeyedTensor[] = [];
  for (const name of st.keys()) {
    const key = parseFileKey(name, adapterName, config.modules_to_save);
    if ('problem' in key) throw new FormatError(weightsPath, key.problem, name);
    const t = st.read(name);
    if (t.dtype !== 'f32' && t.dtype !== 'f16' && t.dtype !== 'bf16') {
      throw new FormatError(
        weightsPath,
        `expected a floating-point tensor, got ${st.info(name).fileDtype}`,
        name,
      );
    }
    // f16/bf16 are already decoded to f32 on the host: relabelling is exact.
    entries.push({ key, name, tensor: { dtype: 'f32', shape: t.shape, data: t.data } });
  }
  checkAdapterShapes(weightsPath, config, entries);
  const weights = new Map<string, Tensor>();
  for (const e of entries) {
    const g = graphName(e.key, adapterName);
    if (weights.has(g)) throw new FormatError(weightsPath, `two keys map to the graph name '${g}'`, e.name);
    weights.set(g, e.tensor);
  }
  return { config, weights, dir: folder };
}
