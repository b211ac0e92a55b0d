// Index helpers shared by the kernels: broadcasting maps and axis decompositions.
import { numel, type Shape, strides } from '../../ir/shape.ts';

/**
 * For each flat index of `outShape` (row-major), the offset sum_a idx[a] * axisStrides[a].
 * With the input's strides per out axis this is a gather map (broadcast, permute).
 */
export function stridedIndex(outShape: Shape, axisStrides: readonly number[]): Int32Array {
  const n = numel(outShape);
  const map = new Int32Array(n);
  const rank = outShape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let o = 0; o < n; o++) {
    map[o] = src;
    // Odometer increment of the out index, keeping the offset in step.
    for (let a = rank - 1; a >= 0; a--) {
      idx[a]++;
      src += axisStrides[a];
      if (idx[a] < outShape[a]) break;
      src -= axisStrides[a] * idx[a];
      idx[a] = 0;
    }
  }
  return map;
}

/**
 * For each flat index of `outShape`, the flat index of the element of a tensor of
 * `inShape` that NumPy broadcasting reads there (size-1 and missing axes repeat).
 */
export function broadcastIndex(inShape: Shape, outShape: Shape): Int32Array {
  const inStrides = strides(inShape);
  // Stride of each out axis in the input: 0 where the input is broadcast along it.
  const s = new Array<number>(outShape.length).fill(0);
  const off = outShape.length - inShape.length;
  for (let i = 0; i < inShape.length; i++) s[i + off] = inShape[i] === 1 ? 0 : inStrides[i];
  return stridedIndex(outShape, s);
}

/** Splits a shape around `axis` into [outer, size, inner] element counts. */
export function aroundAxis(shape: Shape, axis: number): [number, number, number] {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}
