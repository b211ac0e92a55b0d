// One decoding row's bookkeeping, shared by the batch loop (generate.ts) and the server's
// scheduler (src/serve): the sampler of its request, the tokens it has seen, what it has
// produced, the text streamed so far, and when it is done (an EOS id, a stop string, its
// token limit, or a full cache).
import { Sampler, type SamplingOptions } from './sampling.ts';

export type FinishReason = 'stop' | 'length';

export interface RowOptions {
  /** Most tokens generated. */
  readonly maxNewTokens: number;
  readonly sampling?: SamplingOptions;
  /** Token ids that end the row (kept as its last output id, as Hugging Face does). */
  readonly eos?: ReadonlySet<number>;
  /** Texts that end the row; the text stops before the first one (needs `decode`). */
  readonly stop?: readonly string[];
  /** Token ids to text (the tokenizer), for stop strings, text and streaming. */
  readonly decode?: (ids: readonly number[]) => string;
}

/** What one accepted token changed. */
export interface Accepted {
  readonly token: number;
  /** Newly final text (never a part of a stop string or of a split character); '' if none. */
  readonly text: string;
  /** Set when the row is done after this token. */
  readonly done?: FinishReason;
}

export class RowDecoder {
  readonly out: number[] = [];
  private readonly sampler: Sampler;
  private readonly seen: number[];
  private readonly stops: readonly string[];
  private streamed = 0;
  private finalText: string | undefined;

  /** `stream` picks the row's own seeded draw stream (prompt i of a run draws from stream i). */
  constructor(
    prompt: readonly number[],
    private readonly o: RowOptions,
    stream = 0,
  ) {
    this.sampler = new Sampler(o.sampling ?? {}, stream);
    this.seen = [...prompt];
    this.stops = (o.stop ?? []).filter((s) => s.length > 0);
  }

  /** The decoded text, cut before a stop string (once done; with `decode`). */
  get text(): string | undefined {
    return this.o.decode ? (this.finalText ?? this.cut().text) : undefined;
  }

  /** Takes the next token from the row's logits; `cacheFull`: no slot is left for another token. */
  accept(logits: Float32Array, cacheFull: boolean): Accepted {
    const token = this.sampler.next(logits, this.seen);
    this.out.push(token);
    this.seen.push(token);
    const t = this.o.decode ? this.cut() : undefined;
    const done: FinishReason | undefined =
      this.o.eos?.has(token) || t?.stopped
        ? 'stop'
        : this.out.length >= this.o.maxNewTokens || cacheFull
          ? 'length'
          : undefined;
    let text = '';
    if (t) {
      // Stream only text that cannot turn into a stop string or a split character.
      const hold = done ? 0 : Math.max(heldBack(t.text, this.stops), t.text.endsWith('\uFFFD') ? 1 : 0);
      const upto = t.text.length - hold;
      if (upto > this.streamed) {
        text = t.text.slice(this.streamed, upto);
        this.streamed = upto;
      }
      if (done) this.finalText = t.text;
    }
    return { token, text, done };
  }

  private cut(): { text: string; stopped: boolean } {
    const full = this.o.decode ? this.o.decode(this.out) : '';
    let at = -1;
    for (const s of this.stops) {
      const i = full.indexOf(s);
      if (i >= 0 && (at < 0 || i < at)) at = i;
    }
    return at >= 0 ? { text: full.slice(0, at), stopped: true } : { text: full, stopped: false };
  }
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
