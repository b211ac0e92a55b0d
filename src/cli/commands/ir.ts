// `peftc ir`: build a model's graph, run a recipe's methods on it, print the IR.
import { existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { printGraph } from '../../ir/printer.ts';
import { loadRecipe, recipePipeline } from '../../methods/index.ts';
import { buildLlama, PRESETS, presetConfig, readLlamaConfig } from '../../models/llama/index.ts';
import { runPipeline } from '../../passes/index.ts';
import { UsageError, UserError } from '../errors.ts';
import { positiveInt } from '../options.ts';

function parsePrintAfter(v: string | undefined): 'all' | 'change' | string[] | undefined {
  if (v === undefined || v === 'all' || v === 'change') return v;
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function register(program: Command): void {
  program
    .command('ir')
    .description("print the IR of a model after a recipe's method passes")
    .requiredOption(
      '--model <preset|dir>',
      `a preset (${Object.keys(PRESETS).join(', ')}) or an HF model directory`,
    )
    .option('--recipe <file>', 'recipe JSON; without it the plain model is printed')
    .option(
      '--print-after <all|change|passes>',
      'also print the IR after every pass, changed ones, or the named passes (comma-separated)',
    )
    .option('--seq <n>', 'sequence length', positiveInt('--seq'), 8)
    .option('--batch <n>', 'batch size', positiveInt('--batch'), 1)
    .option('--loss', 'include the loss (input labels)')
    .action(
      (o: {
        model: string;
        recipe?: string;
        printAfter?: string;
        seq: number;
        batch: number;
        loss?: boolean;
      }) => {
        const isDir = existsSync(o.model) && statSync(o.model).isDirectory();
        if (!isDir && !(o.model in PRESETS))
          throw new UserError(
            `--model '${o.model}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor a model directory`,
          );
        const cfg = isDir ? readLlamaConfig(o.model) : presetConfig(o.model);
        const graph = buildLlama(cfg, { batch: o.batch, seq: o.seq }, { loss: !!o.loss });
        const pipeline = o.recipe ? recipePipeline(loadRecipe(o.recipe)) : [];
        const printAfter = parsePrintAfter(o.printAfter);
        const names = pipeline.map((s) => s.name);
        const unknown = Array.isArray(printAfter) ? printAfter.filter((p) => !names.includes(p)) : [];
        if (unknown.length)
          throw new UsageError(
            `--print-after: no pass named ${unknown.join(', ')} in the pipeline (passes: ${names.join(', ') || 'none without --recipe'}; or all, change)`,
          );
        const log = (s: string) => process.stdout.write(`${s}\n`);
        const out = runPipeline(graph, pipeline, {
          verify: true,
          printAfter,
          log,
        });
        if (!o.printAfter || pipeline.length === 0) process.stdout.write(printGraph(out.graph));
      },
    );
}
