// `peftc export --format hf-trainer`: writes the Python project (train.py, accelerate
// configs, requirements.txt, README.md, the resolved recipe) and, so that its run starts
// where peftc's would, peftc's initial adapter for the recipe's seed and, with --data,
// peftc's own training rows and batch order. Refusals (mapping.ts) come before any write;
// the directory is filled in a temporary place and moved to --out when complete.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { writeDirAtomic } from '../../io/atomic.ts';
import { asOutput } from '../../io/fs-errors.ts';
import { bindRecipe, loadRecipe, type Recipe, resolveRecipe } from '../../methods/index.ts';
import { saveMethodAdapter } from '../../models/adapters.ts';
import { type LoadedModel, modelGraph } from '../../models/llama/index.ts';
import { openModel } from '../../models/open.ts';
import { Batcher, DEFAULT_BATCH, DEFAULT_SEQ, datasetFor, type Row } from '../../train/data/index.ts';
import { DEFAULT_STEPS } from '../../train/plan.ts';
import { prepareRun } from '../../train/setup.ts';
import { UserError } from '../../util/errors.ts';
import type { ExportOptions } from '../format.ts';
import { deepspeedJson, deepspeedYaml, fsdpYaml, readme, requirementsTxt } from './files.ts';
import { type HfPlan, hfPlan, refuseUnmappable } from './mapping.ts';
import { trainPy } from './train-py.ts';

function packageVersion(): string {
  const pkg = join(import.meta.dirname, '..', '..', '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/** The decoder layer class FSDP wraps: LlamaForCausalLM -> LlamaDecoderLayer. */
function decoderLayerClass(dir: string): string {
  try {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { architectures?: string[] };
    const arch = cfg.architectures?.[0];
    if (arch?.endsWith('ForCausalLM')) return arch.replace(/ForCausalLM$/, 'DecoderLayer');
  } catch {
    // The model loaded, so config.json is there; a missing `architectures` is LLaMA's layer.
  }
  return 'LlamaDecoderLayer';
}

const jsonl = (rows: readonly Row[]) =>
  rows.map((r) => `${JSON.stringify({ input_ids: [...r.ids], labels: [...r.labels] })}\n`).join('');

/** peftc's rows and sample order for the recipe's steps (micro-batch after micro-batch). */
function exportedData(model: LoadedModel, recipe: Recipe, data: string, steps: number, batch: number) {
  const { dataset } = datasetFor(model, recipe, { data });
  const batcher = new Batcher(dataset.train, { batchSize: batch, seed: recipe.seed });
  const order: number[] = [];
  for (let m = 0; m < steps * recipe.gradient_accumulation_steps; m++) order.push(...batcher.batchAt(m).rows);
  return { dataset, order };
}

/** peftc's initial adapter (the values `peftc train` starts from), written into `dir`. */
function initialAdapter(
  model: LoadedModel,
  recipe: Recipe,
  dir: string,
  batch: number,
  seq: number,
): boolean {
  const run = prepareRun(model, recipe, { batch, seq }, { seed: recipe.seed });
  const [save] = run.saves;
  if (!save) return false;
  saveMethodAdapter(
    dir,
    run.adapted,
    (n) => run.weights.get(n) ?? run.methodWeights.get(n)!,
    save.method,
    save.options,
    model.dir ?? model.source,
  );
  return true;
}

export async function exportHfTrainer(o: ExportOptions): Promise<string[]> {
  const recipeFile = o.recipe as string;
  const recipe = loadRecipe(recipeFile);
  refuseUnmappable(recipe, recipeFile);
  const model = openModel(o.model, { seed: recipe.seed });
  if (!model.dir)
    throw new UserError(
      `--model ${o.model}: the project loads the model with transformers, so it needs a Hugging Face model directory, not a preset`,
    );
  if (model.quantization)
    throw new UserError(
      `--model ${o.model} is already 4-bit (${model.quantization}); export from the full-precision model with a qlora entry in the recipe (transformers quantizes it at load)`,
    );
  const steps = recipe.steps ?? DEFAULT_STEPS;
  const batch = recipe.batch_size ?? DEFAULT_BATCH;
  const seq = recipe.seq_len ?? DEFAULT_SEQ;
  const { recipe: bound } = bindRecipe(recipe, modelGraph(model, { batch: 1, seq: 2 }, { loss: true }).graph);
  const plan: HfPlan = hfPlan(bound, modelGraph(model, { batch: 1, seq: 2 }).graph, {
    steps,
    batch,
    recipeFile,
  });
  const data = o.data ? exportedData(model, recipe, o.data, steps, batch) : undefined;
  const modelDir = resolve(model.dir);
  const layerClass = decoderLayerClass(model.dir);
  const wrote: string[] = [];
  let hasInit = false;
  asOutput('--out', o.out, () =>
    writeDirAtomic(
      o.out,
      (dir) => {
        const put = (name: string, text: string) => {
          writeFileSync(join(dir, ...name.split('/')), text);
          wrote.push(name);
        };
        hasInit =
          !!plan.adapter?.randomInit &&
          initialAdapter(model, recipe, join(dir, 'initial_adapter'), batch, seq);
        if (data) {
          mkdirSync(join(dir, 'data'));
          put('data/train.jsonl', jsonl(data.dataset.train));
          if (data.dataset.eval.length) put('data/eval.jsonl', jsonl(data.dataset.eval));
          put('data/order.json', `${JSON.stringify(data.order)}\n`);
        }
        mkdirSync(join(dir, 'accelerate'));
        put('accelerate/fsdp.yaml', fsdpYaml(layerClass));
        for (const stage of [2, 3] as const) {
          put(`accelerate/deepspeed-zero${stage}.yaml`, deepspeedYaml(stage));
          put(`accelerate/ds-zero${stage}.json`, deepspeedJson(stage));
        }
        put('recipe.json', `${JSON.stringify(resolveRecipe(bound), null, 2)}\n`);
        put('requirements.txt', requirementsTxt(plan));
        put(
          'train.py',
          trainPy({
            plan,
            model: modelDir,
            recipeFile,
            seq,
            exportedData: !!data,
            initialAdapter: hasInit,
            version: packageVersion(),
          }),
        );
        put(
          'README.md',
          readme({
            plan,
            recipeFile,
            model: o.model,
            data: o.data,
            rows: data && { train: data.dataset.train.length, eval: data.dataset.eval.length, seq },
            initialAdapter: hasInit,
            layerClass,
          }),
        );
        return undefined;
      },
      { replace: true },
    ),
  );
  const extras = [
    ...(hasInit ? ["initial_adapter/ (peftc's initial adapter, seed " + recipe.seed + ')'] : []),
    ...(data
      ? [
          `data/ (${data.dataset.train.length} train rows, ${data.dataset.eval.length} eval rows, the order of ${steps} steps)`,
        ]
      : []),
  ];
  return [
    `wrote ${o.out}: train.py, accelerate/ (FSDP, DeepSpeed ZeRO-2 and ZeRO-3), requirements.txt, README.md, recipe.json${extras.length ? `, ${extras.join(', ')}` : ''}`,
    `run it: cd ${o.out} && pip install -r requirements.txt && python train.py (or accelerate launch --config_file accelerate/fsdp.yaml train.py)`,
  ];
}
