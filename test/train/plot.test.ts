import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { TrainLog } from '../../src/train/log.ts';
import { writeLossPlot } from '../../src/train/plot/index.ts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peftc-plot-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe('loss plot', () => {
  it('writes an SVG with both series and a real PNG', async () => {
    const log = path.join(dir, 'train_log.jsonl');
    const w = new TrainLog(log);
    // The trainer's step-0 record: the eval before training, no train loss yet.
    w.write({ step: 0, eval_loss: 5.3, lr: 1e-3, tokens_per_s: 0, time: 0 });
    for (let s = 1; s <= 60; s++) {
      const rec = { step: s, loss: 4 * Math.exp(-s / 20) + 1, lr: 1e-3, tokens_per_s: 500, time: s };
      w.write(s % 20 === 0 ? { ...rec, eval_loss: 4 * Math.exp(-s / 25) + 1.2 } : rec);
    }
    w.close();
    const files = await writeLossPlot(log);
    expect(files).toEqual({ svg: path.join(dir, 'train_log.svg'), png: path.join(dir, 'train_log.png') });
    const svg = fs.readFileSync(files.svg, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('train loss');
    expect(svg).toContain('eval loss');
    // the train line is one path through 60 points; eval points are 4 symbols (step 0 and 3 more)
    expect((svg.match(/<path[^>]*aria-roledescription="point"/g) ?? []).length).toBe(4);
    const png = fs.readFileSync(files.png);
    expect(Array.from(png.subarray(0, 8))).toEqual(PNG_SIGNATURE);
    expect(png.length).toBeGreaterThan(10_000);
    // IHDR width/height: 2x zoom of a chart wider than the 560px plot area
    expect(png.readUInt32BE(16)).toBeGreaterThan(1120);
  });

  it('says when there is nothing to plot, naming the log', async () => {
    const log = path.join(dir, 'nan.jsonl');
    fs.writeFileSync(log, `${JSON.stringify({ step: 1, loss: null, lr: 0, tokens_per_s: 0, time: 0 })}\n`);
    await expect(writeLossPlot(log)).rejects.toThrow(`${log}: nothing to plot`);
  });
});
