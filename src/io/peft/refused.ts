// The LoraConfig fields peftc does not implement, with the values that change what a
// saved adapter computes. Loading such an adapter as plain LoRA would give other
// outputs than PEFT's (a PiSSA adapter's logits differ by 0.22: PEFT rebuilds the
// residual base weights on load), so these values are refused, never ignored.
// Null / false / empty values and keys not listed here are accepted: the first two
// are PEFT's "off", and an unknown key may come from a newer PEFT that added a field
// with no effect on the math. Fields peftc implements (r, lora_alpha, use_rslora,
// rank_pattern, alpha_pattern, target_modules, exclude_modules, layers_to_transform,
// layers_pattern, modules_to_save, bias, lora_dropout) are not listed. Fields that
// only act with one of the refused values (loftq_config, eva_config, corda_config,
// lora_ga_config, qalora_group_size) or never touch the weights (megatron_config,
// megatron_core: which layer class holds the same math; runtime_config; ensure_weight_tying)
// are accepted. Source: PEFT's src/peft/tuners/lora/{config,layer,variants}.py.
import { FormatError } from '../errors.ts';

/** How a field's refused value is explained: what it means, and what the user can do instead. */
export interface Refusal {
  readonly what: string;
  readonly todo: string;
}

/** Convert-to-plain-LoRA advice for the inits that rewrite the base weights. */
const CONVERT =
  'convert it to plain LoRA in PEFT (save_pretrained(..., path_initial_model_for_weight_conversion=<the saved initial adapter>)) or merge it there (merge_and_unload) and use the merged model';
const MERGE = 'merge it in PEFT (merge_and_unload) and use the merged model instead of the adapter';

/**
 * init_lora_weights values whose adapter loads as plain LoRA: the init only set A and B,
 * which the file overrides (MiCA only freezes B in training; its forward is LoRA's).
 * Spelled as PEFT's update_layer compares them: "gaussian" and "mica" in any case.
 */
const plainInit = (v: string) => ['gaussian', 'mica'].includes(v.toLowerCase()) || v === 'orthogonal';

/**
 * Inits that replace the base weight by a residual, which peftc recomputes on load as
 * PEFT does (methods/lora/residual-init.ts). Spelled as PEFT's update_layer compares them:
 * startswith("pissa") (pissa, pissa_niter_<N>) and "olora" in any case.
 */
export const residualInit = (v: string) =>
  v === 'pissa' || /^pissa_niter_[0-9]+$/.test(v) || v.toLowerCase() === 'olora';

function initRefusal(v: string): Refusal {
  const s = v.toLowerCase();
  if (s === 'corda')
    return { what: 'CorDA (PEFT replaces each targeted base weight by a residual on load)', todo: CONVERT };
  if (s === 'loftq')
    return {
      what: 'LoftQ (PEFT replaces each targeted base weight by a quantized residual on load)',
      todo: MERGE,
    };
  if (s === 'lora_ga')
    return {
      what: 'LoRA-GA (PEFT subtracts the initial s·B·A from each targeted base weight on load)',
      todo: MERGE,
    };
  if (s === 'eva')
    return {
      what: 'EVA (data-driven init; peftc has no parity test of an EVA adapter against PEFT yet)',
      todo: MERGE,
    };
  return {
    what: 'an initialization PEFT does not list (it accepts true, false, "gaussian", "eva", "olora", "pissa", "pissa_niter_N", "corda", "loftq", "orthogonal", "lora_ga", "mica")',
    todo: 'check the value',
  };
}

interface FieldRule {
  /** The refusal for value `v`, or undefined when `v` is accepted. */
  readonly refuse: (v: unknown) => Refusal | undefined;
}

const whenSet = (r: Refusal): FieldRule => ({ refuse: (v) => (isOff(v) ? undefined : r) });

/** PEFT's "off" values: null, false, and an empty list / object / string. */
function isOff(v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === '') return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.keys(v as object).length === 0;
  return false;
}

/** field -> which values are refused and why. */
export const REFUSED_FIELDS = {
  init_lora_weights: {
    refuse: (v) => (typeof v !== 'string' || plainInit(v) || residualInit(v) ? undefined : initRefusal(v)),
  },
  fan_in_fan_out: whenSet({
    what: 'weights stored as (in, out) (GPT-2 Conv1D layers); peftc loads LLaMA-style nn.Linear models',
    todo: 'use an adapter for a LLaMA-architecture model',
  }),
  lora_bias: whenSet({ what: 'a bias on lora_B (added to every output)', todo: MERGE }),
  layer_replication: whenSet({
    what: 'layer replication (PEFT stacks copies of base layers before adding LoRA)',
    todo: MERGE,
  }),
  use_qalora: whenSet({
    what: 'QA-LoRA (the input is average-pooled in groups before lora_A)',
    todo: MERGE,
  }),
  trainable_token_indices: whenSet({
    what: 'trainable token rows of the embedding (PEFT TrainableTokens, saved beside the LoRA weights)',
    todo: MERGE,
  }),
  target_parameters: whenSet({
    what: 'LoRA on raw parameters (e.g. MoE expert weights) rather than modules',
    todo: MERGE,
  }),
  alora_invocation_tokens: whenSet({
    what: 'Activated LoRA (the adapter acts only from the invocation tokens on, so it cannot be merged either)',
    todo: 'use a plain LoRA adapter',
  }),
  use_bdlora: whenSet({ what: 'BD-LoRA (block-diagonal lora_A or lora_B)', todo: MERGE }),
  kasa_config: whenSet({
    what: 'KaSA (a learned diagonal between lora_A and lora_B, and a truncated base weight)',
    todo: MERGE,
  }),
  arrow_config: whenSet({
    what: 'Arrow routing (a per-token mix of several LoRA experts)',
    todo: 'use a plain LoRA adapter',
  }),
  monteclora_config: whenSet({
    what: 'MonteCLoRA (sampled mixtures of LoRA factors)',
    todo: MERGE,
  }),
  velora_config: whenSet({
    what: 'VeLoRA (compressed activations and extra buffers in the adapter file)',
    todo: 'train a plain LoRA adapter, or merge it in PEFT and use the merged model',
  }),
} as const satisfies Readonly<Record<string, FieldRule>>;

export type RefusedFieldName = keyof typeof REFUSED_FIELDS;

export interface RefusedField extends Refusal {
  readonly field: string;
  readonly value: unknown;
}

/** The first field of a parsed adapter_config.json (in table order) whose value peftc does not implement. */
export function refusedField(config: Readonly<Record<string, unknown>>): RefusedField | undefined {
  for (const [field, rule] of Object.entries(REFUSED_FIELDS) as [string, FieldRule][]) {
    if (!(field in config)) continue;
    const r = rule.refuse(config[field]);
    if (r) return { field, value: config[field], ...r };
  }
  return undefined;
}

/** `<value> means <what>, which is not supported yet` (the part after the file and field). */
export function describeRefusal(r: RefusedField): string {
  return `${JSON.stringify(r.value)} means ${r.what}, which is not supported yet`;
}

/** Throws for the first refused field: `<file>: '<field>': <value> means ..., which is not supported yet; <todo>`. */
export function checkImplemented(config: Readonly<Record<string, unknown>>, file: string): void {
  const r = refusedField(config);
  if (r) throw new FormatError(file, `${describeRefusal(r)}; ${r.todo}`, r.field);
}
