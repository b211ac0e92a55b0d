// The bridge between PEFT adapter folders and a model graph: attach a saved adapter
// (the method that reads its peft_type turns its config into options and applies them;
// its tensors bind by name), and write a trained adapter back in PEFT's format (the
// method's own `peft.toAdapter`).
import { FormatError } from '../io/errors.ts';
import {
  type PeftAdapterConfig,
  readPeftAdapter,
  readPeftConfig,
  writePeftAdapter,
} from '../io/peft/index.ts';
import type { Graph } from '../ir/graph.ts';
import type { Tensor } from '../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../ir/weights.ts';
import { getMethod, peftLoader } from '../methods/index.ts';
import { parseRopeScaling, withRopeScaling } from '../methods/longlora/index.ts';
import type { LoraOptions } from '../methods/lora/index.ts';
import { UserError } from '../util/errors.ts';

export interface AttachedAdapter {
  readonly graph: Graph;
  readonly weights: WeightStore;
  readonly adapterName: string;
  readonly config: PeftAdapterConfig;
  /** The adapter's own tensors, by graph name (each one binds to a param of `graph`). */
  readonly tensors: ReadonlyMap<string, Tensor>;
}

/**
 * Adds the adapter saved in `dir` to the graph under `adapterName`; its tensors layer over
 * `weights`. Every check that loading makes (fields peftc implements, targets the model
 * has, a tensor for every LoRA weight and a LoRA weight for every tensor) happens here,
 * so every command that takes an adapter (logits, merge, train --init-adapter) makes them.
 */
export function attachPeftAdapter(
  g: Graph,
  weights: WeightStore,
  dir: string,
  adapterName = 'default',
): AttachedAdapter {
  // The config is checked before the weights are read: an unimplemented variant's extra
  // tensors would otherwise fail as "not a LoRA key" instead of naming the field.
  const { config, file } = readPeftConfig(dir, adapterName);
  const method = peftLoader(config.peft_type);
  if (!method?.peft?.fromConfig)
    throw new FormatError(file, `peft_type '${config.peft_type}' is not supported`, 'peft_type');
  const opts = method.peft.fromConfig(config, adapterName, file);
  const saved = readPeftAdapter(dir, adapterName);
  const weightsFile = `${saved.dir}/adapter_model.safetensors`;
  const adapterStore = new MapWeightStore(saved.weights);
  const layered = new LayeredWeightStore([adapterStore, weights]);
  const before = new Set(g.params().map((p) => String(p.attrs.name)));
  let injected: { graph: Graph; weights?: WeightStore };
  try {
    injected = method.apply(g, opts, { weights: layered, log: () => {} });
  } catch (e) {
    throw new FormatError(file, (e as Error).message);
  }
  // A context extension the adapter was trained with (LongLoRA's model_max_length): the
  // model computes with the same RoPE interpolation.
  const rope = (config as Record<string, unknown>).rope_scaling;
  if (rope !== undefined && rope !== null) {
    const scaling = parseRopeScaling(rope);
    if (!scaling)
      throw new FormatError(
        file,
        `rope_scaling ${JSON.stringify(rope)} is not linear RoPE scaling (the only kind LongLoRA writes)`,
        'rope_scaling',
      );
    injected = { ...injected, graph: withRopeScaling(injected.graph, scaling.factor) };
  }
  const result = injected.weights ?? layered;
  const params = injected.graph.params().map((p) => String(p.attrs.name));
  // Every param the adapter adds must come from the file, unless the method derived it
  // from the base weights (DoRA's frozen row norms, PiSSA's residual).
  const added = params.filter((n) => !before.has(n));
  const missing = added.filter((n) => !adapterStore.has(n) && !result.has(n));
  const derivedOnly = added.filter(
    (n) => !adapterStore.has(n) && result.has(n) && isTrainable(injected.graph, n),
  );
  if (missing.length || derivedOnly.length) {
    const m = missing.length ? missing : derivedOnly;
    throw new FormatError(
      weightsFile,
      `has no tensors for ${m.length} adapter weight(s) the config targets, e.g. ${m[0]}`,
    );
  }
  // A tensor that binds to nothing would be dropped silently: the adapter then computes
  // something else than it does in PEFT (its config and weights disagree, or it was made
  // for a model with other modules). Base-weight copies are left out: a tied lm_head's
  // saved copy (lm_head.weight) is the embedding param, not its own.
  const bound = new Set(params);
  const unbound = [...saved.weights.keys()].filter(
    (n) => ADAPTER_TENSOR.test(n) && !bound.has(n) && !before.has(n),
  );
  if (unbound.length) {
    throw new FormatError(
      weightsFile,
      `${unbound.length} tensor(s) bind to no parameter of the model with this config, e.g. ${unbound[0]} ` +
        `(does target_modules name every module the file holds, and is it an adapter for this model?)`,
    );
  }
  return {
    graph: injected.graph,
    weights: result,
    adapterName,
    config: saved.config,
    tensors: saved.weights,
  };
}

/** Tensors an adapter file holds for the adapter itself (not base-weight copies PEFT saves beside it). */
const ADAPTER_TENSOR = /\.(lora_[A-Za-z_]+|modules_to_save)(\.|$)/;

function isTrainable(g: Graph, name: string): boolean {
  return g.params().some((p) => p.attrs.name === name && p.attrs.role === 'trainable');
}

/** Writes a method's trained adapter as PEFT saves it; returns the folder written. */
export function saveMethodAdapter(
  dir: string,
  g: Graph,
  read: (name: string) => Tensor,
  method: string,
  options: unknown,
  baseModel: string | null,
): string {
  const def = getMethod(method);
  if (!def.peft) throw new UserError(`method '${method}' has no PEFT save format`);
  const a = def.peft.toAdapter(g, options, read, baseModel);
  return writePeftAdapter(dir, { config: a.config, weights: a.weights, adapterName: a.adapterName });
}

/** A LoRA adapter (lora method options) saved as PEFT saves it. */
export function savePeftAdapter(
  dir: string,
  g: Graph,
  read: (name: string) => Tensor,
  o: LoraOptions,
  baseModel: string | null,
): string {
  return saveMethodAdapter(dir, g, read, 'lora', o, baseModel);
}
