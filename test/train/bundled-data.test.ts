// The bundled example data: regenerating it gives the committed files, and it goes
// through the data pipeline (text packing; prompt masking for the instruct set).
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { makeTinyInstruct } from '../../examples/data/make-tiny-instruct.ts';
import { makeTinyStories } from '../../examples/data/make-tiny-stories.ts';
import { ByteTokenizer } from '../../src/models/tokenizer/index.ts';
import { IGNORE_INDEX, loadDataset } from '../../src/train/data/index.ts';

const STORIES = 'examples/data/tiny-stories.txt';
const INSTRUCT = 'examples/data/tiny-instruct.jsonl';
const bytes = new ByteTokenizer();

describe('bundled data', () => {
  it('is what the committed generators produce', () => {
    expect(fs.readFileSync(STORIES, 'utf8')).toBe(makeTinyStories(1234, 60_000));
    const lines = makeTinyInstruct(4321, 200).map((p) => JSON.stringify(p));
    expect(fs.readFileSync(INSTRUCT, 'utf8')).toBe(`${lines.join('\n')}\n`);
  });

  it('tiny-stories packs into rows with a small vocabulary', () => {
    const ds = loadDataset({ data: STORIES, tokenizer: bytes, seq: 128, evalFraction: 0.1, seed: 0 });
    expect(ds.stats.documents).toBeGreaterThan(200);
    expect(ds.train.length).toBeGreaterThan(300);
    expect(ds.eval.length).toBeGreaterThan(30);
    const distinct = new Set(fs.readFileSync(STORIES, 'utf8').split(/[^A-Za-z]+/));
    expect(distinct.size).toBeLessThan(200);
  });

  it('tiny-instruct learns only completions', () => {
    const ds = loadDataset({
      data: INSTRUCT,
      tokenizer: bytes,
      seq: 64,
      pack: false,
      evalFraction: 0.1,
      seed: 0,
    });
    expect(ds.stats.documents).toBe(200);
    expect(ds.stats.droppedDocs).toBe(0);
    for (const r of [...ds.train, ...ds.eval]) {
      const answer = r.ids.indexOf(':'.charCodeAt(0), r.ids.indexOf('A'.charCodeAt(0)));
      expect(r.labels[answer]).toBe(IGNORE_INDEX); // the prompt's last token
      expect(r.labels[answer + 1]).toBe(' '.charCodeAt(0)); // the completion's first
    }
  });
});
