// Every core op: the CPU interpreter against the shared cases' independent references,
// in f32 (the default) and in f64 (where it must match to ~1e-9).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { CORE_OPS } from '../../../src/ir/ops/index.ts';
import { DEFAULT_TOL, expectClose, OUT, opCases } from '../../ops/cases.ts';

describe('cpu kernels vs reference formulas', () => {
  for (const op of CORE_OPS) {
    it(op, () => {
      const c = opCases[op];
      expect(c, `op '${op}' has no case in test/ops/cases.ts`).toBeDefined();
      fc.assert(
        fc.property(c.arb, (cs) => {
          const expected = c.reference(cs);
          const f32 = runGraph(cs.graph, cs.feeds, cs.weights)[OUT];
          expectClose(f32, expected, c.tol ?? DEFAULT_TOL, `${op} (f32)`);
          const f64 = runGraph(cs.graph, cs.feeds, cs.weights, { precision: 'f64' })[OUT];
          expectClose(f64, expected, 1e-9, `${op} (f64)`);
        }),
        { numRuns: 40 },
      );
    });
  }
});
