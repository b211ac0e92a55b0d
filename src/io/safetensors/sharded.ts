// Sharded checkpoints (`model.safetensors.index.json`: {"metadata": {...},
// "weight_map": {tensor: shard file}}) seen as one store, and finding a checkpoint in
// an HF model directory.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import type { Tensor } from '../../ir/tensor.ts';
import { FormatError } from '../errors.ts';
import { SafetensorsFile, type SafetensorsStore } from './file.ts';
import type { SafetensorsTensorInfo } from './header.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

const indexSchema = z.looseObject({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string()),
});

export class ShardedSafetensors implements SafetensorsStore {
  private constructor(
    readonly indexPath: string,
    readonly metadata: Record<string, unknown>,
    private readonly owner: ReadonlyMap<string, SafetensorsFile>,
    readonly files: readonly string[],
  ) {}

  /** Opens the index and every shard's header; checks each tensor named in the index is in its shard. */
  static open(indexPath: string): ShardedSafetensors {
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(indexPath, 'utf8'));
    } catch (e) {
      throw new FormatError(indexPath, `cannot read the shard index: ${(e as Error).message}`);
    }
    const r = indexSchema.safeParse(json);
    if (!r.success) {
      const msg = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new FormatError(indexPath, `not a safetensors shard index (${msg})`);
    }
    const dir = path.dirname(indexPath);
    const shards = new Map<string, SafetensorsFile>();
    const owner = new Map<string, SafetensorsFile>();
    for (const [name, shard] of Object.entries(r.data.weight_map)) {
      if (path.isAbsolute(shard) || shard.split(/[\\/]/).includes('..')) {
        throw new FormatError(indexPath, `shard path '${shard}' must be a file name inside ${dir}`, name);
      }
      let f = shards.get(shard);
      if (!f) {
        const file = path.join(dir, shard);
        if (!fs.existsSync(file))
          throw new FormatError(indexPath, `shard '${shard}' is missing (${file})`, name);
        f = SafetensorsFile.open(file);
        shards.set(shard, f);
      }
      if (!f.has(name))
        throw new FormatError(f.path, `tensor listed in ${indexPath} is not in this shard`, name);
      owner.set(name, f);
    }
    return new ShardedSafetensors(
      indexPath,
      r.data.metadata ?? {},
      owner,
      [...shards.values()].map((s) => s.path),
    );
  }

  private shard(name: string): SafetensorsFile {
    const f = this.owner.get(name);
    if (!f) throw new FormatError(this.indexPath, 'no such tensor in the weight_map', name);
    return f;
  }

  keys(): string[] {
    return [...this.owner.keys()];
  }
  info(name: string): SafetensorsTensorInfo {
    return this.shard(name).info(name);
  }
  read(name: string): Tensor {
    return this.shard(name).read(name);
  }
  get(name: string): Tensor | undefined {
    return this.owner.has(name) ? this.read(name) : undefined;
  }
  has(name: string): boolean {
    return this.owner.has(name);
  }
  names(): Iterable<string> {
    return this.owner.keys();
  }
}

/** The weights of an HF model directory: `model.safetensors`, else the shard index. */
export function openCheckpoint(dir: string): SafetensorsStore {
  const single = path.join(dir, SINGLE_FILE);
  if (fs.existsSync(single)) return SafetensorsFile.open(single);
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(index)) return ShardedSafetensors.open(index);
  if (!fs.existsSync(dir)) throw new FormatError(dir, 'model directory does not exist');
  const present = fs.readdirSync(dir).filter((f) => /\.(safetensors|bin|pt|pth|gguf)$/.test(f));
  const hint = present.some((f) => /\.(bin|pt|pth)$/.test(f))
    ? ' PyTorch pickle weights are not read (unsafe); re-save with save_pretrained(..., safe_serialization=True).'
    : '';
  throw new FormatError(
    dir,
    `no ${SINGLE_FILE} or ${INDEX_FILE} found${present.length ? ` (found: ${present.join(', ')})` : ''}.${hint}`,
  );
}
