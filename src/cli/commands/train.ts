// `peftc train --model <hf dir> --recipe <file> (--data <file> | --tokens <json file>) --out <dir>
//   [--steps N] [--lr X] [--batch N] [--seq N] [--init-adapter <peft dir>] [--save-every N]
//   [--backend webgpu|cpu] [--seed N]`: fine-tunes with the recipe and writes a PEFT adapter to <out>.
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { makeDirs } from '../../io/atomic.ts';
import { OutputError, outputError } from '../../io/fs-errors.ts';
import { loadRecipe, parseRecipe, type Recipe, resolveRecipe } from '../../methods/index.ts';
import { type OpenedModel, openModel } from '../../models/open.ts';
import { ByteTokenizer, loadTokenizer, type Tokenizer } from '../../models/tokenizer/index.ts';
import { latestCheckpoint } from '../../train/checkpoint/index.ts';
import { loadDataset } from '../../train/data/index.ts';
import { train } from '../../train/trainer.ts';
import { UsageError, UserError } from '../errors.ts';
import {
  addBackendOptions,
  type BackendCliOptions,
  backendFrom,
  nonNegativeInt,
  positiveInt,
  positiveNumber,
} from '../options.ts';

export interface TrainCliOptions extends BackendCliOptions {
  readonly model: string;
  readonly recipe: string;
  readonly data?: string;
  readonly tokens?: string;
  readonly out: string;
  readonly steps?: number;
  readonly lr?: number;
  readonly batch?: number;
  readonly seq?: number;
  readonly initAdapter?: string;
  readonly saveEvery?: number;
  readonly seed?: number;
  readonly evalEvery?: number;
  readonly resume?: boolean;
  readonly plot?: boolean;
}

/** CLI flags override the recipe (DESIGN.md: --lr, --steps, ...). */
export function applyOverrides(r: Recipe, o: TrainCliOptions): Recipe {
  const resolved = resolveRecipe(r) as Record<string, unknown> & { optimizer: Record<string, unknown> };
  return parseRecipe({
    ...resolved,
    optimizer: { ...resolved.optimizer, ...(o.lr !== undefined ? { lr: o.lr } : {}) },
    ...(o.steps !== undefined ? { steps: o.steps } : {}),
    ...(o.batch !== undefined ? { batch_size: o.batch } : {}),
    ...(o.seq !== undefined ? { seq_len: o.seq } : {}),
    ...(o.seed !== undefined ? { seed: o.seed } : {}),
  });
}

function tokenizerFor(dir: string | undefined, vocab: number): Tokenizer {
  const tok = dir ? loadTokenizer(dir, { fallbackToBytes: true }) : new ByteTokenizer();
  if (tok.vocabSize > vocab) {
    throw new UserError(`the tokenizer has ${tok.vocabSize} ids but the model's vocabulary is ${vocab}`);
  }
  return tok;
}

/** --out must be a directory (or not exist yet); --resume needs a checkpoint in it. */
function checkOut(o: TrainCliOptions): void {
  if (existsSync(o.out) && !statSync(o.out).isDirectory())
    throw new UserError(
      `--out ${o.out} is a file, not a directory; choose a directory for the adapter and logs`,
    );
  if (o.resume && !latestCheckpoint(o.out))
    throw new UserError(
      `--resume: nothing to resume in ${o.out} (no checkpoint-N/ there); drop --resume to start a fresh run, or point --out at the run to continue`,
    );
}

export async function runTrain(o: TrainCliOptions, stream?: NodeJS.WritableStream) {
  checkOut(o);
  // Created here, one folder at a time, so an unwritable place fails now, named as --out.
  const made = makeDirsAsOut(o.out);
  try {
    return await trainWith(o, stream);
  } catch (e) {
    const failed = outputError(e, { target: o.out, temp: o.out });
    if (failed instanceof OutputError) throw failedWrite(failed, o, made);
    // A run that fails before writing anything leaves no empty --out behind.
    if (made && existsSync(o.out) && readdirSync(o.out).length === 0) rmSync(made, { recursive: true });
    throw e;
  }
}

function makeDirsAsOut(out: string): string | undefined {
  try {
    return makeDirs(out);
  } catch (e) {
    throw e instanceof OutputError ? e.as(out, '--out') : e;
  }
}

/**
 * A write into --out failed (full disk, ...): every file in it is complete (the writers are
 * atomic). A run this command started that kept nothing worth resuming is removed;
 * otherwise the error says what is there to continue from.
 */
function failedWrite(e: OutputError, o: TrainCliOptions, made: string | undefined): UserError {
  const said = e.as(o.out, '--out').message;
  const ckpt = latestCheckpoint(o.out);
  if (ckpt) return new UserError(`${said}. ${ckpt} is complete: continue from it with --resume`);
  const adapters = existsSync(o.out)
    ? readdirSync(o.out, { recursive: true }).filter((f) => String(f).endsWith('adapter_config.json'))
    : [];
  if (made && adapters.length === 0) {
    rmSync(made, { recursive: true, force: true });
    return new UserError(`${said}. The run had written nothing to keep; ${o.out} was removed`);
  }
  return new UserError(said);
}

/** A 4-bit --model is QLoRA's base already: a qlora entry would quantize it a second time. */
function checkNotQuantizedTwice(o: TrainCliOptions, recipe: Recipe, model: OpenedModel): void {
  const i = recipe.methods.findIndex((m) => m.method === 'qlora');
  if (i >= 0 && model.quantization)
    throw new UserError(
      `--model ${o.model} is already 4-bit (${model.quantization}); remove the qlora entry (methods[${i}]) from the recipe ${o.recipe}: the other methods then train on the 4-bit base as QLoRA`,
    );
}

async function trainWith(o: TrainCliOptions, stream?: NodeJS.WritableStream) {
  const recipe = applyOverrides(loadRecipe(o.recipe), o);
  const model = openModel(o.model, { seed: recipe.seed });
  checkNotQuantizedTwice(o, recipe, model);
  const seq = recipe.seq_len ?? 64;
  if (seq > model.config.maxPositionEmbeddings) {
    throw new UserError(
      `--seq ${seq} is longer than the model's max_position_embeddings ${model.config.maxPositionEmbeddings}`,
    );
  }
  const tokenizer = tokenizerFor(model.dir, model.config.vocabSize);
  const dataset = loadDataset({ data: o.data, tokens: o.tokens, tokenizer, seq, seed: recipe.seed });
  const backend = await backendFrom(o);
  try {
    return await train({
      model,
      recipe,
      dataset,
      tokenizer,
      backend,
      out: o.out,
      steps: recipe.steps ?? 100,
      batch: recipe.batch_size ?? 4,
      seed: recipe.seed,
      initAdapter: o.initAdapter,
      saveEvery: o.saveEvery,
      evalEvery: o.evalEvery,
      resume: o.resume,
      plot: o.plot,
      stream: stream as never,
    });
  } finally {
    backend.dispose();
  }
}

export function register(program: Command): void {
  addBackendOptions(
    program
      .command('train')
      .description('fine-tune a model with a recipe (LoRA, QLoRA, ...) and save a PEFT adapter')
      .requiredOption('--model <dir|preset>', 'Hugging Face model directory (or a built-in preset)')
      .requiredOption('--recipe <file>', 'recipe JSON file')
      .option('--data <file>', 'training text (.txt: documents split on blank lines) or JSONL')
      .option('--tokens <file>', 'JSON file: an array of token-id arrays')
      .requiredOption('--out <dir>', 'output directory (PEFT adapter, log, plot, checkpoints)')
      .option('--steps <n>', 'optimizer steps (overrides the recipe; default 100)', positiveInt('--steps'))
      .option('--lr <x>', 'learning rate (overrides the recipe)', positiveNumber('--lr'))
      .option(
        '--batch <n>',
        'sequences per micro-batch (default 4; a step is gradient_accumulation_steps micro-batches)',
        positiveInt('--batch'),
      )
      .option('--seq <n>', 'tokens per sequence (default 64)', positiveInt('--seq'))
      .option('--init-adapter <dir>', 'start from the weights of this PEFT adapter')
      .option(
        '--save-every <n>',
        'write <out>/step-N/ and a resumable checkpoint every N steps',
        positiveInt('--save-every'),
      )
      .option('--eval-every <n>', 'evaluate every N steps (default steps/10)', positiveInt('--eval-every'))
      .option('--seed <n>', 'random seed (overrides the recipe)', nonNegativeInt('--seed'))
      .option('--resume', 'continue from the newest checkpoint in --out')
      .option('--no-plot', 'do not write the loss plot'),
  ).action(async (o: TrainCliOptions) => {
    if ((o.data === undefined) === (o.tokens === undefined))
      throw new UsageError('give exactly one of --data <file> and --tokens <file>');
    const r = await runTrain(o);
    const first = r.evalLosses[0];
    const last = r.evalLosses[r.evalLosses.length - 1];
    console.log(
      `trained ${r.steps} steps at ${r.tokensPerSecond.toFixed(0)} tokens/s; eval loss ${first?.loss.toFixed(4)} -> ${last?.loss.toFixed(4)}; adapter in ${o.out}`,
    );
  });
}
