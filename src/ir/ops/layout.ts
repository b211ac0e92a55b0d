// Data movement: reshape, transpose, permute, slice, concat, roll, gather, embedding.
import { z } from 'zod';
import { isFloat } from '../dtype.ts';
import { formatShape, isPermutation, normAxis, numel, ShapeError } from '../shape.ts';
import { defineOp } from './def.ts';

export const reshape = defineOp({
  name: 'reshape',
  arity: 1,
  attrs: z.strictObject({ shape: z.array(z.number().int().min(-1)) }),
  infer: ([a], { shape }) => {
    const n = numel(a.shape);
    const holes = shape.filter((d) => d === -1).length;
    if (holes > 1) throw new ShapeError(`reshape target ${formatShape(shape)} has more than one -1`);
    const known = shape.reduce((p, d) => (d === -1 ? p : p * d), 1);
    const out = shape.map((d) => (d === -1 ? (known === 0 ? 0 : n / known) : d));
    if (numel(out) !== n || out.some((d) => !Number.isInteger(d))) {
      throw new ShapeError(`cannot reshape ${formatShape(a.shape)} (${n} elements) to ${formatShape(shape)}`);
    }
    return { dtype: a.dtype, shape: out };
  },
  doc: 'same elements, new shape (one -1 is inferred)',
});

export const transpose = defineOp({
  name: 'transpose',
  arity: 1,
  attrs: z.strictObject({ dim0: z.number().int(), dim1: z.number().int() }),
  infer: ([a], { dim0, dim1 }) => {
    const r = a.shape.length;
    const i = normAxis(dim0, r);
    const j = normAxis(dim1, r);
    const s = [...a.shape];
    [s[i], s[j]] = [s[j], s[i]];
    return { dtype: a.dtype, shape: s };
  },
  doc: 'swap two axes (torch.transpose)',
});

export const permute = defineOp({
  name: 'permute',
  arity: 1,
  attrs: z.strictObject({ perm: z.array(z.number().int().nonnegative()) }),
  infer: ([a], { perm }) => {
    if (!isPermutation(perm, a.shape.length)) {
      throw new ShapeError(
        `permute perm ${JSON.stringify(perm)} is not a permutation of rank ${a.shape.length}`,
      );
    }
    return { dtype: a.dtype, shape: perm.map((p) => a.shape[p]) };
  },
  doc: 'reorder axes: out.shape[i] = in.shape[perm[i]]',
});

export const slice = defineOp({
  name: 'slice',
  arity: 1,
  attrs: z.strictObject({ axis: z.number().int(), start: z.number().int(), end: z.number().int() }),
  infer: ([a], { axis, start, end }) => {
    const ax = normAxis(axis, a.shape.length);
    const d = a.shape[ax];
    if (start < 0 || end > d || start > end) {
      throw new ShapeError(`slice [${start}, ${end}) is out of range for axis ${axis} of size ${d}`);
    }
    const s = [...a.shape];
    s[ax] = end - start;
    return { dtype: a.dtype, shape: s };
  },
  doc: 'elements [start, end) along one axis',
});

export const concat = defineOp({
  name: 'concat',
  arity: [1, Number.POSITIVE_INFINITY],
  attrs: z.strictObject({ axis: z.number().int() }),
  infer: (ins, { axis }) => {
    const first = ins[0];
    const ax = normAxis(axis, first.shape.length);
    let total = 0;
    for (const t of ins) {
      if (t.dtype !== first.dtype)
        throw new ShapeError(`concat inputs differ in dtype: ${first.dtype} vs ${t.dtype}`);
      if (t.shape.length !== first.shape.length || t.shape.some((d, i) => i !== ax && d !== first.shape[i])) {
        throw new ShapeError(
          `concat along axis ${axis}: ${formatShape(t.shape)} does not match ${formatShape(first.shape)} off that axis`,
        );
      }
      total += t.shape[ax];
    }
    const s = [...first.shape];
    s[ax] = total;
    return { dtype: first.dtype, shape: s };
  },
  doc: 'join along an axis',
});

export const roll = defineOp({
  name: 'roll',
  arity: 1,
  attrs: z.strictObject({ shift: z.number().int(), axis: z.number().int() }),
  infer: ([a], { axis }) => {
    normAxis(axis, a.shape.length);
    return a;
  },
  doc: 'torch.roll along one axis: out[(i + shift) mod n] = in[i]',
});

export const gather = defineOp({
  name: 'gather',
  arity: 2,
  attrs: z.strictObject({ axis: z.number().int() }),
  infer: ([x, idx], { axis }) => {
    if (idx.dtype !== 'i32' && idx.dtype !== 'u32')
      throw new ShapeError(`gather indices must be i32/u32, got ${idx.dtype}`);
    const ax = normAxis(axis, x.shape.length);
    return { dtype: x.dtype, shape: [...x.shape.slice(0, ax), ...idx.shape, ...x.shape.slice(ax + 1)] };
  },
  doc: 'numpy.take: out = x indexed along axis by every index in idx',
});

export const embedding = defineOp({
  name: 'embedding',
  arity: 2,
  attrs: z.strictObject({}),
  infer: ([table, ids]) => {
    if (table.shape.length !== 2)
      throw new ShapeError(`embedding table must be [vocab, dim], got ${formatShape(table.shape)}`);
    if (!isFloat(table.dtype)) throw new ShapeError(`embedding table must be float, got ${table.dtype}`);
    if (ids.dtype !== 'i32' && ids.dtype !== 'u32')
      throw new ShapeError(`embedding ids must be i32/u32, got ${ids.dtype}`);
    return { dtype: table.dtype, shape: [...ids.shape, table.shape[1]] };
  },
  doc: 'rows of table[vocab, dim] for each id',
});
