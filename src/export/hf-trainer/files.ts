// The generated project's other files: accelerate configs (FSDP, DeepSpeed ZeRO-2 / ZeRO-3
// with their DeepSpeed JSON), requirements.txt, README.md. Key names follow accelerate 1.15's
// config (accelerate/commands/config/cluster.py) and DeepSpeed's JSON as transformers' HF
// integration fills its "auto" values from TrainingArguments.
import type { HfPlan } from './mapping.ts';
import { py } from './python.ts';

/** accelerate's FSDP (version 2) config: shard every decoder layer. */
export function fsdpYaml(layerClass: string): string {
  return `# accelerate launch --config_file accelerate/fsdp.yaml train.py
# Fully sharded data parallel (FSDP2) over num_processes GPUs of num_machines machines.
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: ${layerClass}
  fsdp_reshard_after_forward: true
  fsdp_offload_params: false
  fsdp_state_dict_type: FULL_STATE_DICT
  fsdp_cpu_ram_efficient_loading: true
machine_rank: 0
main_training_function: main
# peftc trains in f32; bf16 halves activation memory on GPUs that have it.
mixed_precision: 'no'
num_machines: 1
num_processes: 8
rdzv_backend: static
same_network: true
use_cpu: false
`;
}

/** accelerate's DeepSpeed config pointing at the ZeRO stage's JSON. */
export function deepspeedYaml(stage: 2 | 3): string {
  return `# accelerate launch --config_file accelerate/deepspeed-zero${stage}.yaml train.py
# DeepSpeed ZeRO stage ${stage} (${stage === 2 ? 'optimizer states and gradients' : 'optimizer states, gradients and parameters'} sharded) over num_processes GPUs.
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  deepspeed_config_file: accelerate/ds-zero${stage}.json
  deepspeed_multinode_launcher: standard
${stage === 3 ? '  zero3_init_flag: true\n' : ''}machine_rank: 0
main_training_function: main
num_machines: 1
num_processes: 8
rdzv_backend: static
same_network: true
use_cpu: false
`;
}

/** DeepSpeed's JSON; "auto" values come from TrainingArguments (transformers' integration). */
export function deepspeedJson(stage: 2 | 3): string {
  const zero =
    stage === 2
      ? { stage: 2, overlap_comm: true, contiguous_gradients: true, reduce_bucket_size: 'auto' }
      : {
          stage: 3,
          overlap_comm: true,
          contiguous_gradients: true,
          reduce_bucket_size: 'auto',
          stage3_prefetch_bucket_size: 'auto',
          stage3_param_persistence_threshold: 'auto',
          stage3_gather_16bit_weights_on_model_save: true,
        };
  const ds = {
    train_micro_batch_size_per_gpu: 'auto',
    gradient_accumulation_steps: 'auto',
    gradient_clipping: 'auto',
    bf16: { enabled: 'auto' },
    fp16: { enabled: 'auto' },
    zero_optimization: zero,
  };
  return `${JSON.stringify(ds, null, 2)}\n`;
}

export function requirementsTxt(plan: HfPlan): string {
  const pkgs = [
    'torch>=2.4',
    'transformers>=5.0',
    'peft>=0.17',
    'accelerate>=1.0',
    'safetensors',
    'deepspeed  # only for the DeepSpeed configs',
    ...plan.requirements.map((p) => (p === 'galore-torch' ? 'galore-torch' : `${p}>=0.45`)),
  ];
  return `# Tested with torch 2.13, transformers 5.18, peft 0.21, accelerate 1.15 (CPU, one process).\n${pkgs.join('\n')}\n`;
}

export interface ReadmeInput {
  readonly plan: HfPlan;
  readonly recipeFile: string;
  readonly model: string;
  readonly data?: string;
  readonly rows?: { readonly train: number; readonly eval: number; readonly seq: number };
  readonly initialAdapter: boolean;
  readonly layerClass: string;
}

function mappingRows(p: HfPlan): string[] {
  const rows: string[] = [];
  if (p.adapter)
    rows.push(
      `| adapter entry | \`${p.adapter.config}(${Object.keys(p.adapter.kwargs).join(', ')})\` in \`peft_config()\` |`,
    );
  if (p.quantization)
    rows.push(
      `| qlora | \`BitsAndBytesConfig(${Object.keys(p.quantization).join(', ')})\` + \`prepare_model_for_kbit_training\` |`,
    );
  if (p.loraplus)
    rows.push(
      `| loraplus | \`create_loraplus_optimizer(model, ${p.loraplus.optimizerClass}, ...)\` in \`PeftcTrainer.create_optimizer\` |`,
    );
  if (p.fullRank)
    rows.push(
      `| galore | \`optim=${py(p.training.optim)}\`, \`optim_target_modules\` = the ${p.fullRank.length} targeted linears, \`optim_args=${py(p.training.optim_args)}\`; every other param frozen |`,
    );
  if (p.adalora)
    rows.push(
      '| adalora | `AdaLoraAllocate` callback: `update_and_allocate(global_step)` after each optimizer step |',
    );
  const t = p.training;
  rows.push(
    `| optimizer | \`optim=${py(t.optim)}\`, \`learning_rate\`${'adam_beta1' in t ? ', `adam_beta1/2`, `adam_epsilon`' : ''}, \`weight_decay\` |`,
    `| schedule | \`lr_scheduler_type=${py(t.lr_scheduler_type)}\`, \`warmup_steps=${py(t.warmup_steps)}\` |`,
    `| max_grad_norm | \`max_grad_norm=${py(t.max_grad_norm)}\`${t.max_grad_norm === 0 ? ' (no clipping, as the recipe)' : ''} |`,
    `| batch_size, steps, gradient_accumulation_steps, checkpointing, seed | \`per_device_train_batch_size=${py(t.per_device_train_batch_size)}\`, \`max_steps=${py(t.max_steps)}\`, \`gradient_accumulation_steps=${py(t.gradient_accumulation_steps)}\`, \`gradient_checkpointing=${py(t.gradient_checkpointing)}\`, \`seed=${py(t.seed)}\` |`,
  );
  return rows;
}

export function readme(i: ReadmeInput): string {
  const p = i.plan;
  const data = i.rows
    ? `\`data/train.jsonl\` (${i.rows.train} rows) and \`data/eval.jsonl\` (${i.rows.eval}) are the rows \`peftc train\` makes from \`${i.data}\`: ${i.rows.seq} token ids each with their labels (-100 where nothing is learned: prompt tokens), documents packed as peftc packs them, the eval rows held out by the recipe's seed. \`data/order.json\` is peftc's batch order (row index of every sample, batch after batch, for the recipe's steps). With several processes each takes every N-th batch of that order, so a step sees N times the batch.`
    : "The project was exported without `--data`: pass `--data FILE` (peftc's formats: text, or JSONL of text / prompt+completion / input_ids). train.py tokenizes and packs it as peftc does; the eval split and batch order are then Trainer's (export with `--data` for peftc's exact rows and order).";
  return `# Hugging Face Trainer project for ${i.recipeFile}

Generated by \`peftc export --format hf-trainer\`: the recipe \`${i.recipeFile}\` on the model
\`${i.model}\`, as Hugging Face Trainer + PEFT code, for runs that outgrow one machine.

## Run

\`\`\`bash
pip install -r requirements.txt
python train.py --output-dir out                                              # one process
accelerate launch --config_file accelerate/fsdp.yaml train.py --output-dir out           # FSDP
accelerate launch --config_file accelerate/deepspeed-zero2.yaml train.py --output-dir out # ZeRO-2
accelerate launch --config_file accelerate/deepspeed-zero3.yaml train.py --output-dir out # ZeRO-3
\`\`\`

Set \`num_processes\` (GPUs per machine x machines) and \`num_machines\` in the yaml files, or
pass \`--num_processes N\` to \`accelerate launch\`. FSDP wraps each \`${i.layerClass}\`.
\`--model DIR\` points at another copy of the model. \`out/\` then holds the ${p.fullRank ? 'trained model (a Hugging Face model directory)' : 'PEFT adapter, which `peftc logits --adapter`, `peftc merge` and PEFT load'}; \`out/losses.jsonl\`
the unrounded loss of every step (of process 0 when there are several).

## Files

- \`train.py\`: the model, ${p.adapter ? 'the PEFT config, ' : ''}${p.quantization ? 'the 4-bit config, ' : ''}TrainingArguments, the data, the trainer.
- \`accelerate/\`: \`fsdp.yaml\`, \`deepspeed-zero2.yaml\`, \`deepspeed-zero3.yaml\` (+ the DeepSpeed JSON they name).
- \`recipe.json\`: the recipe as peftc resolved it (every default filled in).
${i.initialAdapter ? "- `initial_adapter/`: the adapter as peftc initialises it for the recipe's seed (PEFT format); train.py starts from it, so the first steps follow peftc's. `--initial-adapter \"\"` uses PEFT's own random init instead.\n" : ''}${i.rows ? '- `data/`: the training rows and batch order (below).\n' : ''}
## How the recipe maps

| recipe | Hugging Face |
|---|---|
${mappingRows(p).join('\n')}

${p.notes.length ? `Differences from peftc:\n\n${p.notes.map((n) => `- ${n}`).join('\n')}\n\n` : ''}## Data

${data}
`;
}
