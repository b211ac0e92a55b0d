// Every op's VJP against central finite differences and the dot-product test, in
// float64 on the CPU reference, on random shapes (fast-check seeds drive the Maker).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CORE_OPS } from '../../../src/ir/ops/index.ts';
import { vjpRule } from '../../../src/passes/autodiff/index.ts';
import { basicCases } from './cases-basic.ts';
import { structureCases } from './cases-structure.ts';
import { checkGradients, makeProblem } from './gradcheck.ts';

const CASES = { ...basicCases, ...structureCases };
/** Leaves: every case's variables are params, and inputs/consts appear throughout. */
const LEAVES = new Set(['input', 'param', 'const']);
const seed = fc.integer({ min: 1, max: 0x7fffffff });

describe('VJP rules', () => {
  it('every core op has a VJP rule and a gradient-check case', () => {
    // stop_gradient deliberately disagrees with finite differences; autodiff.test.ts checks it.
    const missing = CORE_OPS.filter((op) => !LEAVES.has(op) && op !== 'stop_gradient' && !(op in CASES));
    expect(missing).toEqual([]);
    for (const op of CORE_OPS) expect(() => vjpRule(op)).not.toThrow();
    for (const op of LEAVES) expect(vjpRule(op).kind).toBe('leaf');
  });

  for (const [op, build] of Object.entries(CASES)) {
    it(`${op}: finite differences and dot-product test`, () => {
      fc.assert(
        fc.property(seed, (s) => {
          checkGradients(makeProblem(s, build), s);
        }),
        { numRuns: op === 'attention' ? 60 : 30 },
      );
    });
  }
});
