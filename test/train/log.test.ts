import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readTrainLog, TrainLog } from '../../src/train/log.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peftc-log-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const rec = (step: number, extra: object = {}) => ({
  step,
  loss: 3 / step,
  lr: 1e-3,
  grad_norm: 0.5,
  tokens_per_s: 100,
  time: step * 0.1,
  ...extra,
});

describe('training log', () => {
  it('round trips records and is readable before close (written through)', () => {
    const f = path.join(dir, 'a', 'log.jsonl');
    const log = new TrainLog(f);
    log.write(rec(1));
    log.write(rec(2, { eval_loss: 2.5 }));
    expect(readTrainLog(f)).toEqual([rec(1), rec(2, { eval_loss: 2.5 })]);
    log.write(rec(3, { loss: Number.NaN }));
    log.close();
    const back = readTrainLog(f);
    expect(back).toHaveLength(3);
    expect(back[2].loss).toBeNull();
  });

  it('appends to an existing log, and on resume drops records after the checkpoint step', () => {
    const f = path.join(dir, 'b.jsonl');
    const a = new TrainLog(f);
    for (let s = 1; s <= 5; s++) a.write(rec(s));
    a.close();
    const b = new TrainLog(f, { resumeStep: 3 });
    b.write(rec(4, { loss: 0.1 }));
    b.close();
    const back = readTrainLog(f);
    expect(back.map((r) => r.step)).toEqual([1, 2, 3, 4]);
    expect(back[3].loss).toBe(0.1);
  });

  it('skips a torn last line but names file:line for a bad line elsewhere', () => {
    const f = path.join(dir, 'c.jsonl');
    fs.writeFileSync(f, `${JSON.stringify(rec(1))}\n{"step": 2, "lo`);
    expect(readTrainLog(f)).toEqual([rec(1)]);
    fs.writeFileSync(f, `${JSON.stringify(rec(1))}\nnope\n${JSON.stringify(rec(2))}\n`);
    expect(() => readTrainLog(f)).toThrow(`${f}:2: not valid JSON`);
    fs.writeFileSync(f, `${JSON.stringify({ step: 1, loss: 1 })}\n`);
    expect(() => readTrainLog(f)).toThrow(new RegExp(`${f}:1: lr:`));
  });
});
