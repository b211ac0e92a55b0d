// `peftc train --model <hf dir> --recipe <file> (--data <file> | --tokens <json file>) --out <dir>
//   [--eval-fraction X | --eval-data <file>] [--steps N] [--schedule-steps N] [--lr X] [--batch N]
//   [--seq N] [--init-adapter <peft dir>] [--save-every N] [--resume] [--backend webgpu|cpu] [--seed N]`:
// fine-tunes with the recipe and writes a PEFT adapter to <out>. Ctrl-C stops after the current
// step with a resumable checkpoint (exit 130).
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { makeDirs } from '../../io/atomic.ts';
import { OutputError, outputError } from '../../io/fs-errors.ts';
import { loadRecipe, parseRecipe, type Recipe, resolveRecipe } from '../../methods/index.ts';
import { type OpenedModel, openModel } from '../../models/open.ts';
import { latestCheckpoint } from '../../train/checkpoint/index.ts';
import { DEFAULT_BATCH, datasetFor } from '../../train/data/index.ts';
import { RecipeEntryError } from '../../train/setup.ts';
import { type TrainResult, train } from '../../train/trainer.ts';
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
  readonly evalData?: string;
  readonly evalFraction?: number;
  readonly out: string;
  readonly steps?: number;
  readonly scheduleSteps?: number;
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
    ...(o.evalFraction !== undefined ? { eval_fraction: o.evalFraction } : {}),
  });
}

/** `--eval-fraction`: a number in [0, 1). */
function fraction(flag: string) {
  return (v: string): number => {
    const x = Number(v);
    if (v.trim() === '' || !(x >= 0 && x < 1))
      throw new UsageError(`${flag} must be a number in [0, 1) (0: no eval split), got '${v}'`);
    return x;
  };
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

export async function runTrain(
  o: TrainCliOptions,
  stream?: NodeJS.WritableStream,
  signal?: AbortSignal,
): Promise<TrainResult> {
  if ((o.data === undefined) === (o.tokens === undefined))
    throw new UsageError('give exactly one of --data <file> and --tokens <file>');
  if (o.evalData !== undefined && o.evalFraction !== undefined)
    throw new UsageError(
      'give at most one of --eval-data <file> (a separate eval set) and --eval-fraction <x> (held out from the data)',
    );
  checkOut(o);
  // Created here, one folder at a time, so an unwritable place fails now, named as --out.
  const made = makeDirsAsOut(o.out);
  try {
    return await trainWith(o, stream, signal);
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

async function trainWith(o: TrainCliOptions, stream?: NodeJS.WritableStream, signal?: AbortSignal) {
  const recipe = applyOverrides(loadRecipe(o.recipe), o);
  const model = openModel(o.model, { seed: recipe.seed });
  checkNotQuantizedTwice(o, recipe, model);
  const { dataset, tokenizer } = datasetFor(model, recipe, o);
  const backend = await backendFrom(o);
  try {
    return await train({
      model,
      recipe,
      dataset,
      tokenizer,
      backend,
      out: o.out,
      steps: recipe.steps,
      scheduleSteps: o.scheduleSteps,
      batch: recipe.batch_size ?? DEFAULT_BATCH,
      seed: recipe.seed,
      initAdapter: o.initAdapter,
      saveEvery: o.saveEvery,
      evalEvery: o.evalEvery,
      resume: o.resume,
      plot: o.plot,
      stream: stream as never,
      signal,
    });
  } catch (e) {
    // The failing entry, in the recipe parser's own form: file, JSON path, method.
    if (e instanceof RecipeEntryError)
      throw new UserError(`${o.recipe}: methods[${e.index}] ('${e.method}'): ${e.reason}`, { cause: e });
    throw e;
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
      .option(
        '--data <file>',
        'training text (.txt: documents split on blank lines) or JSONL ({"text"}, {"prompt","completion"} or {"input_ids"} per line)',
      )
      .option('--tokens <file>', 'JSON file: an array of token-id arrays (no tokenizer needed)')
      .option(
        '--eval-data <file>',
        'eval set in the same format as the training data (instead of holding out a fraction of it)',
      )
      .option(
        '--eval-fraction <x>',
        "fraction of the data held out for eval, in [0, 1) (overrides the recipe's eval_fraction; default 0.1; 0: no eval)",
        fraction('--eval-fraction'),
      )
      .requiredOption('--out <dir>', 'output directory (PEFT adapter, log, plot, checkpoints)')
      .option('--steps <n>', 'optimizer steps (overrides the recipe; default 100)', positiveInt('--steps'))
      .option(
        '--schedule-steps <n>',
        "steps the lr schedule stretches over (default: --steps; with --resume, the checkpoint's); restates it when extending a resumed run",
        positiveInt('--schedule-steps'),
      )
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
    // Ctrl-C: finish the current step, save a resumable checkpoint, exit 130. A second Ctrl-C
    // gets Node's default handling and stops at once.
    const stop = new AbortController();
    const onSigint = () => {
      stop.abort();
      process.stderr.write('stopping after the current step (Ctrl-C again to stop at once)\n');
    };
    process.once('SIGINT', onSigint);
    let r: TrainResult;
    try {
      r = await runTrain(o, undefined, stop.signal);
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    if (r.interrupted) {
      console.error(interruptedMessage(r, process.argv.slice(2)));
      process.exit(130);
    }
    console.log(summary(r, o.out));
  });
}

/** The one-line result: steps this invocation ran, throughput, eval loss from the step-0 baseline. */
export function summary(r: TrainResult, out: string): string {
  const ran = r.steps - r.startStep;
  const span = r.resumedFrom
    ? ` (steps ${r.startStep + 1}-${r.steps}, resumed from step ${r.startStep})`
    : '';
  const first = r.evalLosses[0];
  const last = r.evalLosses[r.evalLosses.length - 1];
  const at = (e: { step: number }) => (r.resumedFrom ? ` (step ${e.step})` : '');
  const evalText = !r.hasEval
    ? 'no eval data, so no eval loss (pass --eval-data <file> or an --eval-fraction above 0)'
    : first && last
      ? `eval loss ${first.loss.toFixed(4)}${at(first)} -> ${last.loss.toFixed(4)}${at(last)}`
      : 'eval loss not finite';
  // "adapter in" only for an adapter the trainer actually wrote.
  const saved = [
    r.adapterDirs.length ? `adapter in ${out}` : '',
    r.modelDirs.length ? `model in ${out} (a Hugging Face model directory)` : '',
    r.unsavedNote ?? '',
  ].filter(Boolean);
  return `trained ${ran} steps${span} at ${r.tokensPerSecond.toFixed(0)} tokens/s; ${evalText}; ${saved.join('; ')}`;
}

const shellQuote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);

/** What Ctrl-C leaves: the step, the checkpoint, and the exact command that continues. */
export function interruptedMessage(r: TrainResult, argv: readonly string[]): string {
  const at = r.interrupted as NonNullable<TrainResult['interrupted']>;
  const again = `peftc ${argv.map(shellQuote).join(' ')}`;
  if (!at.checkpoint)
    return `interrupted before step 1; no checkpoint was written; start again with: ${again}`;
  const resume = argv.includes('--resume') ? again : `${again} --resume`;
  const where =
    at.step > r.startStep
      ? `interrupted at step ${at.step}; saved ${at.checkpoint}`
      : `interrupted before step ${at.step + 1}; the last checkpoint is ${at.checkpoint}`;
  return `${where}; resume with: ${resume}`;
}
