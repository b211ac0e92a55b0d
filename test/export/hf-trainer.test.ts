// `peftc export --format hf-trainer`: each recipe method's Hugging Face form (mapping.ts), the
// files of the project, and refusals (with the reason, nothing written). Running the project
// against peftc's losses needs Python: `npm run test:interop` (test/interop/).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hfPlan } from '../../src/export/hf-trainer/mapping.ts';
import { call, expr, py } from '../../src/export/hf-trainer/python.ts';
import type { Graph } from '../../src/ir/graph.ts';
import { parseRecipe } from '../../src/methods/index.ts';
import { modelGraph } from '../../src/models/llama/index.ts';
import { openModel } from '../../src/models/open.ts';
import { cli } from '../cli/run-cli.ts';
import { DATA, exportProject, MODEL, ROOT } from './hf-trainer-cli.ts';

const RECIPES = join(ROOT, 'examples', 'recipes');
const recipeJson = (name: string) => JSON.parse(readFileSync(join(RECIPES, `${name}.json`), 'utf8'));

let tmp: string;
let graph: Graph;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'peftc-hf-trainer-'));
  graph = modelGraph(openModel(MODEL), { batch: 1, seq: 2 }).graph;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const plan = (json: unknown, steps = 10, batch = 2) =>
  hfPlan(parseRecipe(json), graph, { steps, batch, recipeFile: 'r.json' });

const LORA = { method: 'lora', r: 4, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'] };

describe('python literals', () => {
  it('prints values as Python reads them', () => {
    expect(py([null, true, false, 1e-8, 0.003, 16, 'a"b', expr('torch.float32')])).toBe(
      '[None, True, False, 1e-8, 0.003, 16, "a\\"b", torch.float32]',
    );
    expect(py({ 'model.q_proj': 4 })).toBe('{"model.q_proj": 4}');
    expect(call('LoraConfig', { r: 8, use_dora: true })).toBe('LoraConfig(\n    r=8,\n    use_dora=True,\n)');
  });
});

describe('recipe -> Hugging Face form', () => {
  it('lora: LoraConfig keys, and optimizer / schedule / clipping / batch as TrainingArguments', () => {
    const p = plan(recipeJson('lora-tiny'), 60, 8);
    expect(p.adapter).toMatchObject({ config: 'LoraConfig', adapterName: 'default', randomInit: true });
    expect(p.adapter?.kwargs).toEqual({
      r: 8,
      lora_alpha: 16,
      lora_dropout: 0.05,
      target_modules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
      task_type: 'CAUSAL_LM',
    });
    expect(p.training).toEqual({
      optim: 'adamw_torch',
      learning_rate: 3e-3,
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      weight_decay: 0,
      lr_scheduler_type: 'cosine',
      warmup_steps: 5,
      max_grad_norm: 1,
      gradient_accumulation_steps: 1,
      gradient_checkpointing: false,
      per_device_train_batch_size: 8,
      max_steps: 60,
      seed: 0,
      data_seed: 0,
    });
    expect(p.notes.join('\n')).toMatch(/dropout masks/);
  });

  it('DoRA + LoRA+: use_dora, create_loraplus_optimizer with the recipe optimizer; checkpointing; accumulation', () => {
    const p = plan({
      methods: [
        { ...LORA, use_dora: true, exclude_modules: ['model.layers.0.self_attn.q_proj'], use_rslora: true },
        { method: 'loraplus', loraplus_lr_ratio: 16 },
      ],
      optimizer: { type: 'adamw', lr: 2e-4, weight_decay: 0.1 },
      checkpointing: true,
      gradient_accumulation_steps: 4,
    });
    expect(p.adapter?.kwargs).toMatchObject({
      use_dora: true,
      use_rslora: true,
      exclude_modules: ['model.layers.0.self_attn.q_proj'],
    });
    expect(p.loraplus).toEqual({
      optimizerClass: 'torch.optim.AdamW',
      kwargs: {
        lr: 2e-4,
        loraplus_lr_ratio: 16,
        loraplus_lr_embedding: 1e-6,
        loraplus_weight_decay: 0,
        betas: [0.9, 0.999],
        eps: 1e-8,
      },
    });
    expect(p.training).toMatchObject({
      gradient_checkpointing: true,
      gradient_checkpointing_kwargs: { use_reentrant: false },
      gradient_accumulation_steps: 4,
      // No schedule, no max_grad_norm: constant lr, no clipping (Trainer's default clips at 1).
      lr_scheduler_type: 'constant',
      max_grad_norm: 0,
    });
    const dora = plan({ methods: [{ ...LORA, method: 'dora' }] });
    expect(dora.adapter?.kwargs.use_dora).toBe(true);
  });

  it('qlora: BitsAndBytesConfig nf4/fp4, double quant, f32 compute; exclude_modules -> llm_int8_skip_modules', () => {
    const p = plan(recipeJson('qlora-tiny'));
    expect(p.quantization).toEqual({
      load_in_4bit: true,
      bnb_4bit_quant_type: 'nf4',
      bnb_4bit_use_double_quant: true,
      bnb_4bit_compute_dtype: expr('torch.float32'),
    });
    expect(p.requirements).toContain('bitsandbytes');
    const fp4 = plan({
      methods: [
        { method: 'qlora', quant_type: 'fp4', double_quant: false, exclude_modules: ['down_proj'] },
        LORA,
      ],
    });
    expect(fp4.quantization).toMatchObject({
      bnb_4bit_quant_type: 'fp4',
      bnb_4bit_use_double_quant: false,
      llm_int8_skip_modules: ['down_proj', 'lm_head'],
    });
  });

  it('PiSSA / OLoRA: init_lora_weights as PEFT spells it; saved converted to plain LoRA unless save_as residual', () => {
    const p = plan({ methods: [{ ...LORA, init_lora_weights: 'pissa_niter_4' }] });
    expect(p.adapter).toMatchObject({ convertResidual: true, randomInit: false });
    expect(p.adapter?.kwargs.init_lora_weights).toBe('pissa_niter_4');
    const residual = plan({ methods: [{ ...LORA, init_lora_weights: 'olora', save_as: 'residual' }] });
    expect(residual.adapter).toMatchObject({ convertResidual: false });
    expect(residual.adapter?.kwargs.init_lora_weights).toBe('olora');
  });

  it('AdaLoRA: AdaLoraConfig with its budget keys, allocation after each step', () => {
    const p = plan(recipeJson('adalora-tiny'));
    expect(p.adalora).toBe(true);
    expect(p.adapter?.config).toBe('AdaLoraConfig');
    expect(p.adapter?.kwargs).toMatchObject({
      init_r: 8,
      target_r: 4,
      tinit: 2,
      tfinal: 2,
      deltaT: 1,
      beta1: 0.85,
      beta2: 0.85,
      orth_reg_weight: 0.5,
      total_step: 12,
      lora_alpha: 16,
    });
  });

  it("GaLore: transformers' galore optims, the targeted linears by full name, optim_args", () => {
    const p = plan(recipeJson('galore-tiny'));
    expect(p.adapter).toBeUndefined();
    expect(p.fullRank).toHaveLength(14);
    expect(p.fullRank?.[0]).toBe('model.layers.0.self_attn.q_proj');
    expect(p.training).toMatchObject({
      optim: 'galore_adamw',
      optim_target_modules: p.fullRank,
      optim_args: 'rank=8,update_proj_gap=5,scale=0.25,proj_type=std',
    });
    expect(p.requirements).toContain('galore-torch');
    const layerwise8 = plan({
      ...recipeJson('galore-tiny'),
      max_grad_norm: null,
      optimizer: { type: 'adamw8bit', per_layer: true },
    });
    expect(layerwise8.training.optim).toBe('galore_adamw_8bit_layerwise');
  });

  it('optimizers and schedules: 8-bit / paged by name, SGD with its optim_args, constant warmup', () => {
    const opt = (optimizer: object, schedule?: object) =>
      plan({ methods: [LORA], optimizer, ...(schedule ? { schedule } : {}) }).training;
    expect(opt({ type: 'adamw8bit' }).optim).toBe('adamw_bnb_8bit');
    expect(opt({ type: 'paged_adamw' }).optim).toBe('paged_adamw_32bit');
    expect(opt({ type: 'paged_adamw8bit' }).optim).toBe('paged_adamw_8bit');
    expect(opt({ type: 'sgd', momentum: 0.9 })).toMatchObject({
      optim: 'sgd',
      optim_args: 'momentum=0.9,dampening=0,nesterov=false',
    });
    expect(opt({ type: 'adamw' }, { type: 'constant', warmup_steps: 3 })).toMatchObject({
      lr_scheduler_type: 'constant_with_warmup',
      warmup_steps: 3,
    });
    expect(opt({ type: 'adamw' }, { type: 'linear' }).lr_scheduler_type).toBe('linear');
  });
});

describe('peftc export --format hf-trainer', () => {
  it('writes the project: train.py, accelerate configs, peftc initial adapter, rows and batch order', async () => {
    const out = join(tmp, 'rank-rule');
    const r = await exportProject(join(RECIPES, 'rank-rule-tiny.json'), out, '--data', DATA);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(
      /initial_adapter\/ .*data\/ \(\d+ train rows, \d+ eval rows, the order of 30 steps\)/,
    );
    for (const f of [
      'train.py',
      'README.md',
      'requirements.txt',
      'recipe.json',
      'accelerate/fsdp.yaml',
      'accelerate/deepspeed-zero2.yaml',
      'accelerate/deepspeed-zero3.yaml',
      'accelerate/ds-zero2.json',
      'accelerate/ds-zero3.json',
      'initial_adapter/adapter_config.json',
      'initial_adapter/adapter_model.safetensors',
      'data/train.jsonl',
      'data/eval.jsonl',
      'data/order.json',
    ])
      expect(existsSync(join(out, f)), f).toBe(true);
    const train = readFileSync(join(out, 'train.py'), 'utf8');
    // rank-rule is bound into the lora entry: PEFT's rank_pattern / alpha_pattern by full name.
    expect(train).toContain('"model.layers.1.self_attn.q_proj": 8,');
    expect(train).toContain('return LoraConfig(\n        r=8,\n        lora_alpha=16,\n');
    expect(train).toContain('load_initial_adapter(model, args.initial_adapter)');
    expect(train).toContain('max_grad_norm=1,');
    // The order covers steps x batch samples; rows are seq_len tokens with -100 on prompts.
    const order = JSON.parse(readFileSync(join(out, 'data/order.json'), 'utf8')) as number[];
    expect(order).toHaveLength(30 * 8);
    const rows = readFileSync(join(out, 'data/train.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(Math.max(...order)).toBeLessThan(rows.length);
    expect(rows[0].input_ids).toHaveLength(64);
    expect(rows.some((row: { labels: number[] }) => row.labels.includes(-100))).toBe(true);
    const init = JSON.parse(readFileSync(join(out, 'initial_adapter/adapter_config.json'), 'utf8'));
    expect(init).toMatchObject({ peft_type: 'LORA', r: 8 });
    expect(readFileSync(join(out, 'accelerate/fsdp.yaml'), 'utf8')).toMatch(
      /distributed_type: FSDP[\s\S]*fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer/,
    );
    expect(readFileSync(join(out, 'accelerate/deepspeed-zero3.yaml'), 'utf8')).toMatch(
      /deepspeed_config_file: accelerate\/ds-zero3.json[\s\S]*zero3_init_flag: true/,
    );
    expect(
      JSON.parse(readFileSync(join(out, 'accelerate/ds-zero3.json'), 'utf8')).zero_optimization.stage,
    ).toBe(3);
    expect(readFileSync(join(out, 'README.md'), 'utf8')).toContain(
      '| schedule | `lr_scheduler_type="cosine"`, `warmup_steps=5` |',
    );
  });

  it('without --data: train.py reads --data in peftc format (tokenize and pack); GaLore freezes all but its targets', async () => {
    const out = join(tmp, 'galore');
    const r = await exportProject(join(RECIPES, 'galore-tiny.json'), out);
    expect(r.code, r.stderr).toBe(0);
    const train = readFileSync(join(out, 'train.py'), 'utf8');
    expect(train).toContain('def tokenize(path, model_dir):');
    expect(train).toContain('ap.add_argument("--data"');
    expect(train).toContain('param.requires_grad = name.removesuffix(".weight") in FULL_RANK');
    expect(train).toContain('optim="galore_adamw",');
    expect(train).not.toContain('from peft import');
    expect(existsSync(join(out, 'data'))).toBe(false);
    expect(existsSync(join(out, 'initial_adapter'))).toBe(false);
    expect(readFileSync(join(out, 'requirements.txt'), 'utf8')).toContain('galore-torch');
  });

  const refused: Array<[string, string | object, RegExp]> = [
    ['longlora', 'longlora-tiny', /methods\[0\] \('longlora'\): no Hugging Face Trainer form: .*S2-Attn/],
    ['malora', 'malora-tiny', /methods\[0\] \('malora'\): .*block-masked/],
    ['malora-moe', 'malora-moe-tiny', /'malora-moe'\): .*no PEFT adapter type/],
    ['gora', 'gora-tiny', /'gora'\): .*calibration/],
    [
      'qlora blocksize 128',
      { methods: [{ method: 'qlora', blocksize: 128 }, LORA] },
      /methods\[0\]\.blocksize: .*blocks of 64/,
    ],
    [
      'param_groups',
      { methods: [LORA], param_groups: [{ params: '.*lora_B.*', lr: 1e-3 }] },
      /param_groups: .*param names/,
    ],
    [
      'two adapters',
      { methods: [LORA, { ...LORA, adapter_name: 'second' }] },
      /methods\[1\] \('lora'\): .*a second adapter/,
    ],
    [
      'per_layer without GaLore',
      { methods: [LORA], optimizer: { type: 'adamw', per_layer: true } },
      /optimizer\.per_layer: .*GaLore only/,
    ],
  ];
  it.each(refused)('refuses %s with the reason and writes nothing', async (name, recipe, why) => {
    let file: string;
    if (typeof recipe === 'string') file = join(RECIPES, `${recipe}.json`);
    else {
      file = join(tmp, `${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(recipe));
    }
    const out = join(tmp, `refused-${name.replace(/\W+/g, '-')}`);
    const r = await exportProject(file, out, '--data', DATA);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(why);
    expect(r.stderr).toMatch(/nothing was written/);
    expect(existsSync(out)).toBe(false);
  });

  it('needs --recipe, and refuses flags it does not read', async () => {
    const out = join(tmp, 'flags');
    const a = await cli(['export', '--format', 'hf-trainer', '--model', MODEL, '--out', out]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--format hf-trainer needs --recipe/);
    const b = await exportProject(join(RECIPES, 'lora-tiny.json'), out, '--type', 'f16');
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--type does not apply to --format hf-trainer/);
    expect(existsSync(out)).toBe(false);
  });
});
