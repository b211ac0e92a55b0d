// AdaLoRA's PEFT format (the `peft` hooks of the adalora method): adapter_config.json with
// peft_type ADALORA, tensors `base_model.model.<m>.lora_A|lora_B|lora_E` (io/peft/keys.ts;
// ranknum is not saved: AdaLoraModel._get_adapter_state_dict drops it), each cut to the
// triplets its rank_pattern mask kept (resize_state_dict_by_rank_pattern: rows of lora_A
// and lora_E, columns of lora_B, unless the mask keeps them all).
import { FormatError } from '../../io/errors.ts';
import { checkImplemented, isAdaLoraConfig, type PeftAdapterConfig } from '../../io/peft/index.ts';
import type { Graph } from '../../ir/graph.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { optionsFromConfig, sharedConfigFields } from '../lora/peft.ts';
import type { PeftAdapterData } from '../registry.ts';
import { keptIndices } from './inject.ts';
import { type AdaLoraOptions, adaloraOptions } from './options.ts';
import { adaloraModules } from './session.ts';

/** The options that rebuild a saved AdaLoRA adapter (its tensors then bind by name). */
export function adaloraOptionsFromPeft(
  c: PeftAdapterConfig,
  adapterName: string,
  file: string,
): AdaLoraOptions {
  if (!isAdaLoraConfig(c))
    throw new FormatError(file, `peft_type '${c.peft_type}' is not an AdaLoRA adapter`, 'peft_type');
  checkImplemented(c, file);
  if (c.target_modules === null) throw new FormatError(file, 'target_modules is missing', 'target_modules');
  if (c.total_step === null)
    throw new FormatError(
      file,
      'missing: PEFT requires total_step for AdaLoRA (an integer > 0)',
      'total_step',
    );
  return optionsFromConfig(
    adaloraOptions,
    {
      init_r: c.init_r,
      target_r: c.target_r,
      tinit: c.tinit,
      tfinal: c.tfinal,
      deltaT: c.deltaT,
      beta1: c.beta1,
      beta2: c.beta2,
      orth_reg_weight: c.orth_reg_weight,
      total_step: c.total_step,
      rank_pattern: c.rank_pattern,
      r: c.r,
      lora_alpha: c.lora_alpha,
      lora_dropout: c.lora_dropout,
      target_modules: c.target_modules,
      exclude_modules: c.exclude_modules,
      layers_to_transform: c.layers_to_transform,
      layers_pattern: c.layers_pattern,
      init_lora_weights: 'given',
      use_rslora: c.use_rslora,
      use_dora: c.use_dora,
      loftq_config: c.loftq_config,
      bias: c.bias,
      modules_to_save: c.modules_to_save,
      fan_in_fan_out: c.fan_in_fan_out,
      adapter_name: adapterName,
    },
    file,
  );
}

/** adapter_config.json fields as PEFT's AdaLoraConfig writes them for a causal LM. */
function configFor(o: AdaLoraOptions, baseModel: string | null, g: Graph): Record<string, unknown> {
  return {
    peft_type: 'ADALORA',
    ...sharedConfigFields(o, baseModel, g),
    bias: o.bias,
    use_rslora: o.use_rslora,
    use_dora: false,
    init_lora_weights: true,
    modules_to_save: null,
    init_r: o.init_r,
    target_r: o.target_r,
    tinit: o.tinit,
    tfinal: o.tfinal,
    deltaT: o.deltaT,
    beta1: o.beta1,
    beta2: o.beta2,
    orth_reg_weight: o.orth_reg_weight,
    total_step: o.total_step,
    rank_pattern: o.rank_pattern,
    alpha_pattern: {},
  };
}

function rows(t: Tensor, keep: readonly number[]): Tensor {
  const cols = t.shape[1];
  const out = new Float32Array(keep.length * cols);
  keep.forEach((src, dst) => {
    out.set(t.data.subarray(src * cols, (src + 1) * cols), dst * cols);
  });
  return tensor('f32', [keep.length, cols], out);
}

function columns(t: Tensor, keep: readonly number[]): Tensor {
  const [n, cols] = t.shape;
  const out = new Float32Array(n * keep.length);
  for (let i = 0; i < n; i++)
    keep.forEach((src, dst) => {
      out[i * keep.length + dst] = t.data[i * cols + src];
    });
  return tensor('f32', [n, keep.length], out);
}

/** PEFT's adapter for a trained (or loaded) AdaLoRA adapter; `o.rank_pattern` is the allocation to save. */
export function adaloraPeftAdapter(
  g: Graph,
  o: AdaLoraOptions,
  read: (name: string) => Tensor,
  baseModel: string | null,
): PeftAdapterData {
  const weights = new Map<string, Tensor>();
  for (const m of adaloraModules(g, o.adapter_name)) {
    const [A, E, B] = [read(m.A), read(m.E), read(m.B)];
    const mask = o.rank_pattern?.[`${m.module}.lora_E`];
    const keep = mask ? keptIndices(mask) : undefined;
    const cut = keep && keep.length !== m.r;
    weights.set(m.A, cut ? rows(A, keep) : A);
    weights.set(m.E, cut ? rows(E, keep) : E);
    weights.set(m.B, cut ? columns(B, keep) : B);
  }
  return { adapterName: o.adapter_name, config: configFor(o, baseModel, g), weights };
}
