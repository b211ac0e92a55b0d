// Each kind of broken file gives a FormatError that names the file and, where one is
// to blame, the tensor.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FormatError } from '../../../src/io/errors.ts';
import { SafetensorsFile, writeSafetensors } from '../../../src/io/safetensors/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

function rawFile(header: string | object, dataBytes: number, lengthField?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthField ?? BigInt(json.length));
  const file = path.join(tmp(), 'bad.safetensors');
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return file;
}

function openError(file: string): FormatError {
  try {
    SafetensorsFile.open(file);
  } catch (e) {
    expect(e).toBeInstanceOf(FormatError);
    expect((e as Error).message).toContain(file);
    return e as FormatError;
  }
  throw new Error('expected SafetensorsFile.open to fail');
}

const f32 = (shape: number[], begin: number, end: number) => ({
  dtype: 'F32',
  shape,
  data_offsets: [begin, end],
});

describe('malformed safetensors', () => {
  it('a truncated file names the tensor whose data is cut off', () => {
    const good = path.join(tmp(), 'g.safetensors');
    writeSafetensors(good, { a: tensor('f32', [4]), b: tensor('f32', [4]) });
    const bytes = fs.readFileSync(good);
    const cut = path.join(path.dirname(good), 'cut.safetensors');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 3));
    const e = openError(cut);
    expect(e.message).toMatch(/'b': data_offsets \[16,32\] run past the end .*truncated/);
  });

  it('a file shorter than the 8-byte length field', () => {
    const file = path.join(tmp(), 'tiny.safetensors');
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    expect(openError(file).message).toMatch(/3 bytes, too short/);
  });

  it('a huge header length', () => {
    const file = rawFile('{}', 0, 0xffffffffffffn);
    expect(openError(file).message).toMatch(/header length 281474976710655 exceeds the file size/);
  });

  it('bad header JSON', () => {
    expect(openError(rawFile('{"a": {"dtype": "F32",', 0)).message).toMatch(/header is not valid JSON/);
    expect(openError(rawFile('[1,2]', 0)).message).toMatch(/header must be a JSON object/);
    expect(openError(rawFile(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1'), 0)).message).toMatch(
      /not valid JSON|UTF-8/,
    );
  });

  it('a malformed entry names the tensor and the field', () => {
    const e = openError(rawFile({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4));
    expect(e.message).toMatch(/'w': bad header entry: shape\.0/);
    expect(e.key).toBe('w');
    expect(openError(rawFile({ w: { dtype: 'F32', shape: [1] } }, 4)).message).toMatch(/'w': .*data_offsets/);
    expect(openError(rawFile({ __metadata__: { a: 1 } }, 0)).message).toMatch(
      /'__metadata__': metadata must map/,
    );
  });

  it('an unknown dtype', () => {
    const e = openError(rawFile({ w: { dtype: 'F128', shape: [1], data_offsets: [0, 16] } }, 16));
    expect(e.message).toMatch(/'w': unknown dtype 'F128'/);
  });

  it('offsets out of range', () => {
    const e = openError(rawFile({ a: f32([1], 0, 4), w: f32([2], 4, 12) }, 8));
    expect(e.message).toMatch(/'w': data_offsets \[4,12\] run past the end of the data \(8 bytes/);
  });

  it('overlapping tensors name both', () => {
    const e = openError(rawFile({ a: f32([2], 0, 8), b: f32([2], 4, 12) }, 12));
    expect(e.message).toMatch(/'b': data_offsets \[4,12\] overlap tensor 'a'/);
  });

  it('gaps and uncovered trailing bytes', () => {
    expect(openError(rawFile({ a: f32([1], 4, 8) }, 8)).message).toMatch(/'a': .*bytes 0\.\.4 .* no tensor/);
    expect(openError(rawFile({ a: f32([1], 0, 4) }, 9)).message).toMatch(/5 bytes after the last tensor/);
  });

  it('dtype size x shape disagreeing with the byte length', () => {
    const e = openError(rawFile({ w: f32([3], 0, 8) }, 8));
    expect(e.message).toMatch(/'w': dtype F32 x shape \[3\] needs 12 bytes but data_offsets \[0,8\] span 8/);
  });

  it('narrowing I64 that does not fit in i32 fails on read, naming the tensor', () => {
    const file = rawFile({ ok: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16);
    const st = SafetensorsFile.open(file);
    expect(Array.from(st.read('ok').data)).toEqual([0, 0]);
    // Patch a high word to 1: the value 2^32 does not fit.
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 4] = 1;
    fs.writeFileSync(file, bytes);
    expect(() => SafetensorsFile.open(file).read('ok')).toThrow(
      /'ok': I64 value at element 1 does not fit in i32/,
    );
  });

  it('a dtype peftc cannot hold is listed but not read', () => {
    const st = SafetensorsFile.open(
      rawFile({ q: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, 2),
    );
    expect(st.info('q')).toMatchObject({ fileDtype: 'F8_E4M3', dtype: undefined });
    expect(() => st.read('q')).toThrow(/'q': dtype F8_E4M3 cannot be read/);
  });

  it('a missing file', () => {
    expect(() => SafetensorsFile.open(path.join(tmp(), 'nope.safetensors'))).toThrow(
      /nope\.safetensors: no such file/,
    );
  });
});
