// LoRA's PEFT format (the `peft` hooks of the lora method, methods/registry.ts): the
// LoRA options an adapter_config.json stands for, and the config and tensors PEFT's
// save_pretrained writes for a trained LoRA adapter (use_dora included).
import type { z } from 'zod';
import { FormatError } from '../../io/errors.ts';
import {
  checkImplemented,
  isAdaLoraConfig,
  type LoraAdapterConfig,
  type PeftAdapterConfig,
  residualInit,
} from '../../io/peft/index.ts';
import type { Graph } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { adapterSites } from '../adapters/sites.ts';
import type { PeftAdapterData } from '../registry.ts';
import { ALL_LINEAR, fullMatch, outputHeads, savedTargetModules } from '../targets.ts';
import { type LoraOptions, loraOptions } from './options.ts';
import { initialName, isResidualInit } from './residual-init.ts';

/**
 * A method's options for the fields of a saved adapter_config.json (`file`), checked by the
 * method's own schema; the first problem names the file and the field.
 */
export function optionsFromConfig<S extends z.ZodType>(
  schema: S,
  fields: Record<string, unknown>,
  file: string,
): z.output<S> {
  const r = schema.safeParse(fields);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new FormatError(file, issue.message, issue.path.join('.'));
  }
  return r.data;
}

/** LoRA options (recipe form) equivalent to a PEFT adapter_config.json. */
export function loraOptionsFromPeft(c: PeftAdapterConfig, adapterName: string, file: string): LoraOptions {
  if (isAdaLoraConfig(c) || c.peft_type !== 'LORA')
    throw new FormatError(file, `peft_type '${c.peft_type}' is not supported (only LORA)`, 'peft_type');
  // A field that changes the math and is not implemented is refused, never ignored.
  checkImplemented(c, file);
  if (c.target_modules === null) throw new FormatError(file, 'target_modules is missing', 'target_modules');
  return optionsFromConfig(
    loraOptions,
    {
      r: c.r,
      lora_alpha: c.lora_alpha,
      lora_dropout: c.lora_dropout,
      target_modules: c.target_modules,
      exclude_modules: c.exclude_modules,
      bias: c.bias,
      use_rslora: c.use_rslora,
      use_dora: c.use_dora,
      // A residual init (PiSSA, OLoRA) is recomputed on load, as PEFT does; the file's A and B
      // then replace the init's. Any other init only set A and B, which the file holds.
      init_lora_weights:
        typeof c.init_lora_weights === 'string' && residualInit(c.init_lora_weights)
          ? c.init_lora_weights.toLowerCase() === 'olora'
            ? 'olora'
            : c.init_lora_weights
          : 'given',
      rank_pattern: c.rank_pattern ?? {},
      alpha_pattern: c.alpha_pattern ?? {},
      layers_to_transform: c.layers_to_transform,
      layers_pattern: c.layers_pattern,
      modules_to_save: c.modules_to_save,
      adapter_name: adapterName,
    },
    file,
  );
}

/** A LoRA param of adapter `a`: `<m>.lora_X.<a>.weight` or, for embeddings, `<m>.lora_embedding_X.<a>`. */
function isLoraParamOf(name: string, a: string): boolean {
  return (
    /\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\./.test(name) &&
    (name.includes(`.${a}.`) || name.endsWith(`.${a}`))
  );
}

/** The LoraConfig options every PEFT-style adapter config of peftc's methods carries. */
export interface LoraConfigFields {
  readonly task_type?: string | null;
  readonly r: number;
  readonly lora_alpha: number;
  readonly lora_dropout: number;
  readonly target_modules: string | string[];
  readonly exclude_modules: string | string[] | null;
  readonly layers_to_transform: number | number[] | null;
  readonly layers_pattern: string | string[] | null;
}

/**
 * The fields of an adapter_config.json that LoraConfig and its kin (AdaLoraConfig,
 * peftc's MALORA_MOE) share, as PEFT writes them for a causal LM after injection into `g`.
 */
export function sharedConfigFields(o: LoraConfigFields, baseModel: string | null, g?: Graph) {
  return {
    task_type: o.task_type === undefined ? 'CAUSAL_LM' : o.task_type,
    base_model_name_or_path: baseModel,
    r: o.r,
    lora_alpha: o.lora_alpha,
    lora_dropout: o.lora_dropout,
    target_modules: g ? savedTargetModules(g, o) : o.target_modules,
    exclude_modules: o.exclude_modules,
    layers_to_transform: o.layers_to_transform,
    layers_pattern: o.layers_pattern,
    inference_mode: true,
  };
}

/**
 * PEFT config fields for LoRA options, as PEFT writes them for a causal LM. With the
 * graph the adapter was injected into, `target_modules` is what PEFT saves after
 * injection ("all-linear" expanded, long lists condensed; see savedTargetModules).
 */
export function peftConfigFor(
  o: LoraOptions,
  baseModel: string | null,
  g?: Graph,
): Partial<LoraAdapterConfig> & Record<string, unknown> {
  return {
    peft_type: 'LORA',
    ...sharedConfigFields(o, baseModel, g),
    bias: o.bias,
    use_rslora: o.use_rslora,
    use_dora: o.use_dora,
    init_lora_weights: o.init_lora_weights === 'given' ? true : o.init_lora_weights,
    rank_pattern: o.rank_pattern,
    alpha_pattern: o.alpha_pattern,
    modules_to_save: o.modules_to_save,
  };
}

/** The tensors of one adapter from a graph's params (LoRA A/B, trainable biases, modules_to_save copies). */
export function adapterTensors(
  g: Graph,
  read: (name: string) => Tensor,
  adapterName: string,
): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const p of g.params()) {
    const name = String(p.attrs.name);
    const isLora = isLoraParamOf(name, adapterName);
    const isSaved = name.includes(`.modules_to_save.${adapterName}.`);
    const isBias = p.attrs.role === 'trainable' && name.endsWith('.bias');
    if (isLora || isSaved || isBias) out.set(name, read(name));
  }
  return out;
}

const EMBEDDING_LAYER_NAMES = ['embed_tokens', 'lm_head'];

/**
 * PEFT's get_peft_model_state_dict with save_embedding_layers="auto" (save_and_load.py):
 * when an embedding layer is targeted (a list naming embed_tokens or lm_head exactly, or
 * a regex other than all-linear matching a module ending in one of them), the base weight
 * of every input/output embedding that carries LoRA is saved too, as
 * `<m>.base_layer.weight`. Returns those tensors under `<m>.weight`.
 */
function embeddingBaseTensors(g: Graph, read: (name: string) => Tensor, o: LoraOptions): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const t = o.target_modules;
  const targeted =
    typeof t === 'string'
      ? t.toLowerCase() !== ALL_LINEAR &&
        g.nodes.some(
          (n) => EMBEDDING_LAYER_NAMES.includes(n.scope.split('.').pop() ?? '') && fullMatch(t, n.scope),
        )
      : t.some((e) => EMBEDDING_LAYER_NAMES.includes(e));
  if (!targeted) return out;
  const embeddingModules = new Set([...g.ofOp('embedding').map((n) => n.scope), ...outputHeads(g)]);
  for (const br of adapterSites(g)) {
    if (br.adapter !== o.adapter_name || !embeddingModules.has(br.module)) continue;
    const w = g.node(br.kind === 'linear' ? br.base.inputs[1] : br.base.inputs[0]);
    // A reader of trainable params only (the trainer's) has no base weights: PEFT loads
    // the adapter without them, so the file then just lacks this copy.
    const v = w.op === 'param' ? (read(String(w.attrs.name)) as Tensor | undefined) : undefined;
    if (v) out.set(`${br.module}.weight`, v);
  }
  return out;
}

/** PEFT's adapter (config fields and tensors by graph name) for a trained LoRA adapter. */
export function loraPeftAdapter(
  g: Graph,
  o: LoraOptions,
  read: (name: string) => Tensor,
  baseModel: string | null,
): PeftAdapterData {
  const weights = adapterTensors(g, read, o.adapter_name);
  for (const [k, v] of embeddingBaseTensors(g, read, o)) weights.set(k, v);
  const config = peftConfigFor(o, baseModel, g);
  if (isResidualInit(o.init_lora_weights) && o.save_as === 'lora')
    return { adapterName: o.adapter_name, ...convertedToPlainLora(config, weights, read, o) };
  return { adapterName: o.adapter_name, config, weights };
}

/**
 * A trained PiSSA / OLoRA adapter as plain LoRA for the ORIGINAL base weights, as PEFT's
 * save_pretrained(path_initial_model_for_weight_conversion=...) writes it
 * (peft_model.py, LoraModel.subtract_mutated_init): W + dW = W_res + s B A and
 * W = W_res + s B0 A0 give dW = s (B A - B0 A0) = s [B, -B0] [A; A0]: lora_A gets A0's
 * rows appended, lora_B gets -B0's columns; r and every rank_pattern value double; so do
 * lora_alpha and alpha_pattern (alpha * sqrt(2) with rsLoRA), keeping s; the init becomes
 * true. Like PEFT, only lora_A / lora_B tensors are written (options.ts refuses the
 * settings whose other tensors PEFT would drop).
 */
function convertedToPlainLora(
  config: PeftAdapterData['config'],
  weights: Map<string, Tensor>,
  read: (name: string) => Tensor,
  o: LoraOptions,
): Pick<PeftAdapterData, 'config' | 'weights'> {
  const out = new Map<string, Tensor>();
  for (const [name, t] of weights) {
    const isA = /\.lora_A\./.test(name);
    if (!isA && !/\.lora_B\./.test(name)) continue;
    const t0 = read(initialName(name));
    const [rows, cols] = t.shape;
    if (isA) {
      const data = new Float32Array(2 * rows * cols);
      data.set(t.data as ArrayLike<number>, 0);
      data.set(t0.data as ArrayLike<number>, rows * cols);
      out.set(name, tensor('f32', [2 * rows, cols], data));
    } else {
      const data = new Float32Array(rows * 2 * cols);
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < cols; j++) {
          data[i * 2 * cols + j] = t.data[i * cols + j];
          data[i * 2 * cols + cols + j] = -t0.data[i * cols + j];
        }
      out.set(name, tensor('f32', [rows, 2 * cols], data));
    }
  }
  const double = (p: Record<string, number>) =>
    Object.fromEntries(Object.entries(p).map(([k, v]) => [k, 2 * v]));
  return {
    config: {
      ...config,
      init_lora_weights: true,
      r: 2 * o.r,
      lora_alpha: o.use_rslora ? o.lora_alpha * 2 ** 0.5 : 2 * o.lora_alpha,
      rank_pattern: double(o.rank_pattern),
      alpha_pattern: double(o.alpha_pattern),
    },
    weights: out,
  };
}
