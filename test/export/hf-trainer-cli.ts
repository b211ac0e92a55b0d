// `peftc export --format hf-trainer` and `peftc train` on the bundled model, in this process
// (shared by test/export/hf-trainer.test.ts and test/interop/).
import { join } from 'node:path';
import { type CliResult, cli } from '../cli/run-cli.ts';

export const ROOT = join(import.meta.dirname, '..', '..');
export const MODEL = join(ROOT, 'examples', 'models', 'tiny-llama');
export const DATA = join(ROOT, 'examples', 'data', 'tiny-instruct.jsonl');

/** `peftc export --format hf-trainer --model <tiny-llama> --recipe <recipe> [more] --out <out>`. */
export function exportProject(recipe: string, out: string, ...more: string[]): Promise<CliResult> {
  return cli([
    'export',
    '--format',
    'hf-trainer',
    '--model',
    MODEL,
    '--recipe',
    recipe,
    ...more,
    '--out',
    out,
  ]);
}

/** `peftc train --backend cpu` of the same recipe on the bundled data. */
export function trainCpu(recipe: string, out: string): Promise<CliResult> {
  return cli([
    'train',
    '--backend',
    'cpu',
    '--model',
    MODEL,
    '--recipe',
    recipe,
    '--data',
    DATA,
    '--out',
    out,
    '--no-plot',
  ]);
}
