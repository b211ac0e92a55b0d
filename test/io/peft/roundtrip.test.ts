import * as path from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { loraConfig, rankFor, readPeftAdapter, writePeftAdapter } from '../../../src/io/peft/index.ts';
import type { Tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

const segment = fc
  .stringMatching(/^[a-z][a-z0-9_]{0,5}$/)
  .filter((s) => !s.startsWith('lora_') && s !== 'modules_to_save' && s !== 'base_layer');
const moduleName = fc
  .array(fc.oneof(segment, fc.integer({ min: 0, max: 3 }).map(String)), { minLength: 1, maxLength: 4 })
  .map((p) => p.join('.'));

function rand(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = Math.fround(Math.sin(seed * 31 + i) * 3);
  return { dtype: 'f32', shape, data };
}

const caseArb = fc.record({
  modules: fc.uniqueArray(moduleName, { minLength: 1, maxLength: 4 }),
  r: fc.integer({ min: 1, max: 4 }),
  // rank_pattern keys are module-name suffixes (regex-escaped) so they may or may not match.
  patterns: fc.array(fc.tuple(fc.nat(10), fc.integer({ min: 1, max: 4 })), { maxLength: 2 }),
  dora: fc.boolean(),
  embedding: fc.boolean(),
  saveHead: fc.boolean(),
  adapter: fc.constantFrom('default', 'other', 'my-adapter'),
  dims: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })),
});

describe('PEFT adapter round trip', () => {
  it('write then read gives back config and every graph-named tensor exactly', () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const rank_pattern: Record<string, number> = {};
        for (const [i, rank] of c.patterns) {
          const m = c.modules[i % c.modules.length].split('.');
          rank_pattern[esc(m.slice(m.length - 1 - (i % m.length)).join('.'))] = rank;
        }
        // Sorted like the written JSON (sort_keys): with overlapping keys the first match decides.
        const sortedPattern = Object.fromEntries(
          Object.entries(rank_pattern).sort(([a], [b]) => (a < b ? -1 : 1)),
        );
        const config = loraConfig({
          r: c.r,
          lora_alpha: 2 * c.r,
          rank_pattern: sortedPattern,
          use_dora: c.dora,
          modules_to_save: c.saveHead ? ['lm_head'] : null,
        });
        const [inF, outF] = c.dims;
        const w = new Map<string, Tensor>();
        c.modules.forEach((m, i) => {
          const r = rankFor(config, m);
          if (c.embedding && i === 0) {
            w.set(`${m}.lora_embedding_A.${c.adapter}`, rand([r, inF], i));
            w.set(`${m}.lora_embedding_B.${c.adapter}`, rand([outF, r], i + 10));
            return;
          }
          w.set(`${m}.lora_A.${c.adapter}.weight`, rand([r, inF], i));
          w.set(`${m}.lora_B.${c.adapter}.weight`, rand([outF, r], i + 10));
          if (c.dora) w.set(`${m}.lora_magnitude_vector.${c.adapter}.weight`, rand([outF], i + 20));
        });
        if (c.saveHead) w.set(`lm_head.modules_to_save.${c.adapter}.weight`, rand([3, inF], 99));
        const dir = path.join(tmp(), 'a');
        writePeftAdapter(dir, { config, weights: w, adapterName: c.adapter });
        const back = readPeftAdapter(dir, c.adapter);
        expect(back.config).toEqual(config);
        expect(new Set(back.weights.keys())).toEqual(new Set(w.keys()));
        for (const [k, t] of w) {
          const b = back.weights.get(k)!;
          expect(b.shape).toEqual(t.shape);
          expect(b.data).toEqual(t.data);
        }
      }),
      { numRuns: 40 },
    );
  });
});
