// The training loop: one compiled train-step executable (forward, backward and
// optimizer update in one graph, params updated in place on the device), an eval
// executable of the same model that receives the trained params before each eval,
// seeded batches that are a pure function of the step (so resume continues exactly),
// gradient accumulation as micro-steps of that same executable (gradient_accumulation_steps),
// NaN/inf detection, atomic checkpoints, a JSONL log, a progress bar and a loss plot.
// An abort signal (Ctrl-C in the CLI) stops the run after the current step with a
// resumable checkpoint.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Backend, Executable } from '../backends/backend.ts';
import { type Tensor, tensor } from '../ir/tensor.ts';
import { MapWeightStore } from '../ir/weights.ts';
import { getMethod, type MethodSession, type Recipe, resolveRecipe } from '../methods/index.ts';
import { describeQuantizedBase } from '../methods/qlora/index.ts';
import { saveMethodAdapter } from '../models/adapters.ts';
import { type LoadedModel, storageDtype } from '../models/llama/index.ts';
import { writeModelDir } from '../models/model-dir.ts';
import type { Tokenizer } from '../models/tokenizer/index.ts';
import { UserError } from '../util/errors.ts';
import { calibrate, calibrates } from './calibrate.ts';
import { checkpointPath, latestCheckpoint, loadCheckpoint, saveCheckpoint } from './checkpoint/index.ts';
import { type Batch, Batcher, type Dataset, evalBatches } from './data/index.ts';
import { TrainLog } from './log.ts';
import { planRun, type ResumeState } from './plan.ts';
import { writeLossPlot } from './plot/index.ts';
import { Progress, type ProgressStream } from './progress.ts';
import { lrAt } from './schedule.ts';
import { describeGroups, type PreparedRun, prepareRun, unsavedNote } from './setup.ts';

export interface TrainOptions {
  readonly model: LoadedModel;
  readonly recipe: Recipe;
  readonly dataset: Dataset;
  readonly tokenizer?: Tokenizer;
  readonly backend: Backend;
  readonly out: string;
  /** Optimizer steps (the step the run ends at). Default: a resumed run's planned steps, else 100. */
  readonly steps?: number;
  /**
   * Steps the lr schedule stretches over (default: `steps`; on resume, the checkpoint's). Given
   * explicitly, it restates a resumed run's schedule (see plan.ts).
   */
  readonly scheduleSteps?: number;
  /** Sequences per micro-batch (an optimizer step takes gradient_accumulation_steps of them). */
  readonly batch: number;
  readonly seed: number;
  readonly initAdapter?: string;
  /** Also write `<out>/step-N/` (a PEFT adapter) and a resumable checkpoint every N steps. */
  readonly saveEvery?: number;
  /** Evaluate every N steps (and after the last). Default: steps / 10. */
  readonly evalEvery?: number;
  /** At most this many eval batches per evaluation (default 8). */
  readonly evalBatches?: number;
  /** Continue from the newest checkpoint in `out`. */
  readonly resume?: boolean;
  /** Progress output (default: stdout; a bar on a TTY, lines otherwise). */
  readonly stream?: ProgressStream;
  /** Write the SVG/PNG loss curve at the end (default true). */
  readonly plot?: boolean;
  /** Aborted: stop after the current step, save the adapter and a resumable checkpoint, return `interrupted`. */
  readonly signal?: AbortSignal;
}

export interface TrainResult {
  /** The step the run ended at (its planned total, or where it was interrupted). */
  readonly steps: number;
  /** The step it started from (0, or the resumed checkpoint's). */
  readonly startStep: number;
  /** The checkpoint resumed from. */
  readonly resumedFrom?: string;
  /** Whether there was eval data (no eval: evalLosses is empty). */
  readonly hasEval: boolean;
  readonly losses: readonly number[];
  readonly evalLosses: readonly { step: number; loss: number }[];
  readonly adapterDirs: readonly string[];
  /** Hugging Face model directories written (a method whose result is the model itself: GaLore). */
  readonly modelDirs: readonly string[];
  /** Set when a method of the recipe has no PEFT save format: what the run wrote instead. */
  readonly unsavedNote?: string;
  /** The optimizer's param groups: name, peak lr (before the schedule), weight decay, params. */
  readonly groups: readonly {
    readonly name: string;
    readonly lr: number;
    readonly weightDecay: number;
    readonly params: readonly string[];
  }[];
  readonly tokensPerSecond: number;
  /** Set when the signal stopped the run: the last step done and its checkpoint (if any). */
  readonly interrupted?: { readonly step: number; readonly checkpoint?: string };
}

const scalarF32 = (x: number) => tensor('f32', [], [x]);
const scalarI32 = (x: number) => tensor('i32', [], [x]);

async function evaluate(exe: Executable, batches: readonly Batch[], step: number): Promise<number> {
  let sum = 0;
  let count = 0;
  for (const b of batches) {
    const { loss } = await exe.run({
      feeds: { input_ids: b.input_ids, labels: b.labels, step: scalarI32(step) },
      outputs: ['loss'],
    });
    if (b.labelTokens > 0) {
      sum += loss.data[0] * b.labelTokens;
      count += b.labelTokens;
    }
  }
  return count ? sum / count : Number.NaN;
}

async function readAll(exe: Executable, names: readonly string[]): Promise<Map<string, Tensor>> {
  const out = new Map<string, Tensor>();
  for (const n of names) out.set(n, await exe.readParam(n));
  return out;
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  const { dataset } = o;
  let recipe = o.recipe;
  if (dataset.train.length === 0) throw new UserError(`${dataset.source}: no training rows`);
  mkdirSync(o.out, { recursive: true });
  const existing = latestCheckpoint(o.out);
  if (existing && !o.resume) {
    throw new UserError(
      `${o.out} already holds a training checkpoint (${existing}); pass --resume to continue it or choose another --out`,
    );
  }
  const ckpt = o.resume && existing ? loadCheckpoint(existing) : undefined;
  const resumeWeights = ckpt ? new MapWeightStore([...ckpt.params, ...ckpt.optimizer]) : undefined;
  const batcher = new Batcher(dataset.train, {
    batchSize: o.batch,
    seed: o.seed,
    fingerprint: dataset.fingerprint,
  });
  const shape = { batch: o.batch, seq: dataset.seq };
  // Methods that calibrate before training (GoRA): they reshape the recipe and init params.
  // A resumed run calibrates again (deterministic: same batches, same weights), so its
  // recipe and ranks match the checkpoint's; the checkpoint's values win over the init.
  const calibrated = calibrates(recipe)
    ? await calibrate({
        model: o.model,
        recipe,
        shape,
        backend: o.backend,
        batcher,
        stream: o.stream,
        log: (line) => (o.stream ?? process.stdout).write(`${line}\n`),
      })
    : undefined;
  if (calibrated) recipe = calibrated.recipe;
  const run: PreparedRun = prepareRun(o.model, recipe, shape, {
    seed: o.seed,
    initAdapter: o.initAdapter,
    resumeWeights,
    ...(calibrated?.init.map.size ? { init: calibrated.init } : {}),
  });
  const startStep = ckpt?.step ?? 0;
  const saved = ckpt?.state as unknown as ResumeState | undefined;
  // Micro-batches per optimizer step; the data cursor counts micro-batches.
  const accum = recipe.gradient_accumulation_steps;
  if (saved) {
    const cursor = saved.cursor;
    batcher.assertResumable(cursor);
    if (cursor.step !== startStep * accum) {
      throw new UserError(
        `cannot resume exactly at step ${startStep}: the checkpoint consumed ${cursor.step} batches, which is not ${startStep} steps of gradient_accumulation_steps ${accum} (did it change since?). Use the same recipe, or start a fresh run.`,
      );
    }
  }
  // After the data checks: resuming on other data is the more basic mistake to report.
  const plan = planRun(
    recipe,
    { steps: o.steps, scheduleSteps: o.scheduleSteps },
    ckpt && saved ? { step: ckpt.step, state: saved } : undefined,
  );
  const steps = plan.steps;
  if (startStep >= steps)
    throw new UserError(`the checkpoint is at step ${startStep}; ask for more --steps than that`);

  // Per-layer updates (per-layer.ts): each new value goes into its param as soon as it can.
  const trainExe = await o.backend.compile(run.step, run.weights, {
    inPlaceAssigns: recipe.optimizer.per_layer,
  });
  const evalExe = await o.backend.compile(run.forward, run.weights);
  const evalSet = evalBatches(dataset.eval, o.batch, dataset.padId).slice(0, o.evalBatches ?? 8);
  const evalEvery = o.evalEvery ?? Math.max(1, Math.floor(steps / 10));
  const hasEval = evalSet.length > 0;
  const lrOf = (k: number) => lrAt(recipe.schedule, recipe.optimizer.lr, k, plan.scheduleSteps);
  if (!ckpt) rmSync(join(o.out, 'log.jsonl'), { force: true });
  const log = new TrainLog(join(o.out, 'log.jsonl'), { resumeStep: ckpt ? startStep : undefined });
  const progress = new Progress({ total: steps, startStep, stream: o.stream });
  for (const n of dataset.notices) progress.log(`note: ${n}`);
  if (existing && ckpt) progress.log(`resuming from ${existing}`);
  if (plan.notice) progress.log(plan.notice);
  // QLoRA: bits per parameter of the stored 4-bit base, from the real buffers.
  const quantized = describeQuantizedBase(run.step, run.weights);
  for (const line of run.methodLog) progress.log(line);
  if (quantized) progress.log(quantized);
  if (run.unsaved.length) progress.log(unsavedNote(run.unsaved, checkpointPath(o.out, steps)));
  // LoRA+ or recipe param_groups: which lr and decay each group trains with.
  for (const line of describeGroups(run.groups, recipe.optimizer.lr)) progress.log(line);
  // Methods with a host-side part (AdaLoRA's rank allocation), resumed from the checkpoint's state.
  const sessions = new Map<number, MethodSession<unknown>>();
  run.recipe.methods.forEach((m, entry) => {
    const start = getMethod(m.method).train?.start;
    if (start)
      sessions.set(
        entry,
        start(run.adapted, m.options, {
          steps,
          state: saved?.methods?.[String(entry)],
          log: (line) => progress.log(line),
          stateNames: run.state,
        }),
      );
  });
  const afterStep = async (step: number): Promise<Record<string, number>> => {
    const metrics: Record<string, number> = {};
    for (const s of sessions.values())
      Object.assign(
        metrics,
        await s.afterStep({
          step,
          readParam: (n) => trainExe.readParam(n),
          writeParam: (n, t) => trainExe.writeParam(n, t),
          log: (line) => progress.log(line),
        }),
      );
    return metrics;
  };
  // One optimizer step k (0-based): its micro-batches through the step executable; `extra`
  // outputs are returned per micro-batch (a method's probe reads gradients this way).
  const runStep = async (k: number, lr: number, extra: readonly string[] = []) => {
    let lossSum = 0;
    let tokens = 0;
    let gradNorm: number | undefined;
    const outs: Record<string, Tensor>[] = [];
    for (let j = 0; j < accum; j++) {
      const micro = k * accum + j;
      const batch = batcher.batchAt(micro);
      const last = j === accum - 1;
      const res = await trainExe.run({
        feeds: {
          input_ids: batch.input_ids,
          labels: batch.labels,
          lr: scalarF32(lr),
          // `step` counts micro-steps (dropout masks differ per micro-batch); t is `opt_step`.
          step: scalarI32(micro + 1),
          ...(accum > 1 ? { apply: scalarF32(last ? 1 : 0), opt_step: scalarI32(k + 1) } : {}),
        },
        outputs: [...(recipe.max_grad_norm && last ? ['loss', 'grad_norm'] : ['loss']), ...extra],
      });
      lossSum += res.loss.data[0];
      tokens += batch.tokens;
      if (res.grad_norm) gradNorm = res.grad_norm.data[0];
      outs.push(res);
    }
    return { lossSum, tokens, gradNorm, outs };
  };
  const beforeStep = async (k: number, lr: number): Promise<Record<string, number>> => {
    const metrics: Record<string, number> = {};
    for (const s of sessions.values()) {
      if (!s.beforeStep) continue;
      Object.assign(
        metrics,
        await s.beforeStep({
          step: k + 1,
          readParam: (n) => trainExe.readParam(n),
          writeParam: (n, t) => trainExe.writeParam(n, t),
          log: (line) => progress.log(line),
          probe: async (outputs) => (await runStep(k, lr, outputs)).outs,
        }),
      );
    }
    return metrics;
  };
  const losses: number[] = [];
  const evalLosses: { step: number; loss: number }[] = [];
  // A resumed run keeps the step-0 baseline its first invocation measured.
  let baseline = saved?.eval_baseline;
  if (baseline !== undefined) evalLosses.push({ step: 0, loss: baseline });
  const t0 = performance.now();
  let lastGood = existing;
  const adapterDirs: string[] = [];
  const modelDirs: string[] = [];
  // A method whose result is the model itself (GaLore) saves a model directory, not an adapter.
  const savesModel = recipe.methods.some((m) => getMethod(m.method).savesModel);

  // Divergence stops the run; the last checkpoint on disk is kept as it is.
  const diverged = (step: number, what: string) =>
    new UserError(
      `step ${step}: ${what}; training stopped. ${lastGood ? `The last good checkpoint is ${lastGood}.` : 'No checkpoint was written yet.'} Try a lower --lr or set max_grad_norm in the recipe.`,
    );
  const syncEval = async () => {
    for (const n of run.trainable) await evalExe.writeParam(n, await trainExe.readParam(n));
  };
  const saveAdapters = async (dir: string) => {
    const params = await readAll(trainExe, run.trainable);
    if (savesModel) {
      // Every tensor of the model as loaded, the trained ones replaced, in the model's dtype.
      const tensors = new Map<string, Tensor>();
      for (const n of o.model.weights.names()) tensors.set(n, params.get(n) ?? o.model.weights.get(n)!);
      for (const [n, t] of params) tensors.set(n, t);
      writeModelDir(dir, tensors, {
        srcDir: o.model.dir,
        config: o.model.config,
        dtype: storageDtype(o.model.config.torchDtype),
      });
      modelDirs.push(dir);
    }
    for (const a of run.saves) {
      adapterDirs.push(
        // Frozen tensors PEFT saves beside the adapter (a targeted embedding's base weight) come from the store.
        saveMethodAdapter(
          dir,
          run.adapted,
          (n) => params.get(n) ?? run.weights.get(n) ?? run.methodWeights.get(n)!,
          a.method,
          // A method with a host-side part may save other options than the recipe's (AdaLoRA's rank_pattern).
          sessions.get(a.entry)?.saveOptions?.() ?? a.options,
          o.model.dir ?? o.model.source,
        ),
      );
    }
  };
  const saveResumable = async (step: number) => {
    const params = await readAll(trainExe, run.trainable);
    // A checkpoint is only ever written with finite weights, so the last one is always good.
    for (const [name, t] of params) {
      if (!t.data.every(Number.isFinite)) {
        throw diverged(step, `parameter ${name} is no longer finite`);
      }
    }
    const dir = saveCheckpoint(checkpointPath(o.out, step), {
      step,
      params,
      optimizer: await readAll(trainExe, run.state),
      state: {
        cursor: batcher.cursor(step * accum),
        recipe: resolveRecipe(recipe),
        planned_steps: steps,
        schedule_steps: plan.scheduleSteps,
        ...(baseline !== undefined ? { eval_baseline: baseline } : {}),
        ...(sessions.size
          ? { methods: Object.fromEntries([...sessions].map(([entry, s]) => [String(entry), s.state()])) }
          : {}),
      } satisfies ResumeState as unknown as Record<string, unknown>,
    });
    // Keep only the newest checkpoint once the new one is complete.
    if (lastGood && lastGood !== dir && existsSync(lastGood))
      rmSync(lastGood, { recursive: true, force: true });
    lastGood = dir;
  };

  let tokensSeen = 0;
  let done = startStep;
  let interrupted = false;
  try {
    if (!ckpt && hasEval) {
      const initial = await evaluate(evalExe, evalSet, 1);
      if (Number.isFinite(initial)) {
        baseline = initial;
        evalLosses.push({ step: 0, loss: initial });
      }
      // The baseline is a log record too, so the plot's eval curve starts at step 0.
      log.write({ step: 0, eval_loss: initial, lr: lrOf(0), tokens_per_s: 0, time: 0 });
      progress.log(`eval loss at step 0: ${initial.toFixed(4)} (${evalSet.length} batch(es))`);
    }
    for (let k = startStep; k < steps; k++) {
      if (o.signal) {
        // Lets a pending signal handler run: the CPU backend's steps never yield to the event loop.
        await new Promise((r) => setImmediate(r));
        if (o.signal.aborted) {
          interrupted = true;
          break;
        }
      }
      const lr = lrOf(k);
      // A method's host side before the step (GaLore's projector refresh, which may probe the step's gradients).
      const preMetrics = await beforeStep(k, lr);
      const { lossSum, tokens, gradNorm } = await runStep(k, lr);
      // As Hugging Face logs it: the mean of the micro-batch losses.
      const loss = lossSum / accum;
      done = k + 1;
      tokensSeen += tokens;
      if (!Number.isFinite(loss)) {
        throw diverged(done, `the loss is ${loss}`);
      }
      // PEFT's update_and_allocate place: after the optimizer step, before the next step's gradients.
      const metrics = { ...preMetrics, ...(await afterStep(done)) };
      losses.push(loss);
      progress.update({ step: done, loss, lr, tokens });
      let evalLoss: number | undefined;
      if (hasEval && (done % evalEvery === 0 || done === steps)) {
        await syncEval();
        evalLoss = await evaluate(evalExe, evalSet, done);
        if (Number.isFinite(evalLoss)) evalLosses.push({ step: done, loss: evalLoss });
        progress.log(`eval loss at step ${done}: ${evalLoss.toFixed(4)}`);
      }
      log.write({
        step: done,
        loss,
        lr,
        ...(evalLoss !== undefined ? { eval_loss: evalLoss } : {}),
        ...(gradNorm !== undefined ? { grad_norm: gradNorm } : {}),
        ...metrics,
        tokens_per_s: progress.rates().tokensPerS,
        time: (performance.now() - t0) / 1000,
      });
      if (o.saveEvery && done % o.saveEvery === 0) {
        await saveAdapters(join(o.out, `step-${done}`));
        // The last step's resumable checkpoint is written below, with the final adapter.
        if (done !== steps) await saveResumable(done);
      }
    }
    progress.stop();
    // Interrupted before any step of this invocation: the newest checkpoint (if any) already holds it all.
    if (done > startStep) {
      await saveAdapters(o.out);
      if (lastGood !== checkpointPath(o.out, done)) await saveResumable(done);
      writeFileSync(join(o.out, 'recipe.json'), `${JSON.stringify(resolveRecipe(recipe), null, 2)}\n`);
    }
  } finally {
    progress.stop();
    log.close();
    trainExe.dispose();
    evalExe.dispose();
  }
  if (o.plot !== false && losses.length > 0)
    await writeLossPlot(join(o.out, 'log.jsonl'), join(o.out, 'loss'));
  const seconds = (performance.now() - t0) / 1000;
  return {
    steps: done,
    startStep,
    ...(ckpt ? { resumedFrom: existing } : {}),
    hasEval,
    losses,
    evalLosses,
    adapterDirs,
    modelDirs,
    // Named after the run: an interrupted run's checkpoint is not the planned last step's.
    ...(run.unsaved.length && lastGood ? { unsavedNote: unsavedNote(run.unsaved, lastGood) } : {}),
    tokensPerSecond: tokensSeen / seconds,
    groups: run.groups.map((g) => ({
      name: g.name,
      lr: g.lrScale * recipe.optimizer.lr,
      weightDecay: g.weightDecay,
      params: g.params,
    })),
    ...(interrupted ? { interrupted: { step: done, ...(lastGood ? { checkpoint: lastGood } : {}) } } : {}),
  };
}
