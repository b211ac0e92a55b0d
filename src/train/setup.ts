// Everything a training run needs before its first step: the model, the recipe's
// methods applied to the forward graph, the train-step and eval graphs, and every
// param bound (base weights, adapter init or --init-adapter, optimizer state).

import type { Graph } from '../ir/graph.ts';
import { formatShape, sameShape } from '../ir/shape.ts';
import { bindParams, LayeredWeightStore, MapWeightStore, type WeightStore } from '../ir/weights.ts';
import {
  bindRecipe,
  getMethod,
  type ParamGroup as MethodParamGroup,
  paramPattern,
  type Recipe,
  RecipeEntryError,
  recipePipeline,
} from '../methods/index.ts';
import { attachPeftAdapter } from '../models/adapters.ts';
import { type LoadedModel, modelGraph } from '../models/llama/index.ts';
import {
  PipelineError,
  type PipelineOptions,
  type PipelineStep,
  phasePasses,
  runPipeline,
  type TrainSettings,
  trainableNames,
} from '../passes/index.ts';
import type { ParamGroupSpec } from '../passes/optimizer/pass.ts';
import { UserError } from '../util/errors.ts';

export interface RunShape {
  readonly batch: number;
  readonly seq: number;
}

export interface PreparedRun {
  /** Forward graph with the recipe's methods applied, in eval mode (no dropout); outputs `loss`. */
  readonly forward: Graph;
  /**
   * The forward graph as the methods left it, before any phase lowered it (no fusion):
   * where adapter structures are read (saving, method sessions).
   */
  readonly adapted: Graph;
  /**
   * forward + backward + optimizer update (assign: outputs); with gradient_accumulation_steps
   * k > 1 one run is one micro-step (inputs `apply` and `opt_step`, see appendOptimizer).
   */
  readonly step: Graph;
  /** Every param of `step`, bound. */
  readonly weights: MapWeightStore;
  /** What the recipe's methods computed besides params (PiSSA's initial A0, B0), for saving. */
  readonly methodWeights: WeightStore;
  readonly trainable: readonly string[];
  readonly state: readonly string[];
  /** The recipe's methods that save PEFT adapters (their `peft` hook), with their options and recipe entry index. */
  readonly saves: readonly { method: string; options: unknown; entry: number }[];
  /** Methods of the recipe that train params but have no PEFT save format (only the checkpoint holds them). */
  readonly unsaved: readonly string[];
  /** The optimizer's param groups, as the train phase's optimizer pass gets them (same function, same params). */
  readonly groups: readonly ParamGroupSpec[];
  /**
   * Lines for the run's output: what binding the recipe said (rank-rule's allocation), then
   * what the methods logged while applying (allocations, parameter counts).
   */
  readonly methodLog: readonly string[];
  /** The recipe as this model binds it (rank-rule written into its lora entry: recipe-bind.ts). */
  readonly recipe: Recipe;
}

/** Param groups: each method may move params into groups of their own (LoRA+: B at lr * ratio). */
function paramGroups(
  recipe: Recipe,
  trainable: readonly string[],
  shapeOf: (name: string) => readonly number[],
): ParamGroupSpec[] {
  let groups: MethodParamGroup[] = [{ name: 'default', params: [...trainable] }];
  for (const m of recipe.methods) {
    const def = getMethod(m.method);
    if (def.paramGroups)
      groups = def.paramGroups(groups, m.options as never, {
        shapeOf,
        lr: recipe.optimizer.lr,
        weightDecay: recipe.optimizer.weight_decay,
        optimizer: recipe.optimizer,
      });
  }
  // The recipe's own groups take their params out of whatever group held them.
  const claimed = new Set<string>();
  const own: MethodParamGroup[] = recipe.param_groups.map((pg, i) => {
    const re = typeof pg.params === 'string' ? paramPattern(pg.params) : undefined;
    const list = typeof pg.params === 'string' ? [] : pg.params;
    const params = trainable.filter((n) => !claimed.has(n) && (re ? re.test(n) : list.includes(n)));
    if (params.length === 0) {
      throw new UserError(
        `recipe param_groups[${i}]: ${JSON.stringify(pg.params)} matches no trainable parameter (they look like ${trainable[0]})`,
      );
    }
    for (const n of params) claimed.add(n);
    return { name: pg.name ?? `param_groups[${i}]`, params, lr: pg.lr, weight_decay: pg.weight_decay };
  });
  if (own.length)
    groups = [...own, ...groups.map((g) => ({ ...g, params: g.params.filter((n) => !claimed.has(n)) }))];
  const base = recipe.optimizer.lr;
  const wd = recipe.optimizer.weight_decay;
  return groups.map((g, i) => ({
    name: g.name ?? `group${i}`,
    lrScale: (g.lr ?? base) / base,
    weightDecay: g.weight_decay ?? wd,
    params: [...g.params],
    ...(g.rule ? { rule: g.rule } : {}),
  }));
}

function requireTrainable(trainable: readonly string[]): void {
  if (trainable.length === 0)
    throw new UserError('the recipe leaves no trainable parameter: nothing to train');
}

/** The train phase's settings from a recipe (optimizer, clipping, checkpointing, param groups). */
export function trainSettings(recipe: Recipe): TrainSettings {
  return {
    optimizer: recipe.optimizer,
    maxGradNorm: recipe.max_grad_norm ?? undefined,
    checkpointing: recipe.checkpointing,
    accumulate: recipe.gradient_accumulation_steps,
    // Methods that rewrite the training graph only (LongLoRA's S2-Attn).
    rewrites: recipe.methods
      .filter((m) => getMethod(m.method).train?.rewrite)
      .map((m) => ({ name: `${m.method}-train`, options: m.options })),
    // Methods that watch each update in the step (AdaLoRA's importance EMAs).
    observers: recipe.methods.flatMap((m) => {
      const observe = getMethod(m.method).train?.observe;
      return observe ? [observe(m.options as never)] : [];
    }),
    keepGrads: recipe.methods.some((m) => getMethod(m.method).train?.readsGradients),
    groups: (trainable, shapeOf) => {
      requireTrainable(trainable);
      return paramGroups(recipe, trainable, shapeOf);
    },
  };
}

/**
 * The pass lists a run compiles: the recipe's methods, then each phase's passes
 * (passes/phases.ts). The trainer runs the methods once and both phases on their
 * result; `peftc ir --train/--eval` runs methods + phase as one pipeline. Same lists.
 */
export function runPipelines(recipe: Recipe): {
  methods: PipelineStep[];
  train: PipelineStep[];
  eval: PipelineStep[];
} {
  return {
    methods: recipePipeline(recipe),
    train: phasePasses('train', { train: trainSettings(recipe) }),
    eval: phasePasses('eval'),
  };
}

// A recipe entry's method failed on this model (its class lives beside bindRecipe, which throws it too).
export { RecipeEntryError };

/**
 * The recipe's methods, one at a time, so that a method's failure names its recipe entry
 * (`recipe methods[1] ('malora'): ...`) rather than a pass number.
 */
function applyMethods(
  base: { graph: Graph; weights: WeightStore },
  steps: readonly PipelineStep[],
  opts: PipelineOptions,
): { graph: Graph; weights?: WeightStore } {
  let cur: { graph: Graph; weights?: WeightStore } = base;
  steps.forEach((step, i) => {
    try {
      cur = runPipeline(cur.graph, [step], { ...opts, weights: cur.weights });
    } catch (e) {
      const cause = e instanceof PipelineError && e.cause instanceof Error ? e.cause : (e as Error);
      throw new RecipeEntryError(i, step.name, cause.message, { cause: e });
    }
  });
  return cur;
}

export function prepareRun(
  model: LoadedModel,
  userRecipe: Recipe,
  shape: RunShape,
  opts: { seed: number; initAdapter?: string; resumeWeights?: WeightStore; init?: WeightStore },
): PreparedRun {
  const plain = modelGraph(model, shape, { loss: true, logits: false });
  // A calibration's param values (GoRA's A and B) sit above the model's weights, so the
  // methods see them (DoRA's magnitude starts at ||W + s B A||, as PEFT's does).
  const base = opts.init
    ? { graph: plain.graph, weights: new LayeredWeightStore([opts.init, plain.weights]) }
    : plain;
  const { recipe, notes } = bindRecipe(userRecipe, base.graph);
  const pipelines = runPipelines(recipe);
  const quiet: PipelineOptions = { log: () => {} };
  // What the methods say as they apply (allocated ranks, parameter counts): the run's log shows it.
  const methodLog: string[] = [...notes];
  const applied = applyMethods(base, pipelines.methods, {
    log: (line) => methodLog.push(line),
    model: { maxPositionEmbeddings: model.config.maxPositionEmbeddings },
  });
  const forward = runPipeline(applied.graph, pipelines.eval, quiet).graph;
  const trainable = forward
    .params()
    .filter((p) => p.attrs.role === 'trainable')
    .map((p) => String(p.attrs.name));
  // Before the train phase: autodiff would fail first, with a less useful message.
  requireTrainable(trainable);
  const step = runPipeline(applied.graph, pipelines.train, quiet).graph;
  const shapes = new Map(applied.graph.params().map((p) => [String(p.attrs.name), p.type.shape]));
  const groups = paramGroups(recipe, trainableNames(applied.graph), (n) => {
    const s = shapes.get(n);
    if (!s) throw new Error(`prepareRun: no param named '${n}' in the graph`);
    return s;
  });
  const layers: WeightStore[] = [];
  if (opts.resumeWeights) {
    checkResumable(step, opts.resumeWeights);
    layers.push(opts.resumeWeights);
  }
  if (opts.initAdapter) {
    const init = initAdapterWeights(opts.initAdapter, base, trainable);
    checkShapes(
      step,
      init,
      `--init-adapter ${opts.initAdapter}`,
      "use a recipe with the adapter's r and target_modules (see its adapter_config.json)",
    );
    layers.push(init);
  }
  layers.push(applied.weights ?? base.weights);
  const weights = bindParams(step, new LayeredWeightStore(layers), opts.seed);
  // Saving asks each method how it saves (its registry entry), not its name.
  const saves = recipe.methods
    .map((m, entry) => ({ method: m.method, options: m.options, entry }))
    .filter((m) => getMethod(m.method).peft);
  const unsaved = recipe.methods
    .filter((m) => {
      const def = getMethod(m.method);
      return def.peft === undefined && def.properties.addsTrainableParams !== false;
    })
    .map((m) => m.method);
  return {
    forward,
    adapted: applied.graph,
    step,
    weights,
    methodWeights: applied.weights ?? base.weights,
    trainable,
    state: step
      .params()
      .filter((p) => p.attrs.role === 'state')
      .map((p) => String(p.attrs.name)),
    saves,
    unsaved: [...new Set(unsaved)],
    groups,
    methodLog,
    recipe,
  };
}

/**
 * One line per optimizer group (name, peak lr, weight decay, #params), for a run whose
 * methods or recipe define groups; none for the single default group. The schedule scales
 * every group's lr alike, so the peak lr is what tells the groups apart.
 */
export function describeGroups(groups: readonly ParamGroupSpec[], lr: number): string[] {
  if (groups.length === 1 && groups[0].name === 'default') return [];
  const num = (x: number) => String(Number(x.toPrecision(6)));
  return groups.map((g) => {
    const scale = g.lrScale === 1 ? '' : ` (${num(g.lrScale)} x ${num(lr)})`;
    const n = g.params.length;
    return `optimizer group ${g.name}: lr ${num(g.lrScale * lr)}${scale}, weight_decay ${num(g.weightDecay)}, ${n} param${n === 1 ? '' : 's'}`;
  });
}

/** What a run says for the methods it cannot save as PEFT adapters (`checkpoint`: where their params are). */
export function unsavedNote(methods: readonly string[], checkpoint: string): string {
  const which = methods.map((m) => `'${m}'`).join(', ');
  const [s, has, it, its] = methods.length > 1 ? ['s', 'have', 'them', 'their'] : ['', 'has', 'it', 'its'];
  return `method${s} ${which} ${has} no PEFT save format: no adapter is written for ${it}; ${its} trained parameters are saved only in ${checkpoint} (a peftc checkpoint, which --resume reads)`;
}

const RESUME_TODO =
  'resume with the recipe it was saved with (recipe.json in --out), or start a fresh run in another --out';

/** A checkpoint resumes only a run of the same recipe: the same trainable and optimizer tensors. */
function checkResumable(g: Graph, ckpt: WeightStore): void {
  const names = new Set(
    g
      .params()
      .filter((p) => p.attrs.role === 'trainable' || p.attrs.role === 'state')
      .map((p) => String(p.attrs.name)),
  );
  const missing = [...names].filter((n) => !ckpt.has(n));
  const extra = [...ckpt.names()].filter((n) => !names.has(n));
  const some = (xs: string[]) => `${xs[0]}${xs.length > 1 ? ` and ${xs.length - 1} more` : ''}`;
  if (missing.length || extra.length) {
    const what = [
      missing.length ? `it lacks ${some(missing)} that this recipe trains` : '',
      extra.length ? `it holds ${some(extra)} that this recipe does not make` : '',
    ];
    throw new UserError(
      `--resume: the checkpoint comes from a different recipe (${what.filter(Boolean).join('; ')}); ${RESUME_TODO}`,
    );
  }
  checkShapes(g, ckpt, '--resume: the checkpoint', RESUME_TODO);
}

/** Weights the user brought must have the shapes the recipe makes (a LoRA rank that differs, ...). */
function checkShapes(g: Graph, store: WeightStore, what: string, todo: string): void {
  for (const p of g.params()) {
    const name = String(p.attrs.name);
    const t = store.has(name) ? store.get(name) : undefined;
    if (t && !sameShape(t.shape, p.type.shape)) {
      throw new UserError(
        `${what}: '${name}' has shape ${formatShape(t.shape)} but the recipe makes ${formatShape(p.type.shape)}; ${todo}`,
      );
    }
  }
}

/**
 * The adapter's tensors, which must cover every LoRA param the recipe creates. The
 * adapter is first attached to the base model exactly as `logits --adapter` attaches it,
 * so it passes the same checks (implemented fields, targets the model has, no tensor
 * left unbound) before any of its tensors seed the run.
 */
function initAdapterWeights(
  dir: string,
  base: { graph: Graph; weights: WeightStore },
  trainable: readonly string[],
): MapWeightStore {
  const attached = attachPeftAdapter(base.graph, base.weights, dir);
  const store = new MapWeightStore(attached.tensors);
  // What the method bound for them (its own load transform: AdaLoRA puts its kept triplets back among init_r).
  for (const n of trainable)
    if (store.has(n) && attached.weights.has(n)) store.set(n, attached.weights.get(n)!);
  const missing = trainable.filter((n) => n.includes('.lora_') && !store.has(n));
  if (missing.length) {
    throw new UserError(
      `--init-adapter ${dir}: the adapter has no tensor for ${missing.length} LoRA weight(s) the recipe creates, e.g. ${missing[0]} (do its target_modules and adapter name match the recipe?)`,
    );
  }
  return store;
}
