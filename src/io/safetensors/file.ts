// One safetensors file as a lazy weight store: opening reads only the header; each
// tensor is read on demand with a positioned read straight into its host array.
import * as fs from 'node:fs';
import type { Tensor } from '../../ir/tensor.ts';
import type { WeightStore } from '../../ir/weights.ts';
import { readExactly } from '../atomic.ts';
import { FormatError } from '../errors.ts';
import { decodeTensorBytes } from './codec.ts';
import { headerLength, parseHeader, type SafetensorsHeader, type SafetensorsTensorInfo } from './header.ts';

/** What a store over one or several safetensors files offers beyond `WeightStore`. */
export interface SafetensorsStore extends WeightStore {
  /** Tensor names in file order. */
  keys(): string[];
  /** dtype/shape/location without reading data; throws a FormatError naming the file when absent. */
  info(name: string): SafetensorsTensorInfo;
  /** Reads one tensor; throws a FormatError naming the file and tensor when absent or unreadable. */
  read(name: string): Tensor;
  /** The files this store reads. */
  readonly files: readonly string[];
}

function withFd<T>(file: string, f: (fd: number) => T): T {
  const fd = fs.openSync(file, 'r');
  try {
    return f(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export class SafetensorsFile implements SafetensorsStore {
  private constructor(
    readonly path: string,
    readonly header: SafetensorsHeader,
  ) {}

  /** Opens `file`, reading and validating its header only. */
  static open(file: string): SafetensorsFile {
    if (!fs.existsSync(file)) throw new FormatError(file, 'no such file');
    const header = withFd(file, (fd) => {
      const size = fs.fstatSync(fd).size;
      const first8 = new Uint8Array(8);
      if (size >= 8) readExactly(fd, first8, 0, file);
      const n = headerLength(file, first8, size);
      const bytes = new Uint8Array(n);
      readExactly(fd, bytes, 8, file);
      return parseHeader(file, bytes, size);
    });
    return new SafetensorsFile(file, header);
  }

  get files(): readonly string[] {
    return [this.path];
  }

  /** The `__metadata__` map (empty when the file has none). */
  get metadata(): Record<string, string> {
    return this.header.metadata;
  }

  keys(): string[] {
    return [...this.header.tensors.keys()];
  }

  info(name: string): SafetensorsTensorInfo {
    const i = this.header.tensors.get(name);
    if (!i)
      throw new FormatError(this.path, `no such tensor (the file has ${this.header.tensors.size})`, name);
    return i;
  }

  read(name: string): Tensor {
    const i = this.info(name);
    if (!i.dtype) throw new FormatError(this.path, `dtype ${i.fileDtype} cannot be read by peftc`, name);
    const bytes = new Uint8Array(i.byteLength);
    withFd(this.path, (fd) => {
      try {
        readExactly(fd, bytes, i.offset, this.path);
      } catch (e) {
        throw new FormatError(this.path, `reading data failed: ${(e as Error).message}`, name);
      }
    });
    const numel = i.shape.reduce((a, d) => a * d, 1);
    const data = decodeTensorBytes(bytes, i.fileDtype, numel, { file: this.path, name });
    return { dtype: i.dtype, shape: [...i.shape], data };
  }

  get(name: string): Tensor | undefined {
    return this.header.tensors.has(name) ? this.read(name) : undefined;
  }

  has(name: string): boolean {
    return this.header.tensors.has(name);
  }

  names(): Iterable<string> {
    return this.header.tensors.keys();
  }
}
