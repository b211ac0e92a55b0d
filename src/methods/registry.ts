// The method registry. A method = options schema (keys as the reference implementation
// names them) + apply (its rewrite rules) + merge rule + what it does to the optimizer's
// param groups (lr, decay, its own update rule) + how its adapters are read from and
// written to PEFT's format (peft) + the generic properties it promises, which the test
// suite checks on every registered method (test/methods/generic-properties.test.ts).
// The adapters a method adds are found by the structure it registers
// (adapters/sites.ts), which merge, disable and save go through.
// Registering a method also registers its passes: `<name>`, and `<name>-merge` /
// `<name>-unmerge` when it has a merge rule, `<name>-train` when it rewrites the training
// graph only (the train phase runs it before autodiff).
import type { z } from 'zod';
import type { PeftAdapterConfig } from '../io/peft/index.ts';
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import type { WeightStore } from '../ir/weights.ts';
import type { OptimizerSpec } from '../passes/optimizer/pass.ts';
import type { UpdateObserver, UpdateRule } from '../passes/optimizer/types.ts';
import type { ModelInfo, PassResult } from '../passes/pass.ts';
import { hasPass, registerPass } from '../passes/pass.ts';

export interface MethodContext {
  readonly weights?: WeightStore;
  readonly log: (line: string) => void;
  /** Facts about the model (its trained context length), when the caller gave them. */
  readonly model?: ModelInfo;
}

/** One optimizer param group (torch.optim style); `params` are param names. */
export interface ParamGroup {
  readonly name?: string;
  readonly params: readonly string[];
  readonly lr?: number;
  readonly weight_decay?: number;
  /** An update of its own for these params (GaLore's projected AdamW); default: the recipe optimizer's. */
  readonly rule?: UpdateRule;
}

/** One adapter as PEFT saves it: config fields and tensors by graph name (io/peft maps the names). */
export interface PeftAdapterData {
  readonly adapterName: string;
  /** adapter_config.json fields (defaults of its peft_type's config are filled in on write). */
  readonly config: Readonly<Record<string, unknown>>;
  readonly weights: Map<string, Tensor>;
}

/** How a method's adapters are read from and written to PEFT's format. */
export interface PeftFormat<O> {
  /** PEFT's peft_type of the adapters (adapter_config.json): 'LORA', 'ADALORA'. */
  readonly peftType: string;
  /**
   * The options that rebuild a saved adapter on a model (its tensors then bind by name;
   * init 'given'), from its adapter_config.json; errors name `file` and the field.
   * Absent: adapters of this type load through another method.
   */
  readonly fromConfig?: (config: PeftAdapterConfig, adapterName: string, file: string) => O;
  /** The PEFT adapter a trained graph holds for these options. */
  readonly toAdapter: (
    g: Graph,
    options: O,
    read: (name: string) => Tensor,
    baseModel: string | null,
  ) => PeftAdapterData;
}

export interface MethodProperties {
  /** With its default init the method leaves the model's outputs unchanged (LoRA: B = 0). */
  readonly identityAtInit: boolean;
  /** The merged graph computes what the unmerged one does. */
  readonly mergeEqualsForward: boolean;
  /** unmerge(merge(W)) = W. */
  readonly mergeUnmergeIdentity: boolean;
  /** The method adds trainable params (adapters do; a base rewrite like qlora does not). Default true. */
  readonly addsTrainableParams?: boolean;
  /**
   * The method rewrites the graph (default true). False for a method that acts on the
   * optimizer only (LoRA+): its apply returns the graph unchanged, which the tests check.
   */
  readonly changesGraph?: boolean;
}

/** What a method's paramGroups hook may know besides the groups: shapes and the optimizer's settings. */
export interface ParamGroupContext {
  /** Shape of a trainable param, by name. */
  readonly shapeOf: (name: string) => readonly number[];
  /** The optimizer's lr and weight decay (a group without its own uses these). */
  readonly lr: number;
  readonly weightDecay: number;
  /** The recipe's optimizer (a group's own rule, GaLore's, takes its type, betas and eps). */
  readonly optimizer?: OptimizerSpec;
}

export interface MethodFixtures {
  /**
   * Options (recipe form, without `method`) for the generic property tests, which build
   * small models with linear modules at scopes `model.layers.<i>.self_attn.{q,k,v,o}_proj`
   * and `model.layers.<i>.mlp.{up,down}_proj`. `init: 'identity'` must be the method's
   * default init; `init: 'random'` must make the adapter change the outputs.
   */
  readonly options: (p: { r: number; alpha: number; init: 'identity' | 'random' }) => Record<string, unknown>;
}

/** What a method's host-side hook sees after each optimizer step of a training run. */
export interface StepContext {
  /** The optimizer step just taken, 1-based. */
  readonly step: number;
  readonly readParam: (name: string) => Promise<Tensor>;
  readonly writeParam: (name: string, value: Tensor) => Promise<void>;
  /** A line for the run's progress output. */
  readonly log: (line: string) => void;
}

/** What a method's host-side hook sees before an optimizer step. */
export interface PreStepContext extends StepContext {
  /**
   * Runs the coming step's micro-batches once more through the compiled step, with the same
   * feeds (so the same gradients), and returns the named outputs of each micro-batch. The
   * step's assignments happen as in any run: the method must have made them harmless first
   * (GaLore's hold flag) and put back what they moved.
   */
  readonly probe: (outputs: readonly string[]) => Promise<readonly Record<string, Tensor>[]>;
}

/** A method's host-side part of one training run (AdaLoRA's budget and masking). */
export interface MethodSession<O> {
  /**
   * Runs before every optimizer step (`step` is the coming one, 1-based): GaLore's projector
   * refresh. Returns numbers for that step's log record.
   */
  readonly beforeStep?: (ctx: PreStepContext) => Promise<Record<string, number> | undefined>;
  /**
   * Runs after every optimizer step, before the next (PEFT's update_and_allocate place:
   * after optimizer.step(), before zero_grad()). Returns numbers for the step's log record.
   */
  readonly afterStep: (ctx: StepContext) => Promise<Record<string, number> | undefined>;
  /** JSON that the run's checkpoints keep; `start` gets it back on resume. */
  readonly state: () => Record<string, unknown>;
  /** The options the adapter is saved with at this point of the run (default: the recipe's). */
  readonly saveOptions?: () => O;
}

/** What a method's calibration (before a run's graphs are built) may use: GoRA's gradients. */
export interface CalibrationContext {
  /** The model's forward graph with its loss, before any recipe method. */
  readonly graph: Graph;
  /** The model's weights (the params of `graph`). */
  readonly weights: WeightStore;
  /** The recipe entry after this one, which the calibration may reshape (GoRA's lora entry). */
  readonly next?: { readonly method: string; readonly options: unknown };
  /**
   * The mean gradient of the loss w.r.t. the named params (frozen ones included) over the
   * first `n` training batches, with the weights unchanged (no update); not kept afterwards.
   */
  readonly gradients: (params: readonly string[], n: number) => Promise<Map<string, Tensor>>;
  readonly log: (line: string) => void;
}

/** A calibration's result: the next entry's new options and initial values of params. */
export interface Calibration {
  readonly next?: unknown;
  /** Values of params by name (adapter inits); they shadow the params' init specs. */
  readonly init?: ReadonlyMap<string, Tensor>;
}

/** What a method adds to a training run besides its graph rewrite and param groups. */
export interface MethodTraining<O> {
  /**
   * Watches every trainable param's update inside the compiled step (the optimizer pass
   * calls it with the gradient the update used and the param's new value), e.g. to keep
   * state tensors of its own. The observer picks its params by name.
   */
  readonly observe?: (options: O) => UpdateObserver;
  /**
   * Rewrites the training graph only (the train phase runs it before autodiff); the eval
   * and serve graphs keep the method's plain forward (LongLoRA's S2-Attn: full attention
   * at inference).
   */
  readonly rewrite?: (g: Graph, options: O) => Graph;
  /** The session reads `grad:<param>` outputs of the step (its probe): the step graph keeps them. */
  readonly readsGradients?: boolean;
  /**
   * Runs once before the run's graphs are built, on the plain model (GoRA: gradients of
   * the frozen target weights, rank allocation, adapter init); the trainer applies the result.
   */
  readonly calibrate?: (options: O, ctx: CalibrationContext) => Promise<Calibration>;
  /** Starts the host-side part for a run of `steps` optimizer steps over `graph` (the forward graph). */
  readonly start?: (
    graph: Graph,
    options: O,
    ctx: {
      readonly steps: number;
      readonly state?: Record<string, unknown>;
      readonly log: (line: string) => void;
      /** The step graph's optimizer state params (role 'state'), by name. */
      readonly stateNames?: readonly string[];
    },
  ) => MethodSession<O>;
}

/**
 * A method that sets options of a later recipe entry from the model (rank-rule: the next
 * lora entry's rank_pattern / alpha_pattern). The recipe binds it once the model graph is
 * known (recipe-bind.ts), so every later step (apply, save, log) sees plain options.
 */
export interface EntryShaper<O> {
  /** It shapes the first later entry of one of these methods. */
  readonly methods: readonly string[];
  /** A recipe-time problem with that entry (a key both would set): its key and why. */
  readonly check?: (
    options: O,
    target: Readonly<Record<string, unknown>>,
  ) => { key: string; message: string } | undefined;
  /** The target's options for this model graph, and lines for the run's log. */
  readonly bind: (
    g: Graph,
    options: O,
    target: Readonly<Record<string, unknown>>,
  ) => { options: Record<string, unknown>; notes: readonly string[] };
}

export interface MethodDef<O = unknown> {
  readonly name: string;
  readonly description: string;
  readonly options: z.ZodType<O>;
  readonly apply: (g: Graph, options: O, ctx: MethodContext) => PassResult;
  /** Fold this method's adapter (named by its options) into the base weights. */
  readonly merge?: (g: Graph, options: O, ctx: MethodContext) => PassResult;
  /** Undo merge: restore the adapter from the store and subtract it from the base weights. */
  readonly unmerge?: (g: Graph, options: O, ctx: MethodContext) => PassResult;
  /** What the method does to the optimizer's param groups (LoRA+: B at a higher lr). Default: nothing. */
  readonly paramGroups?: (groups: readonly ParamGroup[], options: O, ctx: ParamGroupContext) => ParamGroup[];
  /**
   * How this method's adapters are saved for other tools and loaded back (PEFT's format).
   * Undefined: there is no PEFT format for it; a trained run keeps its params only in the
   * peftc checkpoint and says so. Methods that add no trainable params need none.
   */
  readonly peft?: PeftFormat<O>;
  /**
   * The method's result is the model itself, not an adapter (GaLore trains the full-rank
   * weights): a run saves a Hugging Face model directory (config.json + safetensors, the
   * trained params replacing the model's tensors) where adapters would go.
   */
  readonly savesModel?: boolean;
  /** Training-time hooks (observers in the step graph, a host-side session). */
  readonly train?: MethodTraining<O>;
  /** Sets a later recipe entry's options from the model (see EntryShaper). */
  readonly shapes?: EntryShaper<O>;
  readonly properties: MethodProperties;
  readonly fixtures: MethodFixtures;
}

export class MethodError extends Error {
  override name = 'MethodError';
}

const registry = new Map<string, MethodDef>();

/** Registers a method and its passes. Names are kebab-case and new. */
export function registerMethod<O>(def: MethodDef<O>): MethodDef<O> {
  if (registry.has(def.name)) throw new MethodError(`method '${def.name}' is already registered`);
  const d = def as unknown as MethodDef;
  const passes: Array<
    [string, string, ((g: Graph, o: unknown, c: MethodContext) => PassResult) | undefined]
  > = [
    [def.name, def.description, d.apply],
    [`${def.name}-merge`, `merge ${def.name} into the base weights`, d.merge],
    [`${def.name}-unmerge`, `undo ${def.name}-merge`, d.unmerge],
  ];
  const trainRewrite = d.train?.rewrite;
  if (trainRewrite)
    passes.push([
      `${def.name}-train`,
      `${def.name}'s rewrite of the training graph`,
      (g, o) => ({ graph: trainRewrite(g, o) }),
    ]);
  for (const [name] of passes)
    if (hasPass(name)) throw new MethodError(`method '${def.name}': a pass named '${name}' already exists`);
  registry.set(def.name, d);
  for (const [name, description, fn] of passes) {
    if (!fn) continue;
    registerPass({
      name,
      description,
      options: d.options,
      run: (g, ctx) => fn(g, ctx.options, { weights: ctx.weights, log: ctx.log, model: ctx.model }),
    });
  }
  return def;
}

export function hasMethod(name: string): boolean {
  return registry.has(name);
}

export function getMethod(name: string): MethodDef {
  const m = registry.get(name);
  if (!m) throw new MethodError(`unknown method '${name}' (known: ${methodNames().join(', ')})`);
  return m;
}

export function methodNames(): string[] {
  return [...registry.keys()].sort();
}

export function methods(): MethodDef[] {
  return [...registry.values()];
}

/** The method that loads PEFT adapters of `peftType` (the first registered one with a fromConfig). */
export function peftLoader(peftType: string): MethodDef | undefined {
  return methods().find((m) => m.peft?.peftType === peftType && m.peft.fromConfig);
}
