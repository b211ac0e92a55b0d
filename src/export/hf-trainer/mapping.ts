// A peftc recipe in its Hugging Face form: which PEFT config (LoraConfig / AdaLoraConfig and
// their keys), which BitsAndBytesConfig, which TrainingArguments, and which optimizer
// (`create_loraplus_optimizer`, transformers' GaLore optims). Pure data: template.ts turns it
// into Python. A method with no Hugging Face form is refused here, with the reason, before
// anything is written. The recipe must be bound to the model first (rank-rule's allocation
// is then in its lora entry's rank_pattern / alpha_pattern).
import type { Graph } from '../../ir/graph.ts';
import type { OptimizerConfig, Recipe } from '../../methods/index.ts';
import { selectTargets } from '../../methods/index.ts';
import { UserError } from '../../util/errors.ts';
import { expr, type Py } from './python.ts';

/** Why a method has no Hugging Face Trainer form (what it needs that transformers / PEFT lack). */
export const NO_HF_FORM: Readonly<Record<string, string>> = {
  longlora:
    "LongLoRA trains with shifted sparse attention (S2-Attn), an attention rewrite transformers' Llama attention does not have (the official repository patches it: llama_attn_replace.py); plain LoRA there would train a different model",
  malora:
    'MaLoRA (rank per head / per matrix) trains block-masked adapters; PEFT trains one dense rank per module, so the masks would be lost (its saved adapter loads in PEFT, but training it there is another method)',
  'malora-moe':
    'the MALoRA mixture of asymmetric LoRA experts with a router has no PEFT adapter type (PEFT has no mixture-of-LoRA tuner)',
  gora: "GoRA's ranks and initial B come from gradients over the first n_steps batches, a calibration PEFT has no form for; train it with peftc, or export a lora recipe with the rank_pattern / alpha_pattern a GoRA run wrote",
};

/** The methods that only shape a later entry and are bound into it (nothing of their own to map). */
const BOUND = new Set(['rank-rule']);

export interface HfAdapter {
  /** `LoraConfig` or `AdaLoraConfig` (peft). */
  readonly config: 'LoraConfig' | 'AdaLoraConfig';
  readonly kwargs: Readonly<Record<string, Py>>;
  readonly adapterName: string;
  /** PiSSA / OLoRA saved as plain LoRA for the original weights (PEFT's path_initial_model_for_weight_conversion). */
  readonly convertResidual: boolean;
  /** The adapter starts from random values that peftc draws (LoRA A, AdaLoRA A/B): the project carries them. */
  readonly randomInit: boolean;
}

export interface HfPlan {
  readonly adapter?: HfAdapter;
  /** BitsAndBytesConfig keyword arguments (qlora). */
  readonly quantization?: Readonly<Record<string, Py>>;
  /** create_loraplus_optimizer: the optimizer class and its keyword arguments besides the model. */
  readonly loraplus?: { readonly optimizerClass: string; readonly kwargs: Readonly<Record<string, Py>> };
  /** GaLore: the module names whose weights train at full rank (every other param frozen). */
  readonly fullRank?: readonly string[];
  /** AdaLoRA: update_and_allocate after every optimizer step (a callback). */
  readonly adalora: boolean;
  /** TrainingArguments keyword arguments besides output_dir (max_steps included). */
  readonly training: Readonly<Record<string, Py>>;
  /** Packages beyond torch / transformers / peft / accelerate (bitsandbytes, galore-torch). */
  readonly requirements: readonly string[];
  /** Where the Hugging Face run differs from peftc's, one line each (for the README). */
  readonly notes: readonly string[];
}

export interface MapOptions {
  /** Optimizer steps, micro-batch size (peftc's defaults already applied). */
  readonly steps: number;
  readonly batch: number;
  /** Names the recipe in refusals (the --recipe file). */
  readonly recipeFile: string;
}

class Refusal extends UserError {}

function refuse(file: string, where: string, reason: string): never {
  throw new Refusal(`${file}: ${where}: no Hugging Face Trainer form: ${reason}; nothing was written`);
}

type Opts = Readonly<Record<string, unknown>>;
const isOn = (v: unknown) =>
  v !== null && v !== undefined && v !== false && !(Array.isArray(v) && v.length === 0);

/** LoraConfig keys from a lora / dora entry; only the ones that differ from "not set" besides the core. */
function loraKwargs(o: Opts, where: string, file: string): HfAdapter {
  const init = o.init_lora_weights;
  if (init === 'given')
    refuse(
      file,
      `${where}.init_lora_weights`,
      '"given" loads an adapter\'s own values; start from an adapter with train --init-adapter instead',
    );
  const residual =
    typeof init === 'string' && (init === 'pissa' || init === 'olora' || init.startsWith('pissa_niter_'));
  const k: Record<string, Py> = {
    r: o.r as number,
    lora_alpha: o.lora_alpha as number,
    lora_dropout: o.lora_dropout as number,
    target_modules: o.target_modules as Py,
  };
  if (isOn(o.exclude_modules)) k.exclude_modules = o.exclude_modules as Py;
  if (o.bias !== 'none') k.bias = o.bias as string;
  if (o.use_rslora) k.use_rslora = true;
  if (o.use_dora) k.use_dora = true;
  if (init !== true) k.init_lora_weights = init as Py;
  for (const key of ['rank_pattern', 'alpha_pattern'] as const)
    if (Object.keys((o[key] as object | undefined) ?? {}).length) k[key] = o[key] as Py;
  for (const key of ['layers_to_transform', 'layers_pattern', 'modules_to_save'] as const)
    if (isOn(o[key])) k[key] = o[key] as Py;
  k.task_type = 'CAUSAL_LM';
  return {
    config: 'LoraConfig',
    kwargs: k,
    adapterName: String(o.adapter_name ?? 'default'),
    convertResidual: residual && o.save_as === 'lora',
    randomInit: init === true || init === 'gaussian' || init === false,
  };
}

const ADALORA_KEYS = [
  'init_r',
  'target_r',
  'tinit',
  'tfinal',
  'deltaT',
  'beta1',
  'beta2',
  'orth_reg_weight',
  'total_step',
];

function adaloraKwargs(o: Opts, where: string, file: string): HfAdapter {
  if (o.init_lora_weights === 'given')
    refuse(
      file,
      `${where}.init_lora_weights`,
      '"given" loads an adapter\'s own values; start from an adapter with train --init-adapter instead',
    );
  if (isOn(o.rank_pattern))
    refuse(
      file,
      `${where}.rank_pattern`,
      'a saved rank allocation is for loading an adapter, not for a new run; remove it',
    );
  const k: Record<string, Py> = {};
  for (const key of ADALORA_KEYS) k[key] = o[key] as number;
  k.lora_alpha = o.lora_alpha as number;
  k.lora_dropout = o.lora_dropout as number;
  k.target_modules = o.target_modules as Py;
  if (isOn(o.exclude_modules)) k.exclude_modules = o.exclude_modules as Py;
  for (const key of ['layers_to_transform', 'layers_pattern'] as const)
    if (isOn(o[key])) k[key] = o[key] as Py;
  if (o.init_lora_weights !== true) k.init_lora_weights = o.init_lora_weights as Py;
  k.task_type = 'CAUSAL_LM';
  return {
    config: 'AdaLoraConfig',
    kwargs: k,
    adapterName: String(o.adapter_name ?? 'default'),
    convertResidual: false,
    randomInit: true,
  };
}

/** BitsAndBytesConfig for a qlora entry (transformers quantizes every linear but the output head). */
function quantKwargs(o: Opts, where: string, file: string): Record<string, Py> {
  if (o.blocksize !== 64)
    refuse(
      file,
      `${where}.blocksize`,
      `transformers' BitsAndBytesConfig quantizes in blocks of 64 and takes no blocksize (the recipe has ${o.blocksize}); use 64`,
    );
  const t = o.target_modules;
  if (!(typeof t === 'string' && t.toLowerCase() === 'all-linear'))
    refuse(
      file,
      `${where}.target_modules`,
      'transformers quantizes every linear layer but those in llm_int8_skip_modules; use "all-linear" with exclude_modules as a list',
    );
  const ex = o.exclude_modules;
  if (typeof ex === 'string')
    refuse(
      file,
      `${where}.exclude_modules`,
      'llm_int8_skip_modules takes module names, not a regex; give a list',
    );
  return {
    load_in_4bit: true,
    bnb_4bit_quant_type: o.quant_type as string,
    bnb_4bit_use_double_quant: o.double_quant as boolean,
    // peftc computes in f32; on GPUs torch.bfloat16 is the usual choice.
    bnb_4bit_compute_dtype: expr('torch.float32'),
    ...(Array.isArray(ex) && ex.length ? { llm_int8_skip_modules: [...(ex as string[]), 'lm_head'] } : {}),
  };
}

/** The optimizer class create_loraplus_optimizer builds, and its own keyword arguments. */
function optimizerClass(opt: OptimizerConfig): { cls: string; kwargs: Record<string, Py>; pkg?: string } {
  if (opt.type === 'sgd')
    return {
      cls: 'torch.optim.SGD',
      kwargs: { momentum: opt.momentum, dampening: opt.dampening, nesterov: opt.nesterov },
    };
  const adam = { betas: [...opt.betas] as Py, eps: opt.eps };
  const bnb: Record<string, string> = {
    adamw8bit: 'bitsandbytes.optim.AdamW8bit',
    paged_adamw: 'bitsandbytes.optim.PagedAdamW',
    paged_adamw8bit: 'bitsandbytes.optim.PagedAdamW8bit',
  };
  if (opt.type === 'adamw') return { cls: 'torch.optim.AdamW', kwargs: adam };
  return { cls: bnb[opt.type], kwargs: adam, pkg: 'bitsandbytes' };
}

/** transformers' `optim` name for the recipe optimizer (Trainer builds it). */
const OPTIM: Record<OptimizerConfig['type'], string> = {
  adamw: 'adamw_torch',
  adamw8bit: 'adamw_bnb_8bit',
  paged_adamw: 'paged_adamw_32bit',
  paged_adamw8bit: 'paged_adamw_8bit',
  sgd: 'sgd',
};

function galoreOptim(opt: OptimizerConfig, file: string): string {
  const base =
    opt.type === 'adamw' ? 'galore_adamw' : opt.type === 'adamw8bit' ? 'galore_adamw_8bit' : undefined;
  if (!base)
    refuse(
      file,
      'optimizer.type',
      `transformers' GaLore optimizers are AdamW and AdamW 8-bit (galore_adamw, galore_adamw_8bit), not ${opt.type}`,
    );
  return opt.per_layer ? `${base}_layerwise` : base;
}

/**
 * The Hugging Face form of a bound recipe. `g` is the model's graph (GaLore's targets are
 * resolved to full module names on it, as peftc selects them). Throws a UserError naming the
 * recipe entry for anything without a Hugging Face form.
 */
export function hfPlan(recipe: Recipe, g: Graph, o: MapOptions): HfPlan {
  const file = o.recipeFile;
  const opt = recipe.optimizer;
  let adapter: HfAdapter | undefined;
  let quantization: Record<string, Py> | undefined;
  let loraplus: HfPlan['loraplus'];
  let fullRank: string[] | undefined;
  const requirements = new Set<string>();
  const notes: string[] = [];
  const training: Record<string, Py> = {};
  let adapterAt = -1;
  recipe.methods.forEach((m, i) => {
    const where = `methods[${i}] ('${m.method}')`;
    const reason = NO_HF_FORM[m.method];
    if (reason) refuse(file, where, reason);
    if (BOUND.has(m.method)) return;
    const setAdapter = (a: HfAdapter) => {
      if (adapter)
        refuse(
          file,
          where,
          `a second adapter (after methods[${adapterAt}]): the Trainer project trains one PEFT adapter; put the others in their own recipes`,
        );
      adapter = a;
      adapterAt = i;
    };
    switch (m.method) {
      case 'lora':
      case 'dora':
        setAdapter(loraKwargs(m.options, `methods[${i}]`, file));
        break;
      case 'adalora':
        setAdapter(adaloraKwargs(m.options, `methods[${i}]`, file));
        break;
      case 'qlora':
        quantization = quantKwargs(m.options, `methods[${i}]`, file);
        requirements.add('bitsandbytes');
        break;
      case 'loraplus': {
        const c = optimizerClass(opt);
        if (c.pkg) requirements.add(c.pkg);
        loraplus = {
          optimizerClass: c.cls,
          kwargs: {
            lr: opt.lr,
            loraplus_lr_ratio: m.options.loraplus_lr_ratio as number,
            loraplus_lr_embedding: m.options.loraplus_lr_embedding as number,
            loraplus_weight_decay: m.options.loraplus_weight_decay as number,
            ...c.kwargs,
          },
        };
        break;
      }
      case 'galore': {
        if (isOn(m.options.exclude_modules))
          refuse(
            file,
            `methods[${i}].exclude_modules`,
            "transformers' optim_target_modules has no exclude list; name the modules in target_modules",
          );
        fullRank = [...new Set(selectTargets(g, m.options as never).map((n) => n.scope))];
        training.optim = galoreOptim(opt, file);
        training.optim_target_modules = fullRank;
        training.optim_args = `rank=${m.options.rank},update_proj_gap=${m.options.update_proj_gap},scale=${m.options.scale},proj_type=${m.options.proj_type}`;
        requirements.add('galore-torch');
        break;
      }
      default:
        refuse(file, where, `peftc knows no Hugging Face form of method '${m.method}'`);
    }
  });
  if (fullRank && (adapter || quantization))
    refuse(
      file,
      'methods',
      'GaLore trains full-rank weights; the Trainer project does not combine it with an adapter or a 4-bit base',
    );
  if (!adapter && !fullRank)
    refuse(file, 'methods', 'nothing to train: the recipe has no adapter method and no galore entry');
  if (loraplus && !adapter) refuse(file, 'methods', 'loraplus needs a lora entry');
  if (recipe.param_groups.length)
    refuse(
      file,
      'param_groups',
      "its patterns match peftc's param names, which differ from PEFT's (base_model.model.<module>.lora_A.<adapter>.weight); use loraplus, or edit create_optimizer in the generated train.py",
    );
  if (opt.per_layer && !fullRank)
    refuse(
      file,
      'optimizer.per_layer',
      'transformers has layer-wise updates for GaLore only (galore_adamw_layerwise)',
    );
  if ((opt.type === 'adamw8bit' || opt.type === 'paged_adamw8bit') && opt.min_8bit_size !== 4096)
    refuse(
      file,
      'optimizer.min_8bit_size',
      "Trainer builds bitsandbytes' 8-bit optimizers with their default min_8bit_size 4096",
    );
  if (opt.type !== 'adamw' && opt.type !== 'sgd') requirements.add('bitsandbytes');

  training.optim ??= OPTIM[opt.type];
  if (opt.type === 'sgd' && !loraplus)
    training.optim_args = `momentum=${opt.momentum},dampening=${opt.dampening},nesterov=${opt.nesterov}`;
  Object.assign(training, {
    learning_rate: opt.lr,
    ...(opt.type === 'sgd'
      ? {}
      : { adam_beta1: opt.betas[0], adam_beta2: opt.betas[1], adam_epsilon: opt.eps }),
    weight_decay: opt.weight_decay,
    lr_scheduler_type:
      recipe.schedule.type === 'constant' && recipe.schedule.warmup_steps > 0
        ? 'constant_with_warmup'
        : recipe.schedule.type,
    warmup_steps: recipe.schedule.warmup_steps,
    // No max_grad_norm in the recipe means no clipping; Trainer's default would clip at 1.0.
    max_grad_norm: recipe.max_grad_norm ?? 0,
    gradient_accumulation_steps: recipe.gradient_accumulation_steps,
    gradient_checkpointing: recipe.checkpointing,
    ...(recipe.checkpointing ? { gradient_checkpointing_kwargs: { use_reentrant: false } } : {}),
    per_device_train_batch_size: o.batch,
    max_steps: o.steps,
    seed: recipe.seed,
    data_seed: recipe.seed,
  });

  const dropout = adapter?.kwargs.lora_dropout;
  if (typeof dropout === 'number' && dropout > 0)
    notes.push(
      `lora_dropout ${dropout}: torch draws other dropout masks than peftc, so losses agree only in distribution`,
    );
  if (opt.weight_decay > 0 && !loraplus)
    notes.push(
      'Trainer exempts biases and norm weights from weight decay; peftc decays every trainable param of the optimizer group',
    );
  if (recipe.gradient_accumulation_steps > 1)
    notes.push(
      "with gradient accumulation the loss is each micro-batch's mean, averaged over the micro-batches, as peftc does (train.py turns off Trainer's token-count weighting)",
    );
  if (adapter?.convertResidual)
    notes.push(
      'PiSSA / OLoRA: the adapter is saved converted to plain LoRA for the original weights (path_initial_model_for_weight_conversion), as peftc saves it',
    );
  return {
    adapter,
    quantization,
    loraplus,
    fullRank,
    adalora: adapter?.config === 'AdaLoraConfig',
    training,
    requirements: [...requirements],
    notes,
  };
}

/** Refuses the recipe's methods that have no Hugging Face form (before any work on the model). */
export function refuseUnmappable(recipe: Recipe, file: string): void {
  recipe.methods.forEach((m, i) => {
    const reason = NO_HF_FORM[m.method];
    if (reason) refuse(file, `methods[${i}] ('${m.method}')`, reason);
  });
}
