// The decoding loop over a DecodeSession: prompts take free rows as rows finish
// (continuous batching), every active row advances one token per decode run, and a row
// stops on an end-of-sequence token, a stop string or its token limit.
import { Sampler, type SamplingOptions } from './sampling.ts';
import type { DecodeSession } from './session.ts';

export type FinishReason = 'stop' | 'length';

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
  readonly sampler: Sampler;
  readonly seen: number[];
  readonly out: number[];
  /** Characters of text already streamed. */
  streamed: number;
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
  const eos = new Set(o.eos ?? []);
  const stops = (o.stop ?? []).filter((s) => s.length > 0);

  const text = (a: Active): { text: string; stopped: boolean } => {
    const full = o.decode ? o.decode(a.out) : '';
    let cut = -1;
    for (const s of stops) {
      const at = full.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    return cut >= 0 ? { text: full.slice(0, cut), stopped: true } : { text: full, stopped: false };
  };
  const finish = (row: number, a: Active, reason: FinishReason, t: string | undefined) => {
    results[a.index] = { outputIds: a.out, finishReason: reason, ...(o.decode ? { text: t ?? '' } : {}) };
    rows.delete(row);
    session.release(row);
  };
  // Takes the next token of a row; finishes the row when it is done.
  const accept = (row: number, a: Active, logits: Float32Array): void => {
    const token = a.sampler.next(logits, a.seen);
    a.out.push(token);
    a.seen.push(token);
    o.onToken?.(a.index, token);
    const t = o.decode ? text(a) : undefined;
    const done: FinishReason | undefined =
      eos.has(token) || t?.stopped
        ? 'stop'
        : a.out.length >= o.maxNewTokens || session.length(row) + 1 > session.maxLen
          ? 'length'
          : undefined;
    if (t && o.onText) {
      // Stream only text that cannot turn into a stop string or a split character.
      const hold = done ? 0 : Math.max(heldBack(t.text, stops), t.text.endsWith('\uFFFD') ? 1 : 0);
      const upto = t.text.length - hold;
      if (upto > a.streamed) {
        o.onText(a.index, t.text.slice(a.streamed, upto));
        a.streamed = upto;
      }
    }
    if (done) finish(row, a, done, t?.text);
  };

  while (pending.length || rows.size) {
    const free = session.freeRows().filter((r) => !rows.has(r));
    const joining = free.slice(0, pending.length).map((row) => {
      const index = pending.shift() as number;
      const a: Active = {
        index,
        sampler: new Sampler(o.sampling ?? {}, index),
        seen: [...prompts[index]],
        out: [],
        streamed: 0,
      };
      rows.set(row, a);
      return { row, tokens: prompts[index] };
    });
    if (joining.length) {
      const logits = await session.prefill(joining);
      joining.forEach((j, i) => {
        const a = rows.get(j.row) as Active;
        if (o.maxNewTokens <= 0) finish(j.row, a, 'length', o.decode ? '' : undefined);
        else accept(j.row, a, logits[i]);
      });
      continue; // rows freed by the first token take the next prompts first
    }
    const stepping = [...rows].map(([row, a]) => ({ row, token: a.out[a.out.length - 1] }));
    const logits = await session.step(stepping);
    stepping.forEach((s, i) => {
      accept(s.row, rows.get(s.row) as Active, logits[i]);
    });
  }
  return results;
}

/** Characters at the end of `text` that begin some stop string (held back from the stream). */
export function heldBack(text: string, stops: readonly string[]): number {
  let hold = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}
