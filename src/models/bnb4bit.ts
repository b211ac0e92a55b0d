// bitsandbytes 4-bit checkpoints. Writing: every linear weight except the output head
// quantized into bitsandbytes' state-dict layout (src/io/bitsandbytes.ts), the other
// tensors as they are, config.json with the `quantization_config` transformers writes
// for BitsAndBytesConfig(load_in_4bit=True), other files (tokenizer, ...) copied; the
// directory appears atomically. Reading: loadBnb4bitModel detects the layout from
// config.json and returns the weights plus the graph transform that turns the plain
// LLaMA graph into the 4-bit one binding those tensors by name.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeAll, writeDirAtomic, writeFileAtomic } from '../io/atomic.ts';
import { quantStateToTensors } from '../io/bitsandbytes.ts';
import { FormatError } from '../io/errors.ts';
import {
  INDEX_FILE,
  openCheckpoint,
  type SafetensorsStore,
  SINGLE_FILE,
  writeSafetensors,
} from '../io/safetensors/index.ts';
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import type { WeightStore } from '../ir/weights.ts';
import { type QloraOptions, qloraOptions } from '../methods/qlora/options.ts';
import { type QuantizeResult, quantizeLinears } from '../methods/qlora/quantize.ts';
import { expandTargets, selectTargets } from '../methods/targets.ts';
import { type QuantState, quantizeWeight, type WeightDType } from '../quant/quant-state.ts';
import { buildLlama, type LlamaConfig, readLlamaConfig } from './llama/index.ts';

export interface QuantizeCheckpointOptions {
  readonly quantType: 'nf4' | 'fp4';
  readonly blocksize?: number;
  readonly doubleQuant?: boolean;
}

/** BitsAndBytesConfig(load_in_4bit=True, ...).to_dict() as transformers writes it into config.json. */
export function bnbQuantizationConfig(
  o: QuantizeCheckpointOptions,
  computeDtype = 'float32',
): Record<string, unknown> {
  return {
    _load_in_4bit: true,
    _load_in_8bit: false,
    bnb_4bit_compute_dtype: computeDtype,
    bnb_4bit_quant_storage: 'uint8',
    bnb_4bit_quant_type: o.quantType,
    bnb_4bit_use_double_quant: !!o.doubleQuant,
    llm_int8_enable_fp32_cpu_offload: false,
    llm_int8_has_fp16_weight: false,
    llm_int8_skip_modules: null,
    llm_int8_threshold: 6.0,
    load_in_4bit: true,
    load_in_8bit: false,
    quant_method: 'bitsandbytes',
  };
}

/** Weight names of the linears bitsandbytes' load_in_4bit converts: all but the output head. */
export function linearWeightsToQuantize(c: LlamaConfig): string[] {
  const g = buildLlama(c, { batch: 1, seq: 2 });
  const targets = selectTargets(g, expandTargets(g, { target_modules: 'all-linear' }), ['linear']);
  return targets.map((n) => String(g.node(n.inputs[1]).attrs.name));
}

const DTYPE_NAMES: Record<string, WeightDType> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

export interface QuantizeCheckpointResult {
  readonly quantized: readonly string[];
  readonly states: ReadonlyMap<string, QuantState>;
}

/** Writes `outDir` as a bitsandbytes 4-bit checkpoint of the HF model in `srcDir`. */
export function quantizeCheckpoint(
  srcDir: string,
  outDir: string,
  o: QuantizeCheckpointOptions,
): QuantizeCheckpointResult {
  const config = readLlamaConfig(srcDir);
  const store = openCheckpoint(srcDir);
  const rawConfig = readConfigJson(path.join(srcDir, 'config.json'));
  if (rawConfig.quantization_config) {
    throw new FormatError(
      path.join(srcDir, 'config.json'),
      'the model is already quantized (quantization_config is set)',
    );
  }
  const targets = new Set(linearWeightsToQuantize(config));
  const entries = new Map<string, Tensor>();
  const states = new Map<string, QuantState>();
  for (const name of store.keys()) {
    const t = store.read(name);
    if (!targets.has(name)) {
      entries.set(name, t);
      continue;
    }
    const s = quantizeWeight(Float32Array.from(t.data), t.shape, {
      quantType: o.quantType,
      blocksize: o.blocksize ?? 64,
      doubleQuant: o.doubleQuant,
      dtype: DTYPE_NAMES[t.dtype] ?? 'float32',
    });
    states.set(name, s);
    for (const [k, v] of quantStateToTensors(name, s)) entries.set(k, v);
  }
  const missing = [...targets].filter((n) => !states.has(n));
  if (missing.length)
    throw new FormatError(srcDir, `missing linear weight(s) to quantize: ${missing.slice(0, 5).join(', ')}`);
  const skip = new Set(['config.json', SINGLE_FILE, INDEX_FILE]);
  const extra = fs
    .readdirSync(srcDir)
    .filter((f) => !skip.has(f) && !f.endsWith('.safetensors') && fs.statSync(path.join(srcDir, f)).isFile());
  const cfg = { ...rawConfig, quantization_config: bnbQuantizationConfig(o) };
  writeDirAtomic(
    outDir,
    (dir) => {
      writeSafetensors(path.join(dir, SINGLE_FILE), entries);
      for (const f of extra) fs.copyFileSync(path.join(srcDir, f), path.join(dir, f));
      writeFileAtomic(path.join(dir, 'config.json'), (fd) =>
        writeAll(fd, new TextEncoder().encode(`${JSON.stringify(cfg, null, 2)}\n`)),
      );
      // config.json last: it announces the 4-bit layout.
      return [SINGLE_FILE, ...extra, 'config.json'];
    },
    // A whole model: an existing outDir is swapped, never mixed with its old (e.g. sharded) files.
    { replace: true },
  );
  return { quantized: [...states.keys()], states };
}

export interface Bnb4bitModel {
  readonly config: LlamaConfig;
  readonly weights: SafetensorsStore;
  /** The qlora options the checkpoint implies (target_modules: the modules stored in 4-bit). */
  readonly qlora: QloraOptions;
  /** Plain LLaMA graph -> the 4-bit graph binding this checkpoint's tensors by name. */
  transform(g: Graph): QuantizeResult;
}

const QS = /^(.*)\.weight\.quant_state\.bitsandbytes__(nf4|fp4)$/;

/** config.json as an object; a file that is not JSON is named in the error. */
function readConfigJson(file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FormatError(
      file,
      `not valid JSON (${(e as Error).message}); fix or replace the model's config.json`,
    );
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new FormatError(file, 'expected a JSON object (a Hugging Face model config)');
  return json as Record<string, unknown>;
}

/** The quantization_config of a model dir when it is a bitsandbytes 4-bit checkpoint, else undefined. */
export function readBnb4bitConfig(dir: string): Record<string, unknown> | undefined {
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) return undefined;
  const qc = readConfigJson(file).quantization_config as Record<string, unknown> | undefined;
  if (!qc) return undefined;
  if (qc.quant_method !== 'bitsandbytes') return undefined;
  if (qc.load_in_8bit === true || qc._load_in_8bit === true) {
    throw new FormatError(
      file,
      'bitsandbytes 8-bit (LLM.int8) checkpoints are not supported; use a 4-bit one',
      'quantization_config',
    );
  }
  return qc.load_in_4bit === true || qc._load_in_4bit === true ? qc : undefined;
}

/** A bitsandbytes 4-bit model dir, or undefined when `dir` is not one (then load it as usual). */
export function loadBnb4bitModel(dir: string): Bnb4bitModel | undefined {
  const qc = readBnb4bitConfig(dir);
  if (!qc) return undefined;
  const config = readLlamaConfig(dir);
  const weights = openCheckpoint(dir);
  const modules = weights.keys().flatMap((k) => QS.exec(k)?.[1] ?? []);
  if (modules.length === 0) {
    throw new FormatError(
      weights.files.join(', '),
      'config.json says load_in_4bit but no tensor ends in .weight.quant_state.bitsandbytes__nf4 (or __fp4)',
    );
  }
  const qlora = qloraOptions.parse({
    quant_type: qc.bnb_4bit_quant_type === 'fp4' ? 'fp4' : 'nf4',
    double_quant: qc.bnb_4bit_use_double_quant === true,
    target_modules: modules,
  });
  return { config, weights, qlora, transform: (g) => quantizeLinears(g, qlora, weights as WeightStore) };
}
