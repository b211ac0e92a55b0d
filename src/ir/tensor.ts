// Host tensors: what the CPU interpreter computes on, what weight stores hold and
// what backends read back. Float data is f32 by default; the CPU oracle can use f64.
import { byteSize, type DType } from './dtype.ts';
import { formatShape, numel, type Shape, ShapeError } from './shape.ts';

export type TensorData = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

export interface Tensor {
  readonly dtype: DType;
  readonly shape: Shape;
  /** Row-major elements; for `u4` the packed bytes; for f16/bf16 decoded to f32 on the host. */
  readonly data: TensorData;
}

export function tensor(dtype: DType, shape: Shape, data?: TensorData | ArrayLike<number>): Tensor {
  const n = numel(shape);
  const expected = dtype === 'u4' ? byteSize('u4', n) : n;
  let d: TensorData;
  if (data === undefined) d = allocFor(dtype, expected);
  else if (isTypedData(data)) d = data;
  else {
    d = allocFor(dtype, expected);
    for (let i = 0; i < data.length; i++) d[i] = data[i];
  }
  if (d.length !== expected) {
    throw new ShapeError(`tensor ${dtype}${formatShape(shape)} needs ${expected} elements, got ${d.length}`);
  }
  return { dtype, shape: [...shape], data: d };
}

function isTypedData(x: unknown): x is TensorData {
  return (
    x instanceof Float32Array ||
    x instanceof Float64Array ||
    x instanceof Int32Array ||
    x instanceof Uint32Array ||
    x instanceof Uint8Array
  );
}

/** The host array type for a dtype (f16/bf16 are held as f32 on the host). */
export function allocFor(dtype: DType, length: number): TensorData {
  switch (dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
      return new Float32Array(length);
    case 'i32':
      return new Int32Array(length);
    case 'u32':
      return new Uint32Array(length);
    case 'u8':
    case 'u4':
      return new Uint8Array(length);
  }
}

export function scalar(value: number, dtype: DType = 'f32'): Tensor {
  return tensor(dtype, [], [value]);
}

export function toArray(t: Tensor): number[] {
  return Array.from(t.data);
}
