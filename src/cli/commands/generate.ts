// `peftc generate --model <dir> [--adapter <dir>]... [--merge] (--prompt <text> | --tokens <json>)
//   [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R]
//   [--stop <text>]... [--seed N] [--json]` plus the backend flags: decodes with the KV cache
// (src/generate), streaming the text as it is produced; `--json` prints one object per row.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DecodeSession, type Generation, generate, type SamplingOptions } from '../../generate/index.ts';
import { openModel, tokenizerOf } from '../../models/open.ts';
import type { Tokenizer } from '../../models/tokenizer/index.ts';
import { UsageError } from '../errors.ts';
import {
  addBackendOptions,
  type BackendCliOptions,
  backendFrom,
  collect,
  nonNegativeInt,
  positiveInt,
  positiveNumber,
} from '../options.ts';

export interface GenerateCliOptions extends BackendCliOptions {
  readonly model: string;
  readonly adapter?: string[];
  readonly merge?: boolean;
  readonly prompt?: string[];
  readonly tokens?: string;
  readonly maxNewTokens?: number;
  readonly temperature?: number;
  readonly topK?: number;
  readonly topP?: number;
  readonly repetitionPenalty?: number;
  readonly stop?: string[];
  readonly seed?: number;
  readonly json?: boolean;
}

/** Rows decoded together at most; more prompts take rows as earlier ones finish. */
const MAX_BATCH = 16;
const DEFAULT_MAX_NEW_TOKENS = 32;

export function register(program: Command): void {
  addBackendOptions(
    program
      .command('generate')
      .description('generate text with the model (and PEFT adapters), streaming it as it is produced')
      .requiredOption('--model <dir|preset>', 'Hugging Face model directory, 4-bit checkpoint or preset')
      .option('--adapter <dir>', 'PEFT adapter directory (repeat for several)', collect)
      .option('--merge', 'merge the adapters into the base weights first')
      .option(
        '--prompt <text>',
        'prompt text, encoded by the model tokenizer (repeat for several rows)',
        collect,
      )
      .option(
        '--tokens <json>',
        'prompt token ids instead of text: a JSON array of ids or of id arrays (one per row), inline or a file',
      )
      .option(
        '--max-new-tokens <n>',
        `most tokens generated per row (default ${DEFAULT_MAX_NEW_TOKENS})`,
        positiveInt('--max-new-tokens'),
      )
      .option(
        '--temperature <t>',
        'sampling temperature; 0 (or no sampling flag) = greedy',
        nonNegativeNumber('--temperature'),
      )
      .option('--top-k <k>', 'sample among the k most likely tokens (0 = off)', nonNegativeInt('--top-k'))
      .option(
        '--top-p <p>',
        'sample among the most likely tokens reaching probability p, in (0, 1]',
        unitInterval('--top-p'),
      )
      .option(
        '--repetition-penalty <r>',
        "Hugging Face's repetition penalty (1 = off)",
        positiveNumber('--repetition-penalty'),
      )
      .option('--stop <text>', 'stop a row when its text contains this (repeat for several)', collect)
      .option(
        '--seed <n>',
        'seed of the sampling (seeded runs repeat exactly; default 0)',
        nonNegativeInt('--seed'),
      )
      .option('--json', 'print one JSON object per row: output_ids, text, finish_reason'),
  ).action(async (o: GenerateCliOptions) => {
    await runGenerate(o, (s) => process.stdout.write(s));
  });
}

function nonNegativeNumber(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0)
      throw new UsageError(`${flag} must be a number >= 0, got '${v}'`);
    return n;
  };
}

function unitInterval(flag: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (v.trim() === '' || !(n > 0 && n <= 1))
      throw new UsageError(`${flag} must be a number in (0, 1], got '${v}'`);
    return n;
  };
}

/** `--tokens`: inline JSON or a JSON file; one array of ids (one row) or an array of id arrays. */
export function parseTokensFlag(value: string, vocab: number): number[][] {
  const inline = value.trimStart().startsWith('[');
  let json: unknown;
  try {
    json = JSON.parse(inline ? value : readFileSync(value, 'utf8'));
  } catch (e) {
    throw new UsageError(
      `--tokens: ${inline ? 'not valid JSON' : `cannot read '${value}' as JSON`} (${(e as Error).message}); give an array of token ids or of token-id arrays`,
    );
  }
  const rows = Array.isArray(json) && json.every((x) => typeof x === 'number') ? [json] : json;
  if (!Array.isArray(rows) || rows.length === 0)
    throw new UsageError('--tokens: expected a non-empty array of token ids or of token-id arrays');
  return rows.map((row, i) => {
    if (!Array.isArray(row) || row.length === 0)
      throw new UsageError(`--tokens: row ${i} must be a non-empty array of token ids`);
    row.forEach((id, j) => {
      if (!Number.isInteger(id) || id < 0 || id >= vocab)
        throw new UsageError(
          `--tokens: [${i}][${j}] = ${JSON.stringify(id)} is not a token id in [0, ${vocab})`,
        );
    });
    return row as number[];
  });
}

export function samplingFrom(o: GenerateCliOptions): SamplingOptions {
  return {
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    repetitionPenalty: o.repetitionPenalty,
    seed: o.seed,
  };
}

/** The command behind `peftc generate`: writes the stream / JSON lines through `write`; returns the results. */
export async function runGenerate(o: GenerateCliOptions, write: (s: string) => void): Promise<Generation[]> {
  if (o.merge && !o.adapter?.length)
    throw new UsageError('--merge needs at least one --adapter <dir> to merge');
  if (!o.prompt === !o.tokens)
    throw new UsageError('give the prompt as --prompt <text> or as --tokens <json> (one of them)');
  const model = openModel(o.model);
  const tok = tokenizerOf(model);
  if (o.prompt && !tok)
    throw new UsageError(
      `--prompt needs the model's tokenizer, but ${o.model} has no tokenizer.json; add it, or give token ids with --tokens <json>`,
    );
  if (o.stop?.length && !tok)
    throw new UsageError(`--stop needs the model's tokenizer, but ${o.model} has no tokenizer.json`);
  const prompts = o.tokens
    ? parseTokensFlag(o.tokens, model.config.vocabSize)
    : (o.prompt ?? []).map((p) => (tok as Tokenizer).encode(p));
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new UsageError(`--prompt ${i}: the prompt encodes to no tokens`);
  });
  const maxNewTokens = o.maxNewTokens ?? DEFAULT_MAX_NEW_TOKENS;
  const eos = [...(model.config.eosTokenIds ?? []), ...(tok?.eosId !== undefined ? [tok.eosId] : [])];
  const backend = await backendFrom(o);
  try {
    const session = await DecodeSession.create(backend, model, {
      batch: Math.min(prompts.length, MAX_BATCH),
      maxLen: Math.max(...prompts.map((p) => p.length)) + maxNewTokens,
      adapters: o.adapter,
      merge: o.merge,
    });
    const single = prompts.length === 1 && !o.json;
    try {
      const results = await generate(session, prompts, {
        maxNewTokens,
        sampling: samplingFrom(o),
        eos,
        stop: o.stop,
        decode: tok ? (ids) => tok.decode(ids) : undefined,
        // One row streams as it goes: its text, or its ids without a tokenizer.
        onText: single ? (_, t) => write(t) : undefined,
        onToken: single && !tok ? (_, id) => write(`${id} `) : undefined,
      });
      if (single) write('\n');
      else
        results.forEach((r, i) => {
          if (o.json) write(`${JSON.stringify(jsonRow(i, r))}\n`);
          else write(`[${i}] ${r.text ?? JSON.stringify(r.outputIds)}\n`);
        });
      return results;
    } finally {
      session.dispose();
    }
  } finally {
    backend.dispose();
  }
}

function jsonRow(index: number, r: Generation): Record<string, unknown> {
  return {
    index,
    output_ids: r.outputIds,
    ...(r.text !== undefined ? { text: r.text } : {}),
    finish_reason: r.finishReason,
  };
}
