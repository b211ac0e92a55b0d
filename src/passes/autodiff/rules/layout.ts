// VJPs of data movement: each is the transposed movement (inverse permutation,
// zero padding, slicing, the opposite roll, scatter_add for gathers).
import type { Value } from '../../../ir/builder.ts';
import { normAxis } from '../../../ir/shape.ts';
import { unbroadcast } from '../helpers.ts';
import { attrsOf, none, type VjpRule, vjp } from '../rule.ts';

export const layoutVjps = {
  reshape: vjp((c) => [c.needs[0] ? c.b.reshape(c.cot, [...c.inputs[0].type.shape]) : null]),
  transpose: vjp((c) => {
    const { dim0, dim1 } = attrsOf(c, 'transpose');
    return [c.needs[0] ? c.b.transpose(c.cot, dim0, dim1) : null];
  }),
  permute: vjp((c) => {
    const { perm } = attrsOf(c, 'permute');
    const inverse = new Array<number>(perm.length);
    perm.forEach((p, i) => {
      inverse[p] = i;
    });
    return [c.needs[0] ? c.b.permute(c.cot, inverse) : null];
  }),
  // Pad the cotangent with zeros back to the input's extent along the axis.
  slice: vjp((c) => {
    if (!c.needs[0]) return [null];
    const { axis, start, end } = attrsOf(c, 'slice');
    const x = c.inputs[0];
    const ax = normAxis(axis, x.type.shape.length);
    const size = x.type.shape[ax];
    const zeros = (n: number): Value => {
      const s = [...x.type.shape];
      s[ax] = n;
      return c.b.const(0, s, x.type.dtype);
    };
    const parts = [...(start > 0 ? [zeros(start)] : []), c.cot, ...(end < size ? [zeros(size - end)] : [])];
    return [parts.length === 1 ? c.cot : c.b.concat(parts, ax)];
  }),
  concat: vjp((c) => {
    const { axis } = attrsOf(c, 'concat');
    const ax = normAxis(axis, c.out.type.shape.length);
    let at = 0;
    return c.inputs.map((x, i) => {
      const n = x.type.shape[ax];
      const from = at;
      at += n;
      return c.needs[i] ? c.b.slice(c.cot, ax, from, from + n) : null;
    });
  }),
  roll: vjp((c) => {
    const { shift, axis } = attrsOf(c, 'roll');
    return [c.needs[0] ? c.b.roll(c.cot, -shift, axis) : null];
  }),
  gather: vjp(
    (c) => {
      if (!c.needs[0]) return [null, null];
      const [x, idx] = c.inputs;
      const ax = normAxis(attrsOf(c, 'gather').axis, x.type.shape.length);
      return [c.b.scatterAdd(c.cot, idx, ax, x.type.shape[ax]), null];
    },
    [1], // indices
  ),
  embedding: vjp(
    (c) => {
      const [table, ids] = c.inputs;
      return [c.needs[0] ? c.b.scatterAdd(c.cot, ids, 0, table.type.shape[0]) : null, null];
    },
    [1], // token ids
  ),
  // scatter_add's transpose is gather at the same indices.
  scatter_add: vjp(
    (c) => {
      if (!c.needs[0]) return [null, null];
      const [upd, idx] = c.inputs;
      const ax = normAxis(attrsOf(c, 'scatter_add').axis, upd.type.shape.length - idx.type.shape.length + 1);
      return [c.b.gather(c.cot, idx, ax), null];
    },
    [1], // indices
  ),
  one_hot: none('one_hot maps integer ids to a constant 0/1 tensor'),
  broadcast_to: vjp((c) => [c.needs[0] ? unbroadcast(c.b, c.cot, c.inputs[0].type.shape) : null]),
  stop_gradient: none('stop_gradient detaches its input by definition'),
} satisfies Record<string, VjpRule>;
