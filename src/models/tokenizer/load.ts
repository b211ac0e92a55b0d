// Finding the tokenizer of a model directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ByteTokenizer } from './byte-level.ts';
import { HfTokenizer } from './hf.ts';
import { type Tokenizer, TokenizerError } from './tokenizer.ts';

export interface LoadTokenizerOptions {
  /** Use the byte-level tokenizer when the directory has no tokenizer.json (the bundled tiny model). */
  fallbackToBytes?: boolean;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new TokenizerError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

/** `tokenizer.json` (+ `tokenizer_config.json`) from `modelDir`, else a clear error (or bytes, if asked). */
export function loadTokenizer(modelDir: string, opts: LoadTokenizerOptions = {}): Tokenizer {
  const tj = path.join(modelDir, 'tokenizer.json');
  if (fs.existsSync(tj)) {
    const cfgPath = path.join(modelDir, 'tokenizer_config.json');
    const cfg = fs.existsSync(cfgPath) ? readJson(cfgPath) : {};
    return new HfTokenizer(readJson(tj), cfg, tj);
  }
  if (opts.fallbackToBytes) return new ByteTokenizer();
  const sp = fs.existsSync(path.join(modelDir, 'tokenizer.model'));
  throw new TokenizerError(
    `${tj}: missing.` +
      (sp
        ? ' Only a SentencePiece tokenizer.model is present, which peftc does not read; create tokenizer.json with ' +
          'transformers: AutoTokenizer.from_pretrained(dir).save_pretrained(dir).'
        : ' peftc reads Hugging Face tokenizer.json files; copy it from the model repository.'),
  );
}
