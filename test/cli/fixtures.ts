// Shared pieces of the CLI tests: a PEFT adapter with random (non-zero) weights saved for a
// model, logits files read back, the largest difference between two sets of logits, and
// `peftc train` run in-process with its output captured.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runTrain, summary, type TrainCliOptions } from '../../src/cli/commands/train.ts';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import type { Graph } from '../../src/ir/graph.ts';
import type { Tensor } from '../../src/ir/tensor.ts';
import { bindParams, type WeightStore } from '../../src/ir/weights.ts';
import { injectLora, type LoraOptions, loraOptions } from '../../src/methods/lora/index.ts';
import { savePeftAdapter } from '../../src/models/adapters.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';

export interface RandomAdapterOptions {
  readonly r: number;
  readonly lora_alpha: number;
  readonly target_modules: readonly string[];
  /** Seed of the random A and B. */
  readonly seed?: number;
  /** B is multiplied by this so that the adapter visibly changes the logits (default 20). */
  readonly scaleB?: number;
  /** A DoRA adapter (its magnitudes are ||W + s B A|| before B is scaled, so they rescale the rows). */
  readonly use_dora?: boolean;
}

/**
 * Saves a PEFT adapter for `graph` (the model's, built with buildLlama) with random A and B
 * into `dir`, naming `baseModel` in its config. Returns the options and the bound weights.
 */
export function writeRandomAdapter(
  dir: string,
  graph: Graph,
  base: WeightStore,
  o: RandomAdapterOptions,
  baseModel: string,
): { options: LoraOptions; weights: WeightStore } {
  const options = loraOptions.parse({
    r: o.r,
    lora_alpha: o.lora_alpha,
    target_modules: [...o.target_modules],
    init_lora_weights: false,
    use_dora: o.use_dora ?? false,
  });
  const inj = injectLora(graph, options, base);
  const weights = bindParams(inj.graph, inj.weights!, o.seed ?? 3);
  const scale = o.scaleB ?? 20;
  for (const n of weights.names())
    if (n.includes('lora_B')) weights.get(n)!.data.forEach((_, i, a) => void (a[i] *= scale));
  savePeftAdapter(dir, inj.graph, (n) => weights.get(n)! as Tensor, options, baseModel);
  return { options, weights };
}

/** `logits.0`, `logits.1`, ... of a `peftc logits` output, one per input row. */
export function readLogits(file: string, rows: number): Float32Array[] {
  const f = SafetensorsFile.open(file);
  return Array.from({ length: rows }, (_, i) => f.read(`logits.${i}`).data as Float32Array);
}

export function maxDiff(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let m = 0;
  a.forEach((x, k) => {
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - b[k][i]));
  });
  return m;
}

/**
 * `peftc train` in-process (runTrain) on the CPU with small defaults, its progress output
 * captured; `o` overrides any option. Returns the result, the text and the summary line.
 */
export async function trainCaptured(o: Partial<TrainCliOptions> & Pick<TrainCliOptions, 'recipe' | 'out'>) {
  let text = '';
  const stream = {
    write: (s: string) => {
      text += s;
      return true;
    },
    isTTY: false,
  };
  const opts: TrainCliOptions = { model: 'tiny', batch: 2, seq: 16, backend: 'cpu', plot: false, ...o };
  const r = await runTrain(opts, stream as never);
  return { r, text, out: opts.out, line: summary(r, opts.out) };
}

/** The records of `<out>/log.jsonl`. */
export const trainLogOf = (out: string): Record<string, number>[] =>
  readFileSync(join(out, 'log.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

/**
 * The tiny preset with random weights (`seed`) saved as an HF dir `plain`, its 4-bit copy
 * `bnb` (what `peftc quantize --double-quant` writes) and a random adapter for it saved in
 * `adapter`, naming `adapterBase` as its base model.
 */
export function writeTinyModels(
  paths: { plain: string; bnb: string; adapter: string },
  seed: number,
  adapter: RandomAdapterOptions,
  adapterBase: string,
): void {
  const c = presetConfig('tiny');
  const base = randomLlamaWeights(c, seed);
  saveModelDir(paths.plain, c, base);
  quantizeCheckpoint(paths.plain, paths.bnb, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
  writeRandomAdapter(paths.adapter, buildLlama(c, { batch: 1, seq: 4 }), base, adapter, adapterBase);
}
