// The byte-level tokenizer of the bundled tiny model: ids 0..255 are the UTF-8 bytes
// of the text, then BOS, EOS and PAD. Every string round-trips; nothing to download.
import { type DecodeOptions, type EncodeOptions, type Tokenizer, TokenizerError } from './tokenizer.ts';

export class ByteTokenizer implements Tokenizer {
  readonly bosId = 256;
  readonly eosId = 257;
  readonly padId = 258;
  readonly vocabSize = 259;

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const bytes = Array.from(new TextEncoder().encode(text));
    return (opts.addSpecialTokens ?? true) ? [this.bosId, ...bytes] : bytes;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? true;
    const names = ['<s>', '</s>', '<pad>'];
    let out = '';
    let run: number[] = [];
    const flush = () => {
      // Invalid UTF-8 (e.g. a generation cut mid-character) becomes U+FFFD, as HF does.
      out += new TextDecoder().decode(Uint8Array.from(run));
      run = [];
    };
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TokenizerError(
          `token id ${id} is out of range for the byte-level tokenizer (0..${this.vocabSize - 1})`,
        );
      }
      if (id < 256) run.push(id);
      else {
        flush();
        if (!skip) out += names[id - 256];
      }
    }
    flush();
    return out;
  }
}
