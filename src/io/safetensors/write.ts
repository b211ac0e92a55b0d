// Writing safetensors exactly as the reference serializer does: tensors sorted by
// descending dtype (enum order, i.e. alignment) then name, `__metadata__` first, the
// JSON header padded with spaces to a multiple of 8 bytes. Written to a temp name and
// renamed, so a failure never leaves a partial file under the target name.
import type { DType } from '../../ir/dtype.ts';
import { formatShape, numel } from '../../ir/shape.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { writeAll, writeFileAtomic } from '../atomic.ts';
import { FormatError } from '../errors.ts';
import { encodeTensorBytes } from './codec.ts';
import { type StDType, stByteSize, stDTypeFor, stDTypeRank } from './dtypes.ts';

export interface WriteSafetensorsOptions {
  /** Storage dtype for floating-point tensors (f32, f16 or bf16); others keep their own. Default: each tensor's dtype. */
  dtype?: 'f32' | 'f16' | 'bf16';
}

export type TensorEntries = Map<string, Tensor> | Record<string, Tensor>;

interface Planned {
  name: string;
  st: StDType;
  shape: readonly number[];
  begin: number;
  end: number;
  tensor: Tensor;
}

const utf8 = new TextEncoder();

function byteOrder(a: string, b: string): number {
  // The reference sorts Rust strings, i.e. by UTF-8 bytes (differs from JS's UTF-16 order).
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function storageDType(file: string, name: string, t: Tensor, opts: WriteSafetensorsOptions): StDType {
  const isFloat = t.dtype === 'f32' || t.dtype === 'f16' || t.dtype === 'bf16';
  const d: DType = isFloat && opts.dtype ? opts.dtype : t.dtype;
  const st = stDTypeFor(d);
  if (!st) {
    throw new FormatError(file, `cannot store dtype ${d} in safetensors (pack u4 into u8 yourself)`, name);
  }
  return st;
}

/** Lays out tensors (dtype and shape only: data is not touched until written). */
function plan(file: string, entries: [string, Tensor][], opts: WriteSafetensorsOptions): Planned[] {
  const rows = entries.map(([name, tensor]) => ({
    name,
    tensor,
    st: storageDType(file, name, tensor, opts),
  }));
  rows.sort((a, b) => stDTypeRank(b.st) - stDTypeRank(a.st) || byteOrder(a.name, b.name));
  let offset = 0;
  return rows.map((r) => {
    const n = stByteSize(r.st, numel(r.tensor.shape)) as number;
    const p = { ...r, shape: r.tensor.shape, begin: offset, end: offset + n };
    offset += n;
    return p;
  });
}

/** The exact header bytes the reference writes: compact JSON, space-padded to a multiple of 8. */
export function headerBytes(
  tensors: readonly { name: string; st: StDType; shape: readonly number[]; begin: number; end: number }[],
  metadata?: Record<string, string>,
): Uint8Array {
  // Built by hand: a JS object would reorder integer-like keys ("0", "1") ahead of the rest.
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    const m = Object.keys(metadata)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${JSON.stringify(metadata[k])}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  for (const t of tensors) {
    parts.push(
      `${JSON.stringify(t.name)}:{"dtype":"${t.st}","shape":[${t.shape.join(',')}],"data_offsets":[${t.begin},${t.end}]}`,
    );
  }
  const json = utf8.encode(`{${parts.join(',')}}`);
  const padded = new Uint8Array(Math.ceil(json.length / 8) * 8).fill(0x20);
  padded.set(json);
  return padded;
}

/** Writes `tensors` to `file` (atomically) in the safetensors format. */
export function writeSafetensors(
  file: string,
  tensors: TensorEntries,
  metadata?: Record<string, string>,
  opts: WriteSafetensorsOptions = {},
): void {
  const entries = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  if (entries.some(([n]) => n === '__metadata__')) {
    throw new FormatError(
      file,
      'a tensor may not be named __metadata__ (reserved by the format)',
      '__metadata__',
    );
  }
  const planned = plan(file, entries, opts);
  const header = headerBytes(planned, metadata);
  const bytes = 8 + header.length + (planned.length ? planned[planned.length - 1].end : 0);
  writeFileAtomic(
    file,
    (fd) => {
      const len = new Uint8Array(8);
      new DataView(len.buffer).setBigUint64(0, BigInt(header.length), true);
      writeAll(fd, len);
      writeAll(fd, header);
      for (const p of planned) {
        const n = numel(p.shape);
        const { data } = p.tensor;
        if (data.length !== n) {
          throw new FormatError(
            file,
            `shape ${formatShape(p.shape)} needs ${n} elements, data has ${data.length}`,
            p.name,
          );
        }
        writeAll(fd, encodeTensorBytes(data, p.st, { file, name: p.name }));
      }
    },
    { bytes },
  );
}
