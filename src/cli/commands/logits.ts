// `peftc logits --model <hf dir|preset> [--adapter <peft dir>]... [--merge] [--backend webgpu|cpu]
//   --tokens <json file: array of token-id arrays> --out <file.safetensors> [--overwrite]`
// writes f32 logits [seq, vocab] of sequence i under key `logits.<i>`. An existing --out
// is refused unless --overwrite (then replaced atomically), as merge and quantize do.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { Executable } from '../../backends/backend.ts';
import { asOutput, checkOutputPath } from '../../io/fs-errors.ts';
import { writeSafetensors } from '../../io/safetensors/index.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { bindParams } from '../../ir/weights.ts';
import { openModel } from '../../models/open.ts';
import { prepareModel } from '../../models/prepare.ts';
import { UsageError, UserError } from '../errors.ts';
import { addBackendOptions, type BackendCliOptions, backendFrom, collect } from '../options.ts';

export interface LogitsOptions extends BackendCliOptions {
  readonly model: string;
  readonly adapter?: string[];
  readonly merge?: boolean;
  readonly tokens: string;
  readonly out: string;
  readonly overwrite?: boolean;
}

/** Reads a JSON array of non-empty token-id arrays, checking ids against the vocabulary. */
export function readTokenArrays(file: string, vocab: number): number[][] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: cannot read a JSON array of token-id arrays: ${(e as Error).message}`);
  }
  if (!Array.isArray(json) || json.length === 0)
    throw new UserError(`${file}: expected a non-empty JSON array of token-id arrays`);
  return json.map((seq, i) => {
    if (!Array.isArray(seq) || seq.length === 0)
      throw new UserError(`${file}: [${i}] must be a non-empty array of token ids`);
    seq.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab) {
        throw new UserError(
          `${file}: [${i}][${j}] = ${JSON.stringify(id)} is not a token id in [0, ${vocab})`,
        );
      }
    });
    return seq as number[];
  });
}

export function register(program: Command): void {
  addBackendOptions(
    program
      .command('logits')
      .description('run the model (with PEFT adapters) on token sequences and save the logits')
      .requiredOption('--model <dir|preset>', 'Hugging Face model directory (or a built-in preset)')
      .option('--adapter <dir>', 'PEFT adapter directory (repeat for several)', collect)
      .option('--merge', 'merge the adapters into the base weights before running')
      .requiredOption('--tokens <file>', 'JSON file: an array of token-id arrays')
      .requiredOption('--out <file>', 'output .safetensors file (keys logits.0, logits.1, ...)')
      .option(
        '--overwrite',
        'replace an existing --out file (atomically: the old one stays until the new is complete)',
      ),
  ).action(async (o: LogitsOptions) => {
    const wrote = await runLogits(o);
    const listed = wrote.slice(0, 4).map((t) => `${t.name} [${t.shape.join(', ')}]`);
    if (wrote.length > 4) listed.push(`... ${wrote.length - 4} more`);
    process.stdout.write(`wrote ${o.out}: ${wrote.length} f32 tensor(s): ${listed.join(', ')}\n`);
  });
}

/** The command behind `peftc logits`: computes and writes the logits; returns what it wrote. */
export async function runLogits(o: LogitsOptions): Promise<{ name: string; shape: readonly number[] }[]> {
  if (o.merge && !o.adapter?.length)
    throw new UsageError('--merge needs at least one --adapter <dir> to merge');
  // Before any work: a run that can only fail at the end should fail at the start.
  checkOutputPath('--out', o.out, { kind: 'file', overwrite: o.overwrite });
  const model = openModel(o.model);
  const seqs = readTokenArrays(o.tokens, model.config.vocabSize);
  const backend = await backendFrom(o);
  try {
    const exes = new Map<number, Executable>();
    const out: Record<string, Tensor> = {};
    for (const [i, ids] of seqs.entries()) {
      let exe = exes.get(ids.length);
      if (!exe) {
        const { graph, weights } = prepareModel(
          model,
          { batch: 1, seq: ids.length },
          { adapters: o.adapter, merge: o.merge },
        );
        exe = await backend.compile(graph, bindParams(graph, weights));
        exes.set(ids.length, exe);
      }
      const { logits } = await exe.run({
        feeds: { input_ids: tensor('i32', [1, ids.length], ids) },
        outputs: ['logits'],
      });
      out[`logits.${i}`] = tensor('f32', [ids.length, model.config.vocabSize], logits.data);
    }
    asOutput('--out', o.out, () => writeSafetensors(o.out, out, { format: 'pt' }));
    for (const e of exes.values()) e.dispose();
    return Object.entries(out).map(([name, t]) => ({ name, shape: t.shape }));
  } finally {
    backend.dispose();
  }
}
