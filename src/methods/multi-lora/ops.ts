// The `sgmv` op (Punica's segmented gather matrix-vector product, ../../../shared/METHODS.md
// "Generation and multi-LoRA serving"): many LoRA adapters in one batch on top of one
// shared base matmul. Every batch row b picks a slot a = index[b] (or none: -1, or any
// index outside [0, slots)); for each of that row's tokens t
//   out[t] = y[t] + scale[a] * (x[t] A_a^T) B_a^T
// with A stacked per slot [slots, r_max, in] and B [slots, out, r_max]: adapters of lower
// rank are zero-padded to r_max, so slots of different ranks share one shape, and a slot
// that holds no adapter for this module is all zeros. y is the base linear's output (of
// any linear: full precision or linear_4bit) without its bias. An optional 7th input
// mag [slots, out] rescales a row's result per output feature (DoRA's m / ||W + s B A||,
// 1 for LoRA): out[t] = mag[a] * (y[t] + scale[a] (x[t] A_a^T) B_a^T). Inference-only:
// it has no VJP (serving never differentiates it; autodiff names the op if a training
// graph ever holds one).
import { z } from 'zod';
import type { TensorType } from '../../ir/graph.ts';
import { defineOp, hasOp, registerOp } from '../../ir/ops/index.ts';
import { formatShape, ShapeError } from '../../ir/shape.ts';

export const sgmvOp = defineOp({
  name: 'sgmv',
  arity: [6, 7],
  attrs: z.strictObject({}),
  infer: (ins: readonly TensorType[]) => {
    const [y, x, idx, A, B, s, mag] = ins;
    const where = `sgmv(y ${formatShape(y.shape)}, x ${formatShape(x.shape)}, index ${formatShape(idx.shape)}, A ${formatShape(A.shape)}, B ${formatShape(B.shape)}, scale ${formatShape(s.shape)})`;
    for (const [n, t] of [
      ['y', y],
      ['x', x],
      ['A', A],
      ['B', B],
      ['scale', s],
      ...(mag ? [['mag', mag] as const] : []),
    ] as const)
      if (t.dtype !== 'f32') throw new ShapeError(`${where}: ${n} must be f32, got ${t.dtype}`);
    if (idx.dtype !== 'i32') throw new ShapeError(`${where}: index must be i32, got ${idx.dtype}`);
    if (A.shape.length !== 3 || B.shape.length !== 3)
      throw new ShapeError(`${where}: A must be [slots, r_max, in] and B [slots, out, r_max]`);
    const [slots, r, inF] = A.shape;
    const [slotsB, outF, rB] = B.shape;
    if (slotsB !== slots || rB !== r) throw new ShapeError(`${where}: A and B disagree on slots or r_max`);
    if (s.shape.length !== 1 || s.shape[0] !== slots)
      throw new ShapeError(`${where}: scale must be [${slots}] (one per slot)`);
    if (mag && (mag.shape.length !== 2 || mag.shape[0] !== slots || mag.shape[1] !== outF))
      throw new ShapeError(
        `${where}: mag must be [${slots}, ${outF}] (a rescaling per slot and output feature)`,
      );
    if (x.shape.length < 2 || y.shape.length !== x.shape.length)
      throw new ShapeError(`${where}: x and y must be [batch, ..., features] of one rank`);
    if (x.shape[x.shape.length - 1] !== inF || y.shape[y.shape.length - 1] !== outF)
      throw new ShapeError(`${where}: x must end in in=${inF} and y in out=${outF}`);
    if (x.shape.slice(0, -1).some((d, i) => d !== y.shape[i]))
      throw new ShapeError(`${where}: x and y differ in their leading (token) axes`);
    if (idx.shape.length !== 1 || idx.shape[0] !== x.shape[0])
      throw new ShapeError(`${where}: index must be [${x.shape[0]}] (one slot per batch row)`);
    return { dtype: 'f32', shape: [...y.shape] };
  },
  doc: '[mag[a] *] (y + scale[a] (x A_a^T) B_a^T) per batch row, a = index[row] (-1: none): multi-LoRA gather (Punica SGMV)',
});

if (!hasOp('sgmv')) registerOp(sgmvOp);
