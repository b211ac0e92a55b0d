// Writes a GGUF v3 file (ggml/docs/gguf.md): "GGUF", version 3, tensor count, metadata
// count (u64s), the metadata key/values, the tensor infos (name, dims innermost first,
// ggml type, offset into the data section), padding to the alignment, then each tensor's
// data at an aligned offset. Little-endian throughout. Tensors are encoded one at a time
// while writing, so the file never sits in memory whole; the write is atomic (temp + rename).
import { writeAll, writeFileAtomic } from '../atomic.ts';
import { encode, encodedBytes } from './quant.ts';
import {
  GGML_TYPE,
  GGUF_ALIGNMENT,
  GGUF_VALUE,
  type GgmlType,
  type GgufScalarType,
  type GgufValue,
  Q8_0_BLOCK,
} from './types.ts';

export interface GgufTensor {
  readonly name: string;
  /** ggml order: innermost (contiguous) dim first, i.e. a row-major [out, in] is [in, out]. */
  readonly dims: readonly number[];
  readonly type: GgmlType;
  /** Values in memory order (row-major over the reversed dims); read when it is written. */
  readonly data: () => ArrayLike<number>;
}

export interface GgufFile {
  /** Written in this order; `general.alignment` is added when absent. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensor[];
}

type Setter = (view: DataView, at: number, v: number | bigint | string | boolean) => void;

/** Bytes and little-endian writer of each fixed-size metadata type. */
const SCALARS: Record<Exclude<GgufScalarType, 'string'>, [number, Setter]> = {
  u8: [1, (d, at, v) => d.setUint8(at, Number(v))],
  i8: [1, (d, at, v) => d.setInt8(at, Number(v))],
  u16: [2, (d, at, v) => d.setUint16(at, Number(v), true)],
  i16: [2, (d, at, v) => d.setInt16(at, Number(v), true)],
  u32: [4, (d, at, v) => d.setUint32(at, Number(v), true)],
  i32: [4, (d, at, v) => d.setInt32(at, Number(v), true)],
  f32: [4, (d, at, v) => d.setFloat32(at, Number(v), true)],
  bool: [1, (d, at, v) => d.setUint8(at, v ? 1 : 0)],
  u64: [8, (d, at, v) => d.setBigUint64(at, BigInt(v as number | bigint), true)],
  i64: [8, (d, at, v) => d.setBigInt64(at, BigInt(v as number | bigint), true)],
  f64: [8, (d, at, v) => d.setFloat64(at, Number(v), true)],
};

/** Grows a byte buffer with the little-endian encodings GGUF uses. */
class ByteSink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  bytes(b: Uint8Array): void {
    this.buf.set(b, this.reserve(b.length));
  }
  scalar(type: GgufScalarType, v: number | bigint | string | boolean): void {
    if (type === 'string') {
      const b = new TextEncoder().encode(String(v));
      this.scalar('u64', BigInt(b.length));
      this.bytes(b);
      return;
    }
    const [size, set] = SCALARS[type];
    set(this.view, this.reserve(size), v);
  }
  value(v: GgufValue): void {
    this.scalar('u32', GGUF_VALUE[v.type]);
    if (v.type !== 'array') {
      this.scalar(v.type, v.value);
      return;
    }
    this.scalar('u32', GGUF_VALUE[v.itemType]);
    this.scalar('u64', BigInt(v.values.length));
    for (const x of v.values) this.scalar(v.itemType, x);
  }
  pad(alignment: number): void {
    this.reserve((alignment - (this.length % alignment)) % alignment);
  }
  take(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** Checks a tensor against what llama.cpp's loader accepts; the bytes it takes. */
function tensorBytes(t: GgufTensor): number {
  if (t.dims.length < 1 || t.dims.length > 4 || t.dims.some((d) => !Number.isInteger(d) || d < 1))
    throw new Error(`GGUF tensor ${t.name}: bad dims [${t.dims.join(', ')}]`);
  if (t.type === 'q8_0' && t.dims[0] % Q8_0_BLOCK !== 0)
    throw new Error(
      `GGUF tensor ${t.name}: q8_0 rows must hold a multiple of ${Q8_0_BLOCK} values, not ${t.dims[0]}`,
    );
  return encodedBytes(
    t.type,
    t.dims.reduce((a, b) => a * b, 1),
  );
}

/** Writes `f` to `target` (atomically); returns the file's size in bytes. */
export function writeGguf(
  target: string,
  f: GgufFile,
  o: { onTensor?: (done: number, name: string) => void } = {},
): number {
  const metadata = new Map(f.metadata);
  if (!metadata.has('general.alignment'))
    metadata.set('general.alignment', { type: 'u32', value: GGUF_ALIGNMENT });
  const alignEntry = metadata.get('general.alignment')!;
  const alignment = Number(alignEntry.type === 'u32' ? alignEntry.value : GGUF_ALIGNMENT);
  const names = new Set<string>();
  const head = new ByteSink();
  head.bytes(new TextEncoder().encode('GGUF'));
  head.scalar('u32', 3);
  head.scalar('u64', BigInt(f.tensors.length));
  head.scalar('u64', BigInt(metadata.size));
  for (const [key, v] of metadata) {
    head.scalar('string', key);
    head.value(v);
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of f.tensors) {
    if (names.has(t.name)) throw new Error(`GGUF tensor ${t.name} written twice`);
    names.add(t.name);
    const bytes = tensorBytes(t);
    head.scalar('string', t.name);
    head.scalar('u32', t.dims.length);
    for (const d of t.dims) head.scalar('u64', BigInt(d));
    head.scalar('u32', GGML_TYPE[t.type]);
    head.scalar('u64', BigInt(offset));
    sizes.push(bytes);
    offset = align(offset + bytes, alignment);
  }
  head.pad(alignment);
  const header = head.take();
  const total = header.length + offset;
  writeFileAtomic(
    target,
    (fd) => {
      writeAll(fd, header);
      f.tensors.forEach((t, i) => {
        const data = t.data();
        const n = t.dims.reduce((a, b) => a * b, 1);
        if (data.length !== n)
          throw new Error(`GGUF tensor ${t.name}: ${data.length} values for dims [${t.dims.join(', ')}]`);
        const bytes = encode(t.type, data);
        writeAll(fd, bytes);
        const pad = align(sizes[i], alignment) - sizes[i];
        if (pad) writeAll(fd, new Uint8Array(pad));
        o.onTensor?.(i + 1, t.name);
      });
    },
    { bytes: total },
  );
  return total;
}
