// The decoding loop over a DecodeSession: prompts take free rows as rows finish
// (continuous batching), every active row advances one token per decode run, and a row
// stops on an end-of-sequence token, a stop string or its token limit.
import { type FinishReason, RowDecoder } from './row.ts';
import type { SamplingOptions } from './sampling.ts';
import type { DecodeSession } from './session.ts';

export type { FinishReason } from './row.ts';

export interface GenerateOptions {
  /** Most tokens generated per prompt. */
  readonly maxNewTokens: number;
  readonly sampling?: SamplingOptions;
  /** Token ids that end a row (kept as its last output id, as Hugging Face does). */
  readonly eos?: readonly number[];
  /** Texts that end a row; the text stops before the first one (needs `decode`). */
  readonly stop?: readonly string[];
  /** Token ids to text (the tokenizer), for stop strings, `text` and streaming. */
  readonly decode?: (ids: readonly number[]) => string;
  /** Each generated token of prompt `index`, as produced. */
  readonly onToken?: (index: number, token: number) => void;
  /** New text of prompt `index` as it becomes final (never a part of a stop string). */
  readonly onText?: (index: number, text: string) => void;
}

export interface Generation {
  /** Generated token ids (an end-of-sequence token included). */
  readonly outputIds: number[];
  /** The decoded text, cut before a stop string (when `decode` was given). */
  readonly text?: string;
  readonly finishReason: FinishReason;
}

interface Active {
  readonly index: number;
  readonly row: RowDecoder;
}

/**
 * Generates for every prompt (token ids) and returns one result per prompt, in order. A
 * seeded run repeats exactly whatever the batch: prompt i always draws from stream i.
 */
export async function generate(
  session: DecodeSession,
  prompts: readonly (readonly number[])[],
  o: GenerateOptions,
): Promise<Generation[]> {
  const results: Generation[] = new Array(prompts.length);
  const rows = new Map<number, Active>();
  const pending = prompts.map((_, i) => i);
  const rowOptions = { ...o, eos: new Set(o.eos ?? []) };

  const finish = (row: number, a: Active, reason: FinishReason) => {
    const text = a.row.text;
    results[a.index] = {
      outputIds: a.row.out,
      finishReason: reason,
      ...(text !== undefined ? { text } : {}),
    };
    rows.delete(row);
    session.release(row);
  };
  // Takes the next token of a row; finishes the row when it is done.
  const accept = (row: number, a: Active, logits: Float32Array): void => {
    const r = a.row.accept(logits, session.length(row) + 1 > session.maxLen);
    o.onToken?.(a.index, r.token);
    if (r.text) o.onText?.(a.index, r.text);
    if (r.done) finish(row, a, r.done);
  };

  while (pending.length || rows.size) {
    const free = session.freeRows().filter((r) => !rows.has(r));
    const joining = free.slice(0, pending.length).map((row) => {
      const index = pending.shift() as number;
      const a: Active = { index, row: new RowDecoder(prompts[index], rowOptions, index) };
      rows.set(row, a);
      return { row, tokens: prompts[index] };
    });
    if (joining.length) {
      const logits = await session.prefill(joining);
      joining.forEach((j, i) => {
        const a = rows.get(j.row) as Active;
        if (o.maxNewTokens <= 0) finish(j.row, a, 'length');
        else accept(j.row, a, logits[i]);
      });
      continue; // rows freed by the first token take the next prompts first
    }
    const stepping = [...rows].map(([row, a]) => ({ row, token: a.row.out[a.row.out.length - 1] }));
    const logits = await session.step(stepping);
    stepping.forEach((s, i) => {
      accept(s.row, rows.get(s.row) as Active, logits[i]);
    });
  }
  return results;
}
