// tokenizer.ggml.* metadata (gguf-py constants.py Keys.Tokenizer; llama-vocab.cpp reads it).
// llama.cpp cannot load a model without `tokenizer.ggml.model`, so every export writes one:
// - no tokenizer.json and 259 tokens: peftc's byte-level tokenizer (the bundled tiny model;
//   `peftc train` uses it there) as a byte-level BPE ("gpt2") with no merges: token i is
//   byte i in GPT-2's byte-to-character map, so every UTF-8 byte is its own id as in peftc,
//   spaces included (a SentencePiece vocabulary would turn spaces into U+2581's bytes);
//   then <s>, </s>, <pad> as control tokens;
// - tokenizer.json with a byte-level BPE: "gpt2" (tokens, token types, merges);
// - tokenizer.json with a byte-fallback BPE (Llama 2 style): "llama" (tokens, scores from the
//   merge ranks, token types);
// - no tokenizer at all otherwise: "none" with llama.vocab_size (llama.cpp then adds dummy
//   tokens: token ids work, text does not).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GgufValue } from '../../io/gguf/index.ts';
import type { LlamaConfig } from '../../models/llama/config.ts';
import { UserError } from '../../util/errors.ts';

/** llama_token_type (llama.h): NORMAL 1, UNKNOWN 2, CONTROL 3, USER_DEFINED 4, BYTE 6. */
const TOKEN = { normal: 1, unknown: 2, control: 3, user: 4, byte: 6 } as const;

export interface TokenizerMetadata {
  readonly kv: [string, GgufValue][];
  /** What was written, in words (printed by the command). */
  readonly note: string;
}

const strArr = (values: readonly string[]): GgufValue => ({ type: 'array', itemType: 'string', values });
const i32Arr = (values: readonly number[]): GgufValue => ({ type: 'array', itemType: 'i32', values });
const f32Arr = (values: readonly number[]): GgufValue => ({ type: 'array', itemType: 'f32', values });
const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const bool = (value: boolean): GgufValue => ({ type: 'bool', value });
const str = (value: string): GgufValue => ({ type: 'string', value });

function specialIds(c: LlamaConfig, addBos: boolean | undefined): [string, GgufValue][] {
  const kv: [string, GgufValue][] = [];
  if (c.bosTokenId !== undefined) kv.push(['tokenizer.ggml.bos_token_id', u32(c.bosTokenId)]);
  if (c.eosTokenId !== undefined) kv.push(['tokenizer.ggml.eos_token_id', u32(c.eosTokenId)]);
  if (c.padTokenId !== undefined) kv.push(['tokenizer.ggml.padding_token_id', u32(c.padTokenId)]);
  if (addBos !== undefined) kv.push(['tokenizer.ggml.add_bos_token', bool(addBos)]);
  return kv;
}

/** GPT-2's bytes_to_unicode: the printable character a byte-level BPE writes for each byte. */
export function byteToUnicode(b: number): string {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
    return String.fromCharCode(b);
  let n = 0;
  for (let x = 0; x < b; x++)
    if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
  return String.fromCharCode(256 + n);
}

function byteVocab(c: LlamaConfig): TokenizerMetadata {
  const tokens = [...Array.from({ length: 256 }, (_, b) => byteToUnicode(b)), '<s>', '</s>', '<pad>'];
  const types = tokens.map((_, i) => (i < 256 ? TOKEN.normal : TOKEN.control));
  const kv: [string, GgufValue][] = [
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str('default')],
    ['tokenizer.ggml.tokens', strArr(tokens)],
    ['tokenizer.ggml.token_type', i32Arr(types)],
    ['tokenizer.ggml.merges', strArr([])],
    ...specialIds(
      {
        ...c,
        bosTokenId: c.bosTokenId ?? 256,
        eosTokenId: c.eosTokenId ?? 257,
        padTokenId: c.padTokenId ?? 258,
      },
      true,
    ),
  ];
  return {
    kv,
    note: "peftc's byte-level tokenizer (a byte-level BPE without merges: token i is byte i; <s>, </s>, <pad>)",
  };
}

interface TokenizerJson {
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: (string | [string, string])[];
    byte_fallback?: boolean;
    unk_token?: string | null;
  };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  pre_tokenizer?: unknown;
  normalizer?: unknown;
  decoder?: unknown;
}

function readJson(file: string): Record<string, unknown> {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

function fromTokenizerJson(file: string, dir: string, c: LlamaConfig): TokenizerMetadata {
  const tj = readJson(file) as TokenizerJson;
  const model = tj.model ?? {};
  if (model.type !== 'BPE' || !model.vocab)
    throw new UserError(
      `${file}: model.type ${JSON.stringify(model.type)}: peftc writes GGUF tokenizers for BPE models only (byte-level or byte-fallback); ` +
        'convert this model with llama.cpp convert_hf_to_gguf.py instead',
    );
  const n = Math.max(
    c.vocabSize,
    ...Object.values(model.vocab).map((i) => i + 1),
    ...(tj.added_tokens ?? []).map((t) => t.id + 1),
  );
  const tokens: string[] = Array.from({ length: n }, (_, i) => `[PAD${i}]`);
  const types: number[] = Array(n).fill(TOKEN.user);
  for (const [text, id] of Object.entries(model.vocab)) {
    tokens[id] = text;
    types[id] = TOKEN.normal;
  }
  for (const t of tj.added_tokens ?? []) {
    tokens[t.id] = t.content;
    types[t.id] = t.special ? TOKEN.control : TOKEN.user;
  }
  if (model.unk_token && model.vocab[model.unk_token] !== undefined)
    types[model.vocab[model.unk_token]] = TOKEN.unknown;
  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
  const cfgFile = join(dir, 'tokenizer_config.json');
  const cfg = existsSync(cfgFile) ? readJson(cfgFile) : {};
  const addBos = typeof cfg.add_bos_token === 'boolean' ? cfg.add_bos_token : undefined;
  const unk = model.unk_token ? model.vocab[model.unk_token] : undefined;
  const common: [string, GgufValue][] = [
    ['tokenizer.ggml.tokens', strArr(tokens)],
    ['tokenizer.ggml.token_type', i32Arr(types)],
    ...specialIds(c, addBos),
    ...(unk !== undefined ? ([['tokenizer.ggml.unknown_token_id', u32(unk)]] as [string, GgufValue][]) : []),
  ];
  if (JSON.stringify(tj.pre_tokenizer ?? null).includes('ByteLevel')) {
    // llama.cpp's own converter names the pre-tokenizer by hashing sample tokenizations;
    // "default" is the GPT-2 split (a model with another regex tokenizes text slightly differently).
    return {
      kv: [
        ['tokenizer.ggml.model', str('gpt2')],
        ['tokenizer.ggml.pre', str('default')],
        ...common,
        ['tokenizer.ggml.merges', strArr(merges)],
      ],
      note: `byte-level BPE from ${file} (${n} tokens, ${merges.length} merges, pre-tokenizer "default")`,
    };
  }
  if (model.byte_fallback) {
    // SentencePiece-style: llama.cpp merges the best-scored pair first; a token made by merge
    // k scores -k, so the merge order is the tokenizer.json's.
    const scores = Array(n).fill(0);
    merges.forEach((m, k) => {
      const id = model.vocab![m.replace(' ', '')];
      if (id !== undefined && scores[id] === 0) scores[id] = -k - 1;
    });
    tokens.forEach((t, i) => {
      if (/^<0x[0-9A-F]{2}>$/.test(t)) types[i] = TOKEN.byte;
    });
    const prefix = /Metaspace|Prepend/.test(
      JSON.stringify([tj.pre_tokenizer ?? null, tj.normalizer ?? null]),
    );
    return {
      kv: [
        ['tokenizer.ggml.model', str('llama')],
        ...common,
        ['tokenizer.ggml.scores', f32Arr(scores)],
        ['tokenizer.ggml.add_space_prefix', bool(prefix)],
      ],
      note: `byte-fallback BPE from ${file} as a SentencePiece vocabulary (${n} tokens)`,
    };
  }
  throw new UserError(
    `${file}: a BPE tokenizer that is neither byte-level nor byte-fallback; peftc cannot write it as a GGUF tokenizer`,
  );
}

export function tokenizerMetadata(dir: string | undefined, c: LlamaConfig): TokenizerMetadata {
  const file = dir && join(dir, 'tokenizer.json');
  if (file && existsSync(file)) return fromTokenizerJson(file, dir!, c);
  if (c.vocabSize === 259) return byteVocab(c);
  return {
    kv: [['tokenizer.ggml.model', str('none')]],
    note: 'no tokenizer (tokenizer.ggml.model = none: llama.cpp takes token ids only)',
  };
}
