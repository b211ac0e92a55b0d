// `peftc export --format <name> --model <dir> --out <path> [format flags]`: deployment
// artifacts (src/export/). Flags a format does not read are refused rather than ignored, so a
// user who passes `--type q8_0` to a format without tensor types learns it before any work.
import type { Command } from 'commander';
import { EXPORT_FORMATS, type ExportFlag, type ExportOptions } from '../../export/index.ts';
import { checkOutputPath } from '../../io/fs-errors.ts';
import { UsageError } from '../errors.ts';
import { collect } from '../options.ts';

const FLAG_NAMES: Record<ExportFlag, string> = {
  adapter: '--adapter',
  merge: '--merge',
  quant: '--quant',
  type: '--type',
  recipe: '--recipe',
  data: '--data',
};

export function register(program: Command): void {
  program
    .command('export')
    .description('write a deployment artifact of the model (with adapters): see --format')
    .requiredOption('--format <name>', 'artifact format (see the list below)')
    .requiredOption('--model <dir|preset>', 'Hugging Face model directory (or a built-in preset)')
    .requiredOption('--out <path>', 'output directory or file (per format)')
    .option('--adapter <dir>', 'PEFT adapter directory (repeat for several)', collect)
    .option('--merge', 'fold the adapters into the base weights')
    .option('--quant <kind>', 'webgpu-ts: weights as stored (none) or packed NF4 (nf4)')
    .option('--type <type>', 'gguf: weight tensor type (f32, f16, q8_0)')
    .option('--recipe <file>', 'hf-trainer: the recipe the generated project runs')
    .option('--data <file>', 'hf-trainer: training data for the generated project')
    .option('--overwrite', 'replace an existing --out (atomically)')
    .addHelpText('after', () => {
      return `\nFormats:\n${EXPORT_FORMATS.map((f) => `  ${f.name.padEnd(12)} ${f.summary}`).join('\n')}\n`;
    })
    .action(async (o: ExportOptions) => {
      for (const line of await runExport(o)) process.stdout.write(`${line}\n`);
    });
}

/** The command behind `peftc export`: checks the flags against the format, then runs it. */
export async function runExport(o: ExportOptions): Promise<string[]> {
  const format = EXPORT_FORMATS.find((f) => f.name === o.format);
  if (!format) {
    const names = EXPORT_FORMATS.map((f) => f.name).join(', ');
    throw new UsageError(`--format ${o.format} is not an export format; choose one of: ${names}`);
  }
  for (const flag of Object.keys(FLAG_NAMES) as ExportFlag[]) {
    const given = o[flag] !== undefined && o[flag] !== false;
    if (given && !format.flags.includes(flag))
      throw new UsageError(`${FLAG_NAMES[flag]} does not apply to --format ${format.name}`);
    if (!given && format.required?.includes(flag))
      throw new UsageError(`--format ${format.name} needs ${FLAG_NAMES[flag]}`);
  }
  if (o.merge && !o.adapter?.length)
    throw new UsageError('--merge needs at least one --adapter <dir> to merge');
  checkOutputPath('--out', o.out, { kind: format.output, overwrite: o.overwrite });
  return format.run(o);
}
