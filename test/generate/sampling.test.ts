// Sampling in Hugging Face's order: the processed scores equal transformers' logits
// processors (golden fixture), the filters keep what they promise (fast-check), and
// seeded draws repeat exactly.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { argmax, processLogits, Sampler, type SamplingOptions, softmax } from '../../src/generate/index.ts';

interface FixtureCase {
  settings: { repetition_penalty?: number; temperature?: number; top_k?: number; top_p?: number };
  logits: number[];
  seen: number[];
  processed: (number | null)[];
  kept: number[];
}

const fixture = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', 'fixtures', 'generate', 'hf-logits-processors.json'), 'utf8'),
) as { cases: FixtureCase[] };

function optionsOf(s: FixtureCase['settings']): SamplingOptions {
  return {
    repetitionPenalty: s.repetition_penalty,
    temperature: s.temperature,
    topK: s.top_k,
    topP: s.top_p,
  };
}

const kept = (x: ArrayLike<number>) =>
  Array.from(x).flatMap((v, i) => (v === Number.NEGATIVE_INFINITY ? [] : [i]));

describe("transformers' logits processors (scripts/reference/hf_logits_processors.py)", () => {
  for (const [i, c] of fixture.cases.entries()) {
    it(`case ${i}: ${JSON.stringify(c.settings)}`, () => {
      const got = processLogits(Float32Array.from(c.logits), c.seen, optionsOf(c.settings));
      expect(kept(got)).toEqual(c.kept);
      c.processed.forEach((want, j) => {
        if (want === null) expect(got[j]).toBe(Number.NEGATIVE_INFINITY);
        else expect(got[j]).toBeCloseTo(want, 4);
      });
    });
  }
});

const logitsArb = fc.array(fc.float({ min: -20, max: 20, noNaN: true, noDefaultInfinity: true }), {
  minLength: 1,
  maxLength: 40,
});

describe('sampling filters (properties)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens only', () => {
    fc.assert(
      fc.property(
        logitsArb,
        fc.array(fc.nat(60)),
        fc.float({ min: 0.5, max: 3, noNaN: true }),
        (x, seen, r) => {
          const got = processLogits(x, seen, { repetitionPenalty: r });
          const s = new Set(seen);
          x.forEach((v, i) => {
            const want = !s.has(i) ? v : v < 0 ? v * r : v / r;
            expect(got[i]).toBeCloseTo(want, 9);
          });
        },
      ),
    );
  });

  it('top-k keeps every token at least as likely as the k-th, and at least one', () => {
    fc.assert(
      fc.property(logitsArb, fc.integer({ min: 1, max: 50 }), (x, k) => {
        const got = kept(processLogits(x, [], { topK: k }));
        const kth = [...x].sort((a, b) => b - a)[Math.min(k, x.length) - 1];
        expect(got).toEqual(x.flatMap((v, i) => (v >= kth ? [i] : [])));
        expect(got.length).toBeGreaterThanOrEqual(Math.min(k, x.length));
      }),
    );
  });

  it('top-p keeps the smallest most-likely set reaching p (at least one token)', () => {
    fc.assert(
      fc.property(logitsArb, fc.float({ min: Math.fround(0.01), max: 1, noNaN: true }), (x, p) => {
        const got = processLogits(x, [], { topP: p });
        const probs = softmax(x);
        const keep = kept(got);
        expect(keep.length).toBeGreaterThanOrEqual(1);
        expect(Math.max(...keep.map((i) => probs[i]))).toBe(Math.max(...probs));
        const mass = keep.reduce((s, i) => s + probs[i], 0);
        expect(mass).toBeGreaterThanOrEqual(p - 1e-9);
        // Every kept token is at least as likely as every dropped one.
        const minKept = Math.min(...keep.map((i) => probs[i]));
        probs.forEach((q, i) => {
          if (!keep.includes(i)) expect(q).toBeLessThanOrEqual(minKept);
        });
        // Minimal: without its least likely token the set falls short of p.
        if (keep.length > 1) expect(mass - minKept).toBeLessThan(p + 1e-9);
      }),
    );
  });

  it('order: penalty, temperature, top-k, then top-p on the tempered top-k distribution', () => {
    fc.assert(
      fc.property(
        logitsArb,
        fc.array(fc.nat(40), { maxLength: 5 }),
        fc.float({ min: Math.fround(0.1), max: 4, noNaN: true }),
        fc.integer({ min: 1, max: 10 }),
        fc.float({ min: Math.fround(0.05), max: Math.fround(0.95), noNaN: true }),
        (x, seen, t, k, p) => {
          const penalized = processLogits(x, seen, { repetitionPenalty: 1.5 });
          const tempered = Array.from(penalized, (v) => v / t);
          const topk = processLogits(tempered, [], { topK: k, temperature: 1 });
          const want = processLogits(topk, [], { topP: p, temperature: 1 });
          const got = processLogits(x, seen, { repetitionPenalty: 1.5, temperature: t, topK: k, topP: p });
          expect(kept(got)).toEqual(kept(want));
        },
      ),
    );
  });

  it('draws only kept tokens; greedy is the argmax of the penalized logits', () => {
    fc.assert(
      fc.property(logitsArb, fc.integer({ min: 1, max: 5 }), fc.nat(1000), (x, k, seed) => {
        const s = new Sampler({ topK: k, temperature: 0.9, seed });
        const keep = kept(processLogits(x, [], { topK: k, temperature: 0.9 }));
        for (let i = 0; i < 5; i++) expect(keep).toContain(s.next(x, []));
        const greedy = new Sampler({ temperature: 0, repetitionPenalty: 2 });
        expect(greedy.next(x, [0])).toBe(argmax(processLogits(x, [0], { repetitionPenalty: 2 })));
      }),
    );
  });

  it('seeded draws repeat exactly; another seed or row stream draws differently', () => {
    const x = Float32Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2);
    const draw = (seed: number, stream = 0) => {
      const s = new Sampler({ temperature: 1.2, seed }, stream);
      return Array.from({ length: 40 }, () => s.next(x, []));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
    expect(draw(7, 1)).not.toEqual(draw(7, 0));
  });
});
