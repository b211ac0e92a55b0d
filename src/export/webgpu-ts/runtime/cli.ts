#!/usr/bin/env node
// `node dist/cli.js logits --tokens <json file: array of token-id arrays> --out <file.safetensors>
//  [--overwrite]` writes f32 logits [seq, vocab] of sequence i under key `logits.<i>`, the
// format `peftc logits` writes.
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadModel, MODEL } from './runner.ts';
import { writeF32Safetensors } from './safetensors.ts';

const USAGE = 'usage: node dist/cli.js logits --tokens <file.json> --out <file.safetensors> [--overwrite]';

function fail(message: string): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(2);
}

function readTokens(file: string): number[][] {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`--tokens ${file}: cannot read a JSON array of token-id arrays: ${(e as Error).message}`);
  }
  if (!Array.isArray(json) || json.length === 0)
    fail(`--tokens ${file}: expected a non-empty JSON array of token-id arrays`);
  const max = MODEL.lengths[MODEL.lengths.length - 1];
  return json.map((seq, i) => {
    if (!Array.isArray(seq) || seq.length === 0 || seq.length > max)
      fail(
        `--tokens ${file}: [${i}] must be an array of 1 to ${max} token ids (the longest compiled length)`,
      );
    seq.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= MODEL.vocabSize)
        fail(
          `--tokens ${file}: [${i}][${j}] = ${JSON.stringify(id)} is not a token id in [0, ${MODEL.vocabSize})`,
        );
    });
    return seq as number[];
  });
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== 'logits')
    fail(`${command === undefined ? 'no command' : `unknown command '${command}'`}\n${USAGE}`);
  let values: { tokens?: string; out?: string; overwrite?: boolean };
  try {
    ({ values } = parseArgs({
      args: rest,
      options: { tokens: { type: 'string' }, out: { type: 'string' }, overwrite: { type: 'boolean' } },
    }));
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`);
  }
  if (!values.tokens || !values.out) fail(`logits needs --tokens and --out\n${USAGE}`);
  if (existsSync(values.out) && !values.overwrite)
    fail(`--out ${values.out} already exists; choose a new file or pass --overwrite`);
  const seqs = readTokens(values.tokens);
  const model = await loadModel();
  try {
    const out = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [i, ids] of seqs.entries())
      out.set(`logits.${i}`, { shape: [ids.length, MODEL.vocabSize], data: await model.logits(ids) });
    writeF32Safetensors(values.out, out);
    process.stdout.write(`wrote ${values.out}: ${out.size} f32 tensor(s)\n`);
  } finally {
    model.dispose();
  }
}

main(process.argv.slice(2)).catch((e: unknown) => fail((e as Error).message));
