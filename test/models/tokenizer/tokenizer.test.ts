import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ByteTokenizer,
  HfTokenizer,
  loadTokenizer,
  TokenizerError,
} from '../../../src/models/tokenizer/index.ts';
import { useTmpDirs } from '../../io/tmp.ts';

const fixture = path.join(import.meta.dirname, '../../fixtures/io/bpe-tokenizer');
const tmp = useTmpDirs();

describe('ByteTokenizer', () => {
  const t = new ByteTokenizer();
  it('ids are UTF-8 bytes, then BOS/EOS/PAD', () => {
    expect(t.vocabSize).toBe(259);
    expect([t.bosId, t.eosId, t.padId]).toEqual([256, 257, 258]);
    expect(t.encode('hé')).toEqual([256, 0x68, 0xc3, 0xa9]);
    expect(t.encode('hé', { addSpecialTokens: false })).toEqual([0x68, 0xc3, 0xa9]);
    expect(t.decode([256, 0x68, 257, 0x69, 258])).toBe('hi');
    expect(t.decode([256, 0x68, 257], { skipSpecialTokens: false })).toBe('<s>h</s>');
    expect(t.decode([0xc3])).toBe('\uFFFD');
    expect(() => t.decode([259])).toThrow(/token id 259 is out of range/);
  });
  it('round-trips any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), (s) => {
        expect(t.decode(t.encode(s))).toBe(s);
      }),
      { numRuns: 100 },
    );
  });
});

describe('HF tokenizer.json (BPE)', () => {
  const t = loadTokenizer(fixture);
  it('encodes with the merges and the BOS template, by hand-computed ids', () => {
    expect(t).toBeInstanceOf(HfTokenizer);
    expect(t.vocabSize).toBe(40);
    expect([t.bosId, t.eosId, t.padId]).toEqual([0, 1, 3]);
    // "hello" = merges h e -> he, l l -> ll, he ll -> hell, hell o -> hello (34); " world" -> Ġworld (39).
    expect(t.encode('hello world')).toEqual([0, 34, 39]);
    expect(t.encode('hello world', { addSpecialTokens: false })).toEqual([34, 39]);
    expect(t.encode('hex')).toEqual([0, 31, 28]);
    expect(t.encode('xyz!')).toEqual([0, 28, 29, 30, 2]); // '!' is not in the vocab: <unk>
    expect(t.decode([0, 34, 39])).toBe('hello world');
    expect(t.decode([0, 34, 39], { skipSpecialTokens: false })).toBe('<s>hello world');
    expect(() => t.decode([40])).toThrow(TokenizerError);
  });
  it('round-trips text over its alphabet', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z ]{0,24}$/), (s) => {
        expect(t.decode(t.encode(s))).toBe(s);
      }),
      { numRuns: 100 },
    );
  });
});

describe('loadTokenizer', () => {
  it('fails clearly without tokenizer.json, or falls back to bytes when asked', () => {
    const dir = tmp();
    expect(() => loadTokenizer(dir)).toThrow(
      /tokenizer\.json: missing\. peftc reads Hugging Face tokenizer\.json/,
    );
    fs.writeFileSync(path.join(dir, 'tokenizer.model'), '');
    expect(() => loadTokenizer(dir)).toThrow(/SentencePiece tokenizer\.model .*save_pretrained/);
    expect(loadTokenizer(dir, { fallbackToBytes: true })).toBeInstanceOf(ByteTokenizer);
  });
  it('names a broken tokenizer.json', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": ');
    expect(() => loadTokenizer(dir)).toThrow(/tokenizer\.json: not valid JSON/);
  });
  it('works without tokenizer_config.json (no special ids known)', () => {
    const dir = tmp();
    fs.copyFileSync(path.join(fixture, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    const t = loadTokenizer(dir);
    expect(t.bosId).toBeUndefined();
    expect(t.encode('hello')).toEqual([0, 34]);
  });
});
