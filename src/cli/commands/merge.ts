// `peftc merge --model <hf dir> --adapter <peft dir>... --out <dir>`: folds the adapters
// into the base weights and writes an HF model directory that transformers loads:
// config.json as it was, model.safetensors in the checkpoint's own dtype, and the
// tokenizer/generation files copied. Written into a temp dir, then renamed; an existing
// --out is refused unless --overwrite (then swapped in whole once the new one is complete).
// A bitsandbytes 4-bit base (QLoRA) merges `--merge-into float` (default: dequantize +
// s B A, written in the config's bnb_4bit_compute_dtype without quantization_config)
// or `--merge-into 4bit` (requantized in the same layout, with a warning stating the
// rounding: the largest |change| of a merged weight).
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { checkOutputPath } from '../../io/fs-errors.ts';
import { openCheckpoint } from '../../io/safetensors/index.ts';
import type { Graph } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { adapterSites, baseWeightNode, mergeAdapters, savedCopyTarget } from '../../methods/index.ts';
import { dequantizeAll, mergeQlora, quantizedWeights } from '../../methods/qlora/index.ts';
import { readBnb4bitConfig } from '../../models/bnb4bit.ts';
import { type LoadedModel, storageDtype } from '../../models/llama/index.ts';
import { writeModelDir } from '../../models/model-dir.ts';
import { openModel } from '../../models/open.ts';
import { prepareModel, withAdapters } from '../../models/prepare.ts';
import { UserError } from '../errors.ts';
import { collect } from '../options.ts';

interface MergeOptions {
  readonly model: string;
  readonly adapter: string[];
  readonly out: string;
  /** Only for bitsandbytes 4-bit bases. */
  readonly mergeInto?: string;
  /** Replace an existing --out directory. */
  readonly overwrite?: boolean;
}

export interface MergeResult {
  readonly tensors: number;
  readonly changed: string[];
  /** 4-bit bases merged into 4-bit: the largest |requantized - merged| (the rounding). */
  readonly maxAbsChange?: number;
}

export function mergeToDir(o: MergeOptions, log: (line: string) => void = () => {}): MergeResult {
  // Never replace what is there (a previous merge, or something else entirely) unless asked.
  checkOutputPath('--out', o.out, { kind: 'dir', overwrite: o.overwrite });
  if (resolve(o.out) === resolve(o.model))
    throw new UserError(
      `--out ${o.out} is the --model directory; choose a new directory for the merged model`,
    );
  const model = openModel(o.model);
  if (!model.dir)
    throw new UserError(`--model ${o.model}: merge needs a Hugging Face model directory, not a preset`);
  if (model.storage) return mergeQloraToDir(model, model.dir, o, log);
  if (o.mergeInto !== undefined)
    throw new UserError(
      `--merge-into applies to bitsandbytes 4-bit models only; ${o.model} is a full-precision model (drop --merge-into)`,
    );
  const { graph, weights, merged } = prepareModel(
    model,
    { batch: 1, seq: 2 },
    { adapters: o.adapter, merge: true },
  );
  const tensors = new Map<string, Tensor>();
  // Every tensor of the checkpoint (including ones the graph does not use), merged ones replaced.
  for (const name of model.weights.names()) tensors.set(name, model.weights.get(name)!);
  for (const name of merged) tensors.set(name, weights.get(name)!);
  const copies = savedCopies(graph, weights, merged);
  for (const [target, t] of copies) tensors.set(target, t);
  writeModelDir(o.out, tensors, {
    srcDir: model.dir,
    dtype: storageDtype(model.config.torchDtype),
    replace: true,
  });
  return { tensors: tensors.size, changed: [...merged, ...copies.keys()] };
}

/**
 * The trained modules_to_save copies (LongLoRA's embeddings and norms, PEFT's
 * modules_to_save) under the names of the weights they replace: the merged model is the
 * adapted one only with them in place of the base weights.
 */
function savedCopies(graph: Graph, weights: WeightStore, merged: readonly string[]): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const p of graph.params()) {
    const name = String(p.attrs.name);
    const target = savedCopyTarget(name);
    if (target && !merged.includes(target)) out.set(target, weights.get(name)!);
  }
  return out;
}

// bitsandbytes' per-weight tensors besides `<m>.weight` itself.
const BNB_PART = /^(.*\.weight)\.(absmax|quant_map|nested_absmax|nested_quant_map|quant_state\..*)$/;

/** Merge onto a 4-bit base: the unfused graph (dequant_4bit nodes), adapters attached, mergeQlora. */
function mergeQloraToDir(
  model: LoadedModel,
  dir: string,
  o: MergeOptions,
  log: (l: string) => void,
): MergeResult {
  const into = o.mergeInto ?? 'float';
  if (into !== 'float' && into !== '4bit')
    throw new UserError(`--merge-into must be float or 4bit, got '${into}'`);
  const { graph, weights } = withAdapters(model, { batch: 1, seq: 2 }, o.adapter);
  const q = mergeQlora(graph, { merge_into: into }, weights, log);
  // Adapters on weights the checkpoint keeps in full precision (lm_head, embed_tokens: bnb
  // quantizes only the decoder's linears) merge as plain LoRA; none is left unmerged.
  const plainMerged = adapterSites(q.graph).map((s) => String(baseWeightNode(q.graph, s).attrs.name));
  const m = plainMerged.length ? { ...q, ...mergeAdapters(q.graph, q.weights!) } : q;
  const raw = openCheckpoint(dir);
  const tensors = new Map<string, Tensor>();
  const qc = readBnb4bitConfig(dir)!;
  if (into === '4bit') {
    // The checkpoint as stored, the merged weights' 4-bit tensors replaced.
    const merged = new Set(m.report.weights);
    for (const k of raw.keys()) {
      const owner = merged.has(k) ? k : BNB_PART.exec(k)?.[1];
      tensors.set(k, owner && merged.has(owner) ? m.weights!.get(k)! : raw.read(k));
    }
    for (const name of plainMerged) tensors.set(name, m.weights!.get(name)!);
    for (const [target, t] of savedCopies(m.graph, m.weights!, plainMerged)) tensors.set(target, t);
    writeModelDir(o.out, tensors, { srcDir: dir, replace: true });
    return {
      tensors: tensors.size,
      changed: [...new Set([...m.report.weights, ...plainMerged])],
      maxAbsChange: m.report.maxAbsChange,
    };
  }
  // Full precision: every 4-bit weight dequantized (merged ones carry s B A), its bnb tensors dropped.
  const full = dequantizeAll(m.graph, m.weights!);
  for (const name of m.report.weights) full.set(name, m.weights!.get(name)!);
  const quantized = new Set(quantizedWeights(graph).keys());
  for (const k of raw.keys()) {
    if (quantized.has(k)) tensors.set(k, full.get(k)!);
    else if (!quantized.has(BNB_PART.exec(k)?.[1] ?? '')) tensors.set(k, raw.read(k));
  }
  for (const name of plainMerged) tensors.set(name, m.weights!.get(name)!);
  for (const [target, t] of savedCopies(m.graph, m.weights!, plainMerged)) tensors.set(target, t);
  const dtype = storageDtype(String(qc.bnb_4bit_compute_dtype ?? 'float32'));
  const torchDtype = { bf16: 'bfloat16', f16: 'float16', f32: 'float32' }[dtype];
  writeModelDir(o.out, tensors, {
    srcDir: dir,
    dtype,
    replace: true,
    editConfig: (cfg) => {
      delete cfg.quantization_config;
      cfg.torch_dtype = torchDtype;
      if ('dtype' in cfg) cfg.dtype = torchDtype;
    },
  });
  return { tensors: tensors.size, changed: [...new Set([...m.report.weights, ...plainMerged])] };
}

export function register(program: Command): void {
  program
    .command('merge')
    .description('merge PEFT adapters into a Hugging Face model and write the merged model directory')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .requiredOption('--adapter <dir>', 'PEFT adapter directory (repeat to merge several, in order)', collect)
    .requiredOption('--out <dir>', 'output model directory')
    .option(
      '--merge-into <float|4bit>',
      'bitsandbytes 4-bit base only: write a full-precision model (float, default) or requantize into 4-bit',
    )
    .option(
      '--overwrite',
      'replace an existing --out directory (the old one stays until the new is complete)',
    )
    .action((o: MergeOptions) => {
      const r = mergeToDir(o, (line) => console.error(line));
      console.log(`merged ${r.changed.length} weight(s) of ${r.tensors} into ${o.out}`);
    });
}
