import { describe, expect, it } from 'vitest';
import { formatCount, formatDuration, Progress } from '../../src/train/progress.ts';

function sink(isTTY = false) {
  const out: string[] = [];
  // cli-progress cuts the bar line to the terminal's width.
  return { out, stream: { isTTY, columns: 120, write: (s: string) => out.push(s) } };
}

describe('progress', () => {
  it('without a TTY prints a plain line at the first step, every N steps and the last', () => {
    const { out, stream } = sink();
    let t = 0;
    const p = new Progress({ total: 25, stream, every: 10, now: () => t });
    for (let s = 1; s <= 25; s++) {
      t += 500; // 2 steps/s
      p.update({ step: s, loss: 3 - s * 0.1, lr: 1e-3, tokens: 64 });
    }
    p.log('eval loss 1.2345');
    p.stop();
    const lines = out.join('').trimEnd().split('\n');
    expect(lines.map((l) => l.split(' | ')[0])).toEqual([
      'step 1/25',
      'step 10/25',
      'step 20/25',
      'step 25/25',
      'eval loss 1.2345',
    ]);
    expect(lines[1]).toBe('step 10/25 | loss 2.0000 | lr 1.00e-3 | 128 tok/s 2.00 step/s | ETA 8s');
    expect(out.join('')).not.toContain('\r');
  });

  it('a resumed run counts from its start step', () => {
    const { out, stream } = sink();
    let t = 0;
    const p = new Progress({ total: 100, startStep: 90, stream, every: 5, now: () => t });
    t = 1000;
    p.update({ step: 91, loss: 1, lr: 0, tokens: 10 });
    expect(out[0]).toContain('step 91/100');
    expect(out[0]).toContain('1.00 step/s | ETA 9s');
  });

  it('on a TTY draws a bar with step/total, loss and lr', () => {
    const { out, stream } = sink(true);
    let t = 0;
    const p = new Progress({ total: 10, stream, now: () => t });
    t = 1000;
    p.update({ step: 5, loss: 2.5, lr: 2e-4, tokens: 100 });
    p.stop();
    const text = out.join('');
    expect(text).toContain('5/10');
    expect(text).toContain('loss 2.5000');
    expect(text).toContain('lr 2.00e-4');
  });

  it('formats durations and counts', () => {
    expect(formatDuration(5.2)).toBe('5s');
    expect(formatDuration(185)).toBe('3m05s');
    expect(formatDuration(3720)).toBe('1h02m');
    expect(formatDuration(Number.NaN)).toBe('-');
    expect(formatCount(950)).toBe('950');
    expect(formatCount(12345)).toBe('12.3k');
    expect(formatCount(4.56e6)).toBe('4.56M');
  });
});
