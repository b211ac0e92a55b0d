#!/usr/bin/env node
// `node dist/cli.js logits --tokens <json file: array of token-id arrays> --out <file.safetensors>
//  [--overwrite]` writes f32 logits [seq, vocab] of sequence i under key `logits.<i>`, the
// format `peftc logits` writes.
// `node dist/cli.js generate --tokens <json: ids or id arrays, inline or a file>
//  [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]
//  [--seed N] [--eos ID]... [--json]` generates after each prompt as `peftc generate --tokens`
// does; `--json` prints one object per prompt: index, output_ids, finish_reason.
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_MAX_NEW_TOKENS, type GenerateOptions, loadModel, MODEL } from './runner.ts';
import { writeF32Safetensors } from './safetensors.ts';

const USAGE = `usage: node dist/cli.js logits --tokens <file.json> --out <file.safetensors> [--overwrite]
       node dist/cli.js generate --tokens <json|file.json> [--max-new-tokens N] [--temperature T] [--top-k K]
         [--top-p P] [--repetition-penalty R] [--seed N] [--eos ID]... [--json]`;

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

/** Parses `args` with node's parseArgs; a bad flag ends the process with the usage. */
function flags<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(
  args: string[],
  options: T,
) {
  try {
    return parseArgs({ args, options, strict: true }).values;
  } catch (e) {
    fail(`${(e as Error).message}\n${USAGE}`);
  }
}

async function logits(args: string[]): Promise<void> {
  const values = flags(args, {
    tokens: { type: 'string' },
    out: { type: 'string' },
    overwrite: { type: 'boolean' },
  });
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

/** A flag's number, checked: an integer or not, and its lowest value. */
function num(flag: string, v: string | undefined, o: { int?: boolean; min: number; max?: number }) {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (
    v.trim() === '' ||
    !Number.isFinite(n) ||
    (o.int && !Number.isInteger(n)) ||
    n < o.min ||
    n > (o.max ?? n)
  )
    fail(
      `--${flag} must be ${o.int ? 'an integer' : 'a number'} >= ${o.min}${o.max === undefined ? '' : ` and <= ${o.max}`}, got '${v}'`,
    );
  return n;
}

/** `--tokens` of generate: inline JSON or a file; an array of ids (one prompt) or of id arrays. */
function readPrompts(value: string, maxLen: number): number[][] {
  const inline = value.trimStart().startsWith('[');
  let json: unknown;
  try {
    json = JSON.parse(inline ? value : readFileSync(value, 'utf8'));
  } catch (e) {
    fail(
      `--tokens: ${inline ? 'not valid JSON' : `cannot read '${value}' as JSON`} (${(e as Error).message}); give an array of token ids or of token-id arrays`,
    );
  }
  const rows = Array.isArray(json) && json.every((x) => typeof x === 'number') ? [json] : json;
  if (!Array.isArray(rows) || rows.length === 0)
    fail('--tokens: expected a non-empty array of token ids or of token-id arrays');
  return rows.map((row, i) => {
    if (!Array.isArray(row) || row.length === 0 || row.length > maxLen)
      fail(`--tokens: row ${i} must be an array of 1 to ${maxLen} token ids (the cache slots)`);
    row.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= MODEL.vocabSize)
        fail(`--tokens: [${i}][${j}] = ${JSON.stringify(id)} is not a token id in [0, ${MODEL.vocabSize})`);
    });
    return row as number[];
  });
}

async function generate(args: string[]): Promise<void> {
  const g = MODEL.generation;
  if (!g) fail('this package was exported without generate plans; export it again with peftc');
  const v = flags(args, {
    tokens: { type: 'string' },
    'max-new-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-k': { type: 'string' },
    'top-p': { type: 'string' },
    'repetition-penalty': { type: 'string' },
    seed: { type: 'string' },
    eos: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  if (!v.tokens) fail(`generate needs --tokens\n${USAGE}`);
  const topP = num('top-p', v['top-p'], { min: 0, max: 1 });
  if (topP === 0) fail(`--top-p must be a number in (0, 1], got '${v['top-p']}'`);
  const repetitionPenalty = num('repetition-penalty', v['repetition-penalty'], { min: 0 });
  if (repetitionPenalty === 0)
    fail(`--repetition-penalty must be a number > 0, got '${v['repetition-penalty']}'`);
  const opts: GenerateOptions = {
    maxNewTokens: num('max-new-tokens', v['max-new-tokens'], { int: true, min: 1 }) ?? DEFAULT_MAX_NEW_TOKENS,
    temperature: num('temperature', v.temperature, { min: 0 }),
    topK: num('top-k', v['top-k'], { int: true, min: 0 }),
    topP,
    repetitionPenalty,
    seed: num('seed', v.seed, { int: true, min: 0 }),
    eos: v.eos?.map((e) => num('eos', e, { int: true, min: 0, max: MODEL.vocabSize - 1 }) as number),
  };
  const prompts = readPrompts(v.tokens, g.maxLen);
  const model = await loadModel();
  try {
    // One prompt without --json streams its ids as they come, as `peftc generate --tokens` does.
    const single = prompts.length === 1 && !v.json;
    for (const [index, ids] of prompts.entries()) {
      const r = await model.generate(ids, {
        ...opts,
        stream: index,
        onToken: single ? (id) => process.stdout.write(`${id} `) : undefined,
      });
      if (single) process.stdout.write('\n');
      else if (v.json)
        process.stdout.write(
          `${JSON.stringify({ index, output_ids: r.outputIds, finish_reason: r.finishReason })}\n`,
        );
      else process.stdout.write(`[${index}] ${JSON.stringify(r.outputIds)}\n`);
    }
  } finally {
    model.dispose();
  }
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'logits') return logits(rest);
  if (command === 'generate') return generate(rest);
  fail(`${command === undefined ? 'no command' : `unknown command '${command}'`}\n${USAGE}`);
}

main(process.argv.slice(2)).catch((e: unknown) => fail((e as Error).message));
