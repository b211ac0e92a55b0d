// Converting a tensor's raw little-endian bytes to host arrays and back. Views are
// used where the layouts agree, so an f32 tensor is read straight into its final array.
import { endianness } from 'node:os';
import type { TensorData } from '../../ir/tensor.ts';
import { FormatError } from '../errors.ts';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../half.ts';
import type { StDType } from './dtypes.ts';

// Typed-array views below read the file's little-endian bytes in host order.
if (endianness() !== 'LE') throw new Error('peftc io: safetensors support needs a little-endian host');

interface Where {
  file: string;
  name: string;
}

/** `bytes` must start at offset 0 of its buffer (freshly allocated), so every view is aligned. */
export function decodeTensorBytes(bytes: Uint8Array, st: StDType, numel: number, at: Where): TensorData {
  const b = bytes.buffer;
  const o = bytes.byteOffset;
  switch (st) {
    case 'F32':
      return new Float32Array(b, o, numel);
    case 'F16':
      return decodeF16(new Uint16Array(b, o, numel));
    case 'BF16':
      return decodeBf16(new Uint16Array(b, o, numel));
    case 'I32':
      return new Int32Array(b, o, numel);
    case 'U32':
      return new Uint32Array(b, o, numel);
    case 'U8':
    case 'BOOL':
      return new Uint8Array(b, o, numel);
    case 'I8':
      return Int32Array.from(new Int8Array(b, o, numel));
    case 'I16':
      return Int32Array.from(new Int16Array(b, o, numel));
    case 'U16':
      return Uint32Array.from(new Uint16Array(b, o, numel));
    case 'F64': {
      const src = new Float64Array(b, o, numel);
      const out = Float32Array.from(src);
      for (let i = 0; i < numel; i++) {
        if (!Number.isFinite(out[i]) && Number.isFinite(src[i])) {
          throw new FormatError(at.file, `F64 value ${src[i]} at element ${i} does not fit in f32`, at.name);
        }
      }
      return out;
    }
    case 'I64': {
      // Pairs of (low, high) 32-bit words; the value fits in i32 when high is low's sign extension.
      const w = new Int32Array(b, o, numel * 2);
      const out = new Int32Array(numel);
      for (let i = 0; i < numel; i++) {
        const lo = w[2 * i];
        if (w[2 * i + 1] !== lo >> 31) {
          throw new FormatError(at.file, `I64 value at element ${i} does not fit in i32`, at.name);
        }
        out[i] = lo;
      }
      return out;
    }
    case 'U64': {
      const w = new Uint32Array(b, o, numel * 2);
      const out = new Uint32Array(numel);
      for (let i = 0; i < numel; i++) {
        if (w[2 * i + 1] !== 0) {
          throw new FormatError(at.file, `U64 value at element ${i} does not fit in u32`, at.name);
        }
        out[i] = w[2 * i];
      }
      return out;
    }
    default:
      throw new FormatError(at.file, `dtype ${st} cannot be read by peftc (no host type for it)`, at.name);
  }
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** Little-endian bytes of `data` stored as `st` (one of the dtypes `stDTypeFor` returns). */
export function encodeTensorBytes(data: TensorData, st: StDType, at: Where): Uint8Array {
  switch (st) {
    case 'F32':
      return bytesOf(data instanceof Float32Array ? data : Float32Array.from(data));
    case 'F16':
      return bytesOf(encodeF16(data));
    case 'BF16':
      return bytesOf(encodeBf16(data));
    case 'I32':
      return bytesOf(data instanceof Int32Array ? data : Int32Array.from(data));
    case 'U32':
      return bytesOf(data instanceof Uint32Array ? data : Uint32Array.from(data));
    case 'U8':
      return data instanceof Uint8Array ? data : Uint8Array.from(data);
    default:
      throw new FormatError(at.file, `peftc does not write dtype ${st}`, at.name);
  }
}
