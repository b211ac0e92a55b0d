import { describe, expect, it } from 'vitest';
import { lrAt } from '../../src/train/schedule.ts';

describe('lrAt (HF schedules)', () => {
  it('no schedule is a constant lr', () => {
    expect(lrAt(undefined, 0.1, 0, 10)).toBe(0.1);
    expect(lrAt(undefined, 0.1, 9, 10)).toBe(0.1);
  });
  it('warms up linearly from 0', () => {
    const s = { type: 'constant', warmup_steps: 4 } as const;
    expect([0, 1, 2, 3, 4, 9].map((k) => lrAt(s, 1, k, 10))).toEqual([0, 0.25, 0.5, 0.75, 1, 1]);
  });
  it('linear decays to 0 at the last step', () => {
    const s = { type: 'linear', warmup_steps: 2 } as const;
    expect(lrAt(s, 1, 2, 10)).toBe(1);
    expect(lrAt(s, 1, 6, 10)).toBe(0.5);
    expect(lrAt(s, 1, 10, 10)).toBe(0);
  });
  it('cosine follows the half cosine', () => {
    const s = { type: 'cosine', warmup_steps: 0 } as const;
    expect(lrAt(s, 2, 0, 10)).toBeCloseTo(2);
    expect(lrAt(s, 2, 5, 10)).toBeCloseTo(1);
    expect(lrAt(s, 2, 10, 10)).toBeCloseTo(0);
  });
});
