// Resume as the trainer will do it: save the data cursor in a checkpoint, read it back,
// check it against a fresh batcher, and continue with the same batches.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { tensor } from '../../src/ir/tensor.ts';
import { ByteTokenizer } from '../../src/models/tokenizer/index.ts';
import {
  checkpointPath,
  latestCheckpoint,
  loadCheckpoint,
  saveCheckpoint,
} from '../../src/train/checkpoint/index.ts';
import { Batcher, type DataCursor, loadDataset } from '../../src/train/data/index.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'peftc-resume-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const bytes = new ByteTokenizer();

it('k steps + checkpoint + resume gives the same batches as one run', () => {
  const data = path.join(root, 'd.txt');
  fs.writeFileSync(
    data,
    Array.from({ length: 30 }, (_, i) => `story ${i}: the cat sat on mat ${i}.`).join('\n\n'),
  );
  const opts = { data, tokenizer: bytes, seq: 16, evalFraction: 0.1, seed: 5 };
  const ds = loadDataset(opts);
  const one = new Batcher(ds.train, { batchSize: 3, seed: 5, fingerprint: ds.fingerprint });
  const all = Array.from({ length: 20 }, (_, s) => Array.from(one.batchAt(s).input_ids.data));

  const out = path.join(root, 'run');
  saveCheckpoint(checkpointPath(out, 7), {
    step: 7,
    params: { w: tensor('f32', [1], [0]) },
    optimizer: {},
    state: { data: one.cursor(7) },
  });

  // a new process: reload everything from disk
  const ds2 = loadDataset(opts);
  const ck = loadCheckpoint(latestCheckpoint(out) as string);
  const resumed = new Batcher(ds2.train, { batchSize: 3, seed: 5, fingerprint: ds2.fingerprint });
  resumed.assertResumable(ck.state.data as DataCursor);
  for (let s = ck.step; s < 20; s++) expect(Array.from(resumed.batchAt(s).input_ids.data)).toEqual(all[s]);

  // other data is refused
  const ds3 = loadDataset({ ...opts, seq: 12 });
  const other = new Batcher(ds3.train, { batchSize: 3, seed: 5, fingerprint: ds3.fingerprint });
  expect(() => other.assertResumable(ck.state.data as DataCursor)).toThrow(
    /cannot resume exactly at step 7: the data/,
  );
});
