// `peftc train --model <hf dir> --recipe <file> (--data <file> | --tokens <json file>) --out <dir>
//   [--steps N] [--lr X] [--batch N] [--seq N] [--init-adapter <peft dir>] [--save-every N]
//   [--backend webgpu|cpu] [--seed N]`: fine-tunes with the recipe and writes a PEFT adapter to <out>.
import { existsSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { loadRecipe, parseRecipe, type Recipe, resolveRecipe } from '../../methods/index.ts';
import { openModel } from '../../models/open.ts';
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
  // A run that fails before writing anything leaves no empty --out behind.
  const created = !existsSync(o.out);
  try {
    return await trainWith(o, stream);
  } catch (e) {
    if (created && existsSync(o.out) && readdirSync(o.out).length === 0) rmdirSync(o.out);
    throw e;
  }
}

async function trainWith(o: TrainCliOptions, stream?: NodeJS.WritableStream) {
  const recipe = applyOverrides(loadRecipe(o.recipe), o);
  const model = openModel(o.model, { seed: recipe.seed });
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
    // "adapter in" only for an adapter the trainer actually wrote.
    const saved = [r.adapterDirs.length ? `adapter in ${o.out}` : '', r.unsavedNote ?? ''].filter(Boolean);
    console.log(
      `trained ${r.steps} steps at ${r.tokensPerSecond.toFixed(0)} tokens/s; eval loss ${first?.loss.toFixed(4)} -> ${last?.loss.toFixed(4)}; ${saved.join('; ')}`,
    );
  });
}
