// Hugging Face `tokenizer.json` (BPE and the other models tokenizers.js supports),
// with special tokens named by `tokenizer_config.json` when present.
import { Tokenizer as HfLib } from '@huggingface/tokenizers';
import { type DecodeOptions, type EncodeOptions, type Tokenizer, TokenizerError } from './tokenizer.ts';

type TokenSpec = string | { content: string } | null | undefined;

function tokenText(t: TokenSpec): string | undefined {
  if (typeof t === 'string') return t;
  return t?.content;
}

export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  private readonly tk: HfLib;

  /** `tokenizerJson`: parsed tokenizer.json; `config`: parsed tokenizer_config.json ({} when absent). */
  constructor(tokenizerJson: object, config: Record<string, unknown> = {}, source = 'tokenizer.json') {
    try {
      this.tk = new HfLib(tokenizerJson, config);
    } catch (e) {
      throw new TokenizerError(`${source}: cannot build the tokenizer: ${(e as Error).message}`);
    }
    let max = -1;
    for (const id of this.tk.get_vocab(true).values()) max = Math.max(max, id);
    this.vocabSize = max + 1;
    const id = (key: string) => {
      const text = tokenText(config[key] as TokenSpec);
      return text === undefined ? undefined : this.tk.token_to_id(text);
    };
    this.bosId = id('bos_token');
    this.eosId = id('eos_token');
    this.padId = id('pad_token');
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    return this.tk.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TokenizerError(
          `token id ${id} is out of range for this tokenizer (0..${this.vocabSize - 1})`,
        );
      }
    }
    return this.tk.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? true });
  }
}
