import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ByteTokenizer } from '../../src/models/tokenizer/index.ts';
import {
  Batcher,
  evalBatches,
  IGNORE_INDEX,
  loadDataset,
  loadDocuments,
  packDocuments,
  type Row,
  splitRows,
  tokenizeDocuments,
} from '../../src/train/data/index.ts';

// The bundled model's tokenizer: ids = UTF-8 bytes, then bos/eos/pad (encode adds bos by default).
const BOS = 256;
const EOS = 257;
const PAD = 258;
const bytes = new ByteTokenizer();

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peftc-data-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, text);
  return p;
}

describe('loading', () => {
  it('splits plain text on blank lines and keeps inner line breaks', () => {
    const f = file('a.txt', 'one\ntwo\n\n\n  \nthree\n');
    const docs = loadDocuments(f);
    expect(docs.map((d) => (d.kind === 'text' ? d.text : ''))).toEqual(['one\ntwo', 'three']);
    expect(docs[1].where).toBe(`${f}:6`);
  });

  it('reads the three JSONL shapes', () => {
    const f = file('b.jsonl', '{"text":"hi"}\n\n{"prompt":"a","completion":"b"}\n{"input_ids":[1,2,3]}\n');
    expect(loadDocuments(f).map((d) => d.kind)).toEqual(['text', 'pair', 'ids']);
  });

  it('names file:line for bad JSON and missing keys', () => {
    const bad = file('bad.jsonl', '{"text":"ok"}\n{"text": oops}\n');
    expect(() => loadDocuments(bad)).toThrow(`${bad}:2: not valid JSON`);
    const missing = file('missing.jsonl', '{"text":"ok"}\n\n{"prompt":"only"}\n');
    expect(() => loadDocuments(missing)).toThrow(`${missing}:3: 'completion': missing`);
    const none = file('none.jsonl', '{"body":"x"}\n');
    expect(() => loadDocuments(none)).toThrow(/none\.jsonl:1: no known key \(found body\)/);
    const ids = file('ids.jsonl', '{"input_ids":[1,-2]}\n');
    expect(() => loadDocuments(ids)).toThrow(/ids\.jsonl:1: 'input_ids': must be a non-empty array/);
  });

  it('rejects an empty file', () => {
    const f = file('empty.txt', '\n  \n');
    expect(() => loadDocuments(f)).toThrow(`${f}: data file is empty`);
  });

  it('rejects token ids outside the vocabulary, naming where', () => {
    const f = file('tok.json', '[[1,2],[3,999]]');
    expect(() => loadDataset({ tokens: f, tokenizer: bytes, seq: 2, evalFraction: 0 })).toThrow(
      `${f}[1]: token id 999 at position 1 is out of range for a vocabulary of 259 (ids 0..258)`,
    );
    // Pre-tokenized data without a tokenizer: the model's vocab_size bounds the ids.
    const h = file('tok3.json', '[[1,2,3],[4,5,255,256]]');
    expect(() =>
      loadDataset({ tokens: h, seq: 2, vocabSize: 256, vocabName: "the model's vocab_size" }),
    ).toThrow(
      `${h}[1]: token id 256 at position 3 is out of range for a vocabulary of 256 (the model's vocab_size; ids 0..255)`,
    );
    const ok = loadDataset({ tokens: h, seq: 2, vocabSize: 257, padId: 7, evalFraction: 0 });
    expect([ok.train.length, ok.padId]).toEqual([3, 7]);
    const g = file('tok2.json', '{"a":1}');
    expect(() => loadDataset({ tokens: g, seq: 2 })).toThrow(/expected a non-empty JSON array/);
  });
});

describe('tokenizing and packing', () => {
  it('masks the prompt and learns the completion, with bos/eos', () => {
    const [d] = tokenizeDocuments([{ kind: 'pair', prompt: 'ab', completion: 'c', where: 'x:1' }], bytes);
    expect(d.ids).toEqual([BOS, 97, 98, 99, EOS]);
    expect(d.labels).toEqual([IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 99, EOS]);
  });

  it('packing concatenates documents and cuts rows of seq, labels = ids outside prompts', () => {
    const docs = tokenizeDocuments(
      [
        { kind: 'text', text: 'abc', where: 'x:1' },
        { kind: 'pair', prompt: 'd', completion: 'ef', where: 'x:2' },
      ],
      bytes,
    );
    // stream: BOS a b c EOS | BOS d e f EOS = 10 tokens -> 3 rows of 3, 1 dropped
    const { rows, stats } = packDocuments(docs, { seq: 3, pack: true, source: 'x' });
    expect(rows.map((r) => Array.from(r.ids))).toEqual([
      [BOS, 97, 98],
      [99, EOS, BOS],
      [100, 101, 102],
    ]);
    expect(rows.map((r) => Array.from(r.labels))).toEqual([
      [BOS, 97, 98],
      [99, EOS, IGNORE_INDEX],
      [IGNORE_INDEX, 101, 102],
    ]);
    expect(stats).toMatchObject({ documents: 2, tokens: 10, rows: 3, droppedTokens: 1 });
  });

  it('without packing pads each document with pad id and label -100', () => {
    const docs = tokenizeDocuments([{ kind: 'pair', prompt: 'a', completion: 'b', where: 'x:1' }], bytes);
    const { rows } = packDocuments(docs, { seq: 6, pack: false, padId: PAD, source: 'x' });
    expect(Array.from(rows[0].ids)).toEqual([BOS, 97, 98, EOS, PAD, PAD]);
    expect(Array.from(rows[0].labels)).toEqual([-100, -100, 98, EOS, -100, -100]);
  });

  it('says how many tokens there are and how many one row needs', () => {
    const f = file('short.txt', 'hi');
    expect(() => loadDataset({ data: f, tokenizer: bytes, seq: 16 })).toThrow(
      `${f}: has 4 tokens after tokenization; one row of seq 16 needs 16`,
    );
  });

  it('packing keeps every token in order (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 20 }), {
          minLength: 1,
          maxLength: 8,
        }),
        fc.integer({ min: 2, max: 9 }),
        (docs, seq) => {
          const flat = docs.flat();
          fc.pre(flat.length >= seq);
          const tok = docs.map((ids) => ({ ids, labels: ids, where: 'p' }));
          const { rows } = packDocuments(tok, { seq, pack: true, source: 'p' });
          const got = rows.flatMap((r) => Array.from(r.ids));
          expect(got).toEqual(flat.slice(0, Math.floor(flat.length / seq) * seq));
        },
      ),
      { numRuns: 50 },
    );
  });
});

function fakeRows(n: number, seq: number): Row[] {
  return Array.from({ length: n }, (_, r) => {
    const ids = Int32Array.from({ length: seq }, (_, t) => r * 100 + t);
    return { ids, labels: ids.slice() };
  });
}

describe('split and batches', () => {
  it('eval split is disjoint from train, covers all rows, and is seeded', () => {
    const rows = fakeRows(37, 4);
    const a = splitRows(rows, 0.2, 7);
    expect(a.eval.length).toBe(7);
    expect(a.train.length + a.eval.length).toBe(37);
    const trainSet = new Set(a.train);
    expect(a.eval.some((r) => trainSet.has(r))).toBe(false);
    expect(splitRows(rows, 0.2, 7).eval).toEqual(a.eval);
    expect(splitRows(rows, 0.2, 8).eval).not.toEqual(a.eval);
    // One row cannot be split: it all trains, no eval, and a notice says so (naming real flags).
    const one = splitRows(fakeRows(1, 4), 0.1, 0, 'd.json');
    expect([one.train.length, one.eval.length]).toEqual([1, 0]);
    expect(one.notice).toBe(
      'd.json has only 1 row of 4 tokens, too few to hold out eval data: training on it all with no eval (add data, lower --seq, or pass --eval-data <file>)',
    );
    expect(splitRows(fakeRows(1, 4), 0, 0).notice).toBeUndefined();
    expect(() => splitRows(fakeRows(3, 4), 1, 0, 'd.json')).toThrow(
      'd.json: the eval fraction (--eval-fraction / eval_fraction) must be in [0, 1), got 1',
    );
  });

  it('batchAt is a pure function of (rows, B, seed, step): a resumed batcher gives the same batches', () => {
    const rows = fakeRows(10, 3);
    const a = new Batcher(rows, { batchSize: 4, seed: 3 });
    const run = Array.from({ length: 12 }, (_, s) => a.batchAt(s));
    // "resume": a fresh batcher that starts at step 7
    const b = new Batcher(rows, { batchSize: 4, seed: 3 });
    for (let s = 7; s < 12; s++) {
      const x = b.batchAt(s);
      expect(Array.from(x.input_ids.data)).toEqual(Array.from(run[s].input_ids.data));
      expect(Array.from(x.labels.data)).toEqual(Array.from(run[s].labels.data));
    }
    expect(run[0].input_ids.shape).toEqual([4, 3]);
    expect(run[0].input_ids.dtype).toBe('i32');
    expect(run[0].tokens).toBe(12);
    expect(run[0].labelTokens).toBe(8);
  });

  it('each epoch visits every row once and epochs are reshuffled', () => {
    const rows = fakeRows(8, 2);
    const bt = new Batcher(rows, { batchSize: 4, seed: 1 });
    const epoch0 = [...bt.batchAt(0).rows, ...bt.batchAt(1).rows];
    const epoch1 = [...bt.batchAt(2).rows, ...bt.batchAt(3).rows];
    expect([...epoch0].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect([...epoch1].sort()).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(epoch1).not.toEqual(epoch0);
    expect(new Batcher(rows, { batchSize: 4, seed: 2 }).batchAt(0).rows).not.toEqual(bt.batchAt(0).rows);
  });

  it('resume check names what changed', () => {
    const rows = fakeRows(8, 2);
    const saved = new Batcher(rows, { batchSize: 4, seed: 1, fingerprint: 'f1' }).cursor(5);
    expect(saved).toMatchObject({ step: 5, sample: 20, epoch: 2 });
    new Batcher(rows, { batchSize: 4, seed: 1, fingerprint: 'f1' }).assertResumable(saved);
    expect(() =>
      new Batcher(rows, { batchSize: 2, seed: 1, fingerprint: 'f1' }).assertResumable(saved),
    ).toThrow(/batch size \(4 then, 2 now\)/);
  });

  it('eval batches cover every row once; the tail is masked padding', () => {
    const rows = fakeRows(5, 3);
    const bs = evalBatches(rows, 2, 9);
    expect(bs.map((b) => b.rows)).toEqual([
      [0, 1],
      [2, 3],
      [4, -1],
    ]);
    expect(Array.from(bs[2].input_ids.data).slice(3)).toEqual([9, 9, 9]);
    expect(Array.from(bs[2].labels.data).slice(3)).toEqual([-100, -100, -100]);
    expect(bs[2].labelTokens).toBe(2);
  });

  it('loadDataset end to end: same seed, same split and fingerprint', () => {
    const f = file('doc.txt', 'the cat sat.\n\nthe dog ran.\n\na bird sang a song.\n');
    const a = loadDataset({ data: f, tokenizer: bytes, seq: 8, evalFraction: 0.25, seed: 4 });
    const b = loadDataset({ data: f, tokenizer: bytes, seq: 8, evalFraction: 0.25, seed: 4 });
    expect(a.train.length + a.eval.length).toBe(a.stats.rows);
    // 3 docs of 12+2, 12+2, 19+2 tokens = 49 -> 6 rows of 8; round(0.25 * 6) = 2 held out
    expect(a.stats.rows).toBe(6);
    expect(a.eval.length).toBe(2);
    expect(b.eval.map((r) => Array.from(r.ids))).toEqual(a.eval.map((r) => Array.from(r.ids)));
    expect(a.fingerprint).toBe(b.fingerprint);
    expect(loadDataset({ data: f, tokenizer: bytes, seq: 7 }).fingerprint).not.toBe(a.fingerprint);
  });

  it('--eval-data: every data row trains; the eval rows come from the other file, in the same format', () => {
    const f = file('train.json', JSON.stringify([[1, 2, 3, 4, 5, 6, 7, 8]]));
    const e = file(
      'eval.json',
      JSON.stringify([
        [9, 9, 9, 9],
        [8, 8, 8, 8],
      ]),
    );
    const ds = loadDataset({ tokens: f, evalData: e, seq: 4, vocabSize: 10, evalFraction: 0.5 });
    expect(ds.train.map((r) => Array.from(r.ids))).toEqual([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
    ]);
    expect(ds.eval.map((r) => Array.from(r.ids))).toEqual([
      [9, 9, 9, 9],
      [8, 8, 8, 8],
    ]);
    expect(ds.notices).toEqual([]);
    // Its ids are checked like the training data's.
    const bad = file('bad-eval.json', JSON.stringify([[1, 10]]));
    expect(() => loadDataset({ tokens: f, evalData: bad, seq: 4, vocabSize: 10 })).toThrow(
      `${bad}[0]: token id 10 at position 1`,
    );
  });
});
