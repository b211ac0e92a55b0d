// The safetensors header: 8-byte little-endian length N, then N bytes of JSON
// `{"__metadata__": {str: str}, name: {dtype, shape, data_offsets: [begin, end]}, ...}`
// with offsets relative to the byte buffer that follows. Validation follows the
// reference (huggingface/safetensors `Metadata::validate`): offsets contiguous from 0,
// no gaps or overlaps, each span exactly dtype size x numel, and the buffer ends the file.
import { z } from 'zod';
import type { DType } from '../../ir/dtype.ts';
import { formatShape } from '../../ir/shape.ts';
import { FormatError } from '../errors.ts';
import { hostDTypeOf, isStDType, ST_DTYPES, type StDType, stByteSize } from './dtypes.ts';

/** The reference's limit; a larger header is almost surely a corrupt length field. */
export const MAX_HEADER_SIZE = 100_000_000;

export interface SafetensorsTensorInfo {
  readonly name: string;
  /** The dtype as stored in the file. */
  readonly fileDtype: StDType;
  /** The host dtype `read` returns, or undefined when peftc cannot read this dtype. */
  readonly dtype: DType | undefined;
  readonly shape: readonly number[];
  /** Absolute byte position of the tensor's data in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface SafetensorsHeader {
  readonly metadata: Record<string, string>;
  /** In file (offset) order. */
  readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>;
  /** Byte position where the data buffer starts (8 + header length). */
  readonly dataStart: number;
}

/** Reads the header length from the first 8 bytes and checks it against the file size. */
export function headerLength(file: string, first8: Uint8Array, fileSize: number): number {
  if (fileSize < 8) {
    throw new FormatError(
      file,
      `file is ${fileSize} bytes, too short for a safetensors header length (8 bytes)`,
    );
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw new FormatError(
      file,
      `header length ${n} exceeds the file size (${fileSize} bytes): not a safetensors file, or truncated`,
    );
  }
  if (n > BigInt(MAX_HEADER_SIZE)) {
    throw new FormatError(
      file,
      `header length ${n} exceeds the safetensors limit of ${MAX_HEADER_SIZE} bytes`,
    );
  }
  return Number(n);
}

const entrySchema = z.object({
  dtype: z.string(),
  shape: z.array(z.number().int().nonnegative()),
  data_offsets: z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative()]),
});

const metadataSchema = z.record(z.string(), z.string());

function zodProblem(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; ');
}

/** Parses and validates the JSON header bytes (`headerLen` of them) of a file of `fileSize` bytes. */
export function parseHeader(file: string, bytes: Uint8Array, fileSize: number): SafetensorsHeader {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(file, 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new FormatError(
      file,
      'header must be a JSON object of tensor name -> {dtype, shape, data_offsets}',
    );
  }
  let metadata: Record<string, string> = {};
  const raw: { name: string; st: StDType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, value] of Object.entries(json)) {
    if (name === '__metadata__') {
      const m = metadataSchema.safeParse(value);
      if (!m.success)
        throw new FormatError(file, `metadata must map strings to strings (${zodProblem(m.error)})`, name);
      metadata = m.data;
      continue;
    }
    const r = entrySchema.safeParse(value);
    if (!r.success) throw new FormatError(file, `bad header entry: ${zodProblem(r.error)}`, name);
    const { dtype, shape, data_offsets } = r.data;
    if (!isStDType(dtype)) {
      throw new FormatError(
        file,
        `unknown dtype '${dtype}' (safetensors dtypes: ${ST_DTYPES.join(', ')})`,
        name,
      );
    }
    raw.push({ name, st: dtype, shape, begin: data_offsets[0], end: data_offsets[1] });
  }
  const dataStart = 8 + bytes.length;
  const dataLen = fileSize - dataStart;
  raw.sort((a, b) => a.begin - b.begin || a.end - b.end);
  const tensors = new Map<string, SafetensorsTensorInfo>();
  let expected = 0;
  let prev: string | undefined;
  for (const t of raw) {
    const span = `data_offsets [${t.begin},${t.end}]`;
    if (t.end < t.begin) throw new FormatError(file, `${span} end before they begin`, t.name);
    const numel = t.shape.reduce((a, d) => a * d, 1);
    const size = Number.isSafeInteger(numel) ? stByteSize(t.st, numel) : undefined;
    if (size !== t.end - t.begin) {
      throw new FormatError(
        file,
        `dtype ${t.st} x shape ${formatShape(t.shape)} needs ${size ?? 'a non-whole number of'} bytes but ${span} span ${t.end - t.begin}`,
        t.name,
      );
    }
    if (t.end > dataLen) {
      throw new FormatError(
        file,
        `${span} run past the end of the data (${dataLen} bytes after the header): the file is truncated or the offsets are wrong`,
        t.name,
      );
    }
    if (t.begin < expected) {
      throw new FormatError(file, `${span} overlap tensor '${prev}' (which ends at ${expected})`, t.name);
    }
    if (t.begin > expected) {
      throw new FormatError(
        file,
        `${span} leave bytes ${expected}..${t.begin} that belong to no tensor`,
        t.name,
      );
    }
    expected = t.end;
    prev = t.name;
    tensors.set(t.name, {
      name: t.name,
      fileDtype: t.st,
      dtype: hostDTypeOf(t.st),
      shape: t.shape,
      offset: dataStart + t.begin,
      byteLength: t.end - t.begin,
    });
  }
  if (expected !== dataLen) {
    throw new FormatError(
      file,
      `${dataLen - expected} bytes after the last tensor belong to no tensor (the offsets do not cover the data)`,
    );
  }
  return { metadata, tensors, dataStart };
}
