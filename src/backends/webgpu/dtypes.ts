// How each IR dtype lives on the GPU and moves to and from the host.
// Storage: f32/i32/u32 as themselves; f16 as f16 (needs shader-f16); bf16 as f32
// (WGSL has no bf16; unrounded, as the CPU interpreter holds it); u8 and u4 packed into u32
// words (4 and 8 per word, in the host's byte order). Compute: f32 for floats,
// i32 for i32, u32 for the unsigned types.
import { Float16Array } from '@petamoriken/float16';
import { byteSize, type DType } from '../../ir/dtype.ts';
import { type ComputeType, lit } from '../../ir/ops/math.ts';
import { numel, type Shape } from '../../ir/shape.ts';
import { allocFor, type Tensor } from '../../ir/tensor.ts';

export { type ComputeType, lit };

export function computeType(d: DType): ComputeType {
  if (d === 'f32' || d === 'f16' || d === 'bf16') return 'f32';
  return d === 'i32' ? 'i32' : 'u32';
}

export function isPacked(d: DType): boolean {
  return d === 'u8' || d === 'u4';
}

/** Elements per u32 word for packed dtypes (1 otherwise). */
export function perWord(d: DType): number {
  return d === 'u8' ? 4 : d === 'u4' ? 8 : 1;
}

export function storageElem(d: DType): string {
  switch (d) {
    case 'f32':
    case 'bf16':
      return 'f32';
    case 'f16':
      return 'f16';
    case 'i32':
      return 'i32';
    default:
      return 'u32';
  }
}

/** Bytes of the device buffer for `n` elements (a multiple of 4, at least 4). */
export function gpuByteSize(d: DType, n: number): number {
  const raw = d === 'bf16' ? n * 4 : byteSize(d, n);
  return Math.max(4, Math.ceil(raw / 4) * 4);
}

/** `enable f16;` when any of the dtypes is stored as f16. */
export function enables(dtypes: readonly DType[]): string {
  return dtypes.includes('f16') ? 'enable f16;\n' : '';
}

export function declStorage(name: string, d: DType, binding: number, write: boolean): string {
  return `@group(0) @binding(${binding}) var<storage, ${write ? 'read_write' : 'read'}> ${name}: array<${storageElem(d)}>;\n`;
}

/** `fn ld_<name>(i: u32) -> <compute type>`: element i of a bound buffer. */
export function loadFn(name: string, d: DType): string {
  const ct = computeType(d);
  let body: string;
  if (d === 'u8') body = `return (${name}[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;`;
  else if (d === 'u4') {
    // Byte i/2 holds two codes; the first element is the high nibble.
    body = `let b = i >> 1u; return (${name}[b >> 2u] >> ((b & 3u) * 8u + select(4u, 0u, (i & 1u) == 1u))) & 0xfu;`;
  } else if (d === 'f16') body = `return f32(${name}[i]);`;
  else body = `return ${name}[i];`;
  return `fn ld_${name}(i: u32) -> ${ct} { ${body} }\n`;
}

/** The statement storing compute value `v` at element `i` (not for packed dtypes). */
export function storeStmt(name: string, d: DType, i: string, v: string): string {
  if (d === 'f16') return `${name}[${i}] = f16(${v});`;
  if (isPacked(d)) throw new Error(`internal: storeStmt on packed ${d}`);
  return `${name}[${i}] = ${v};`;
}

/** Helpers every shader may use. */
export const PRELUDE = `// Through a var: WGSL rejects NaN and infinities in constant expressions.
fn nan_f32() -> f32 { var u = 0x7fc00000u; return bitcast<f32>(u); }
fn inf_f32(sign: f32) -> f32 { var u = 0x7f800000u; return sign * bitcast<f32>(u); }
`;

/** Converts a compute-typed WGSL expression between compute types. */
export function convert(expr: string, from: ComputeType, to: ComputeType): string {
  return from === to ? expr : `${to}(${expr})`;
}

/** Host bytes for a tensor as the device stores it (padded to a multiple of 4). */
export function encodeTensor(t: Tensor): Uint8Array<ArrayBuffer> {
  const n = numel(t.shape);
  const out = new Uint8Array(gpuByteSize(t.dtype, n));
  const src = t.data;
  switch (t.dtype) {
    case 'f32':
    case 'bf16':
      new Float32Array(out.buffer, 0, n).set(src);
      break;
    case 'f16':
      new Float16Array(out.buffer, 0, n).set(src as ArrayLike<number>);
      break;
    case 'i32':
      new Int32Array(out.buffer, 0, n).set(src);
      break;
    case 'u32':
      new Uint32Array(out.buffer, 0, n).set(src);
      break;
    case 'u8':
    case 'u4':
      out.set(src as Uint8Array);
      break;
  }
  return out;
}

/** A host tensor from device bytes. */
export function decodeTensor(dtype: DType, shape: Shape, bytes: ArrayBuffer): Tensor {
  const n = numel(shape);
  const len = dtype === 'u4' ? byteSize('u4', n) : n;
  const data = allocFor(dtype, len);
  switch (dtype) {
    case 'f32':
    case 'bf16':
      data.set(new Float32Array(bytes, 0, n));
      break;
    case 'f16':
      data.set(new Float16Array(bytes, 0, n));
      break;
    case 'i32':
      data.set(new Int32Array(bytes, 0, n));
      break;
    case 'u32':
      data.set(new Uint32Array(bytes, 0, n));
      break;
    case 'u8':
    case 'u4':
      data.set(new Uint8Array(bytes, 0, len));
      break;
  }
  return { dtype, shape: [...shape], data };
}
