// The VJP table for every core op. `satisfies Record<CoreOpName, VjpRule>` makes
// TypeScript refuse a core op without a rule.
import type { CoreOpName } from '../../../ir/ops/index.ts';
import { leaf, type VjpRule } from '../rule.ts';
import { elementwiseVjps } from './elementwise.ts';
import { layoutVjps } from './layout.ts';
import { linalgVjps } from './linalg.ts';
import { nnVjps } from './nn.ts';
import { reduceVjps } from './reduce.ts';

export const CORE_VJPS = {
  input: leaf,
  param: leaf,
  const: leaf,
  ...linalgVjps,
  ...elementwiseVjps,
  ...reduceVjps,
  ...layoutVjps,
  ...nnVjps,
} satisfies Record<CoreOpName, VjpRule>;
