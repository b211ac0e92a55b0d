// Opening `--model`: a bitsandbytes 4-bit checkpoint (QLoRA base), a plain HF
// directory, or a built-in preset. Lives above models/llama because reading a 4-bit
// checkpoint needs the qlora method's graph rewrite.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type Bnb4bitModel, loadBnb4bitModel } from './bnb4bit.ts';
import { ComputeF32View, type LoadedModel, loadModel } from './llama/index.ts';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from './tokenizer/index.ts';

export interface OpenedModel extends LoadedModel {
  /** A bitsandbytes 4-bit checkpoint: how it stores its weights, e.g. "bitsandbytes nf4, blocksize 64, double quant". */
  readonly quantization?: string;
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

const QUANT_STATE = /\.weight\.quant_state\.bitsandbytes__(nf4|fp4)$/;

/** The storage of a 4-bit checkpoint in words; the blocksize from its first weight's quant_state JSON. */
function describeBnb(bnb: Bnb4bitModel): string {
  const key = bnb.weights.keys().find((k) => QUANT_STATE.test(k));
  let blocksize: unknown;
  try {
    blocksize =
      key && JSON.parse(new TextDecoder().decode(bnb.weights.read(key).data as Uint8Array)).blocksize;
  } catch {
    // Only for the description; loading the weights reports a malformed quant_state.
  }
  return [
    `bitsandbytes ${bnb.qlora.quant_type}`,
    ...(typeof blocksize === 'number' ? [`blocksize ${blocksize}`] : []),
    ...(bnb.qlora.double_quant ? ['double quant'] : []),
  ].join(', ');
}

export function openModel(spec: string, opts: { seed?: number } = {}): OpenedModel {
  const bnb = isDir(spec) ? loadBnb4bitModel(spec) : undefined;
  if (!bnb) return loadModel(spec, opts);
  const weights = new ComputeF32View(bnb.weights);
  return {
    config: bnb.config,
    weights,
    source: spec,
    dir: spec,
    quantization: describeBnb(bnb),
    storage: (g) => {
      const r = bnb.transform(g);
      return { graph: r.graph, weights: new ComputeF32View(r.weights ?? weights) };
    },
  };
}

/**
 * The model's tokenizer: its tokenizer.json, else the byte-level one when the model's
 * vocabulary is exactly that (the bundled tiny model); undefined when there is none.
 */
export function tokenizerOf(model: OpenedModel): Tokenizer | undefined {
  if (model.dir && existsSync(join(model.dir, 'tokenizer.json'))) return loadTokenizer(model.dir);
  const bytes = new ByteTokenizer();
  const c = model.config;
  const byteVocab =
    c.vocabSize === bytes.vocabSize &&
    (c.bosTokenId ?? bytes.bosId) === bytes.bosId &&
    (c.eosTokenId ?? bytes.eosId) === bytes.eosId;
  return byteVocab ? bytes : undefined;
}
