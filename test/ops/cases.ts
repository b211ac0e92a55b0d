// The shared per-op test suite: for every core op, random cases and an independent
// reference. Backend-neutral (nothing here imports a backend): the CPU tests and the
// WebGPU tests both run these arbitraries and compare with `reference` / each other.
import type { CoreOpName } from '../../src/ir/ops/index.ts';
import type { OpCase } from './case.ts';
import { elementwiseCases } from './cases-elementwise.ts';
import { gradCases } from './cases-grad.ts';
import { layoutCases } from './cases-layout.ts';
import { nnCases } from './cases-nn.ts';
import { reduceCases } from './cases-reduce.ts';

export const opCases: Record<CoreOpName, OpCase> = {
  ...gradCases,
  ...elementwiseCases,
  ...reduceCases,
  ...layoutCases,
  ...nnCases,
};

export { type Case, DEFAULT_TOL, expectClose, type OpCase, OUT, opCase } from './case.ts';
