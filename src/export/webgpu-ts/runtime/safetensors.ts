// The little of safetensors the package needs: the raw bytes of each tensor of a file it
// wrote itself (weights: already in the device's layout), and writing f32 logits in the
// layout `peftc logits` writes (keys logits.0, logits.1, ..., each f32 [seq, vocab]).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';

export interface RawTensor {
  readonly dtype: string;
  readonly shape: readonly number[];
  readonly bytes: Uint8Array;
}

/** Every tensor of a safetensors file, as bytes (no copy: views into one read of the file). */
export function readSafetensors(file: string): Map<string, RawTensor> {
  const buf = readFileSync(file);
  if (buf.byteLength < 8) throw new Error(`${file}: not a safetensors file (${buf.byteLength} bytes)`);
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.byteLength)
    throw new Error(`${file}: its header length ${n} runs past the end of the file`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const out = new Map<string, RawTensor>();
  for (const [key, t] of Object.entries(header)) {
    if (key === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    if (8 + n + b > buf.byteLength) throw new Error(`${file}: tensor '${key}' runs past the end of the file`);
    out.set(key, { dtype: t.dtype, shape: t.shape, bytes: buf.subarray(8 + n + a, 8 + n + b) });
  }
  return out;
}

/** Writes f32 tensors (name -> [shape, data]) to `file`, through a temp file renamed at the end. */
export function writeF32Safetensors(
  file: string,
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const [name, t] of tensors) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // data starts 8-byte aligned
  const head = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + head.byteLength + offset);
  out.writeBigUInt64LE(BigInt(head.byteLength), 0);
  head.copy(out, 8);
  let at = 8 + head.byteLength;
  for (const t of tensors.values()) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, out);
  renameSync(tmp, file);
}
