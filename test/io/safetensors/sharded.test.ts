import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  INDEX_FILE,
  openCheckpoint,
  SafetensorsFile,
  ShardedSafetensors,
  writeSafetensors,
} from '../../../src/io/safetensors/index.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { useTmpDirs } from '../tmp.ts';

const tmp = useTmpDirs();

function shardedDir(weightMap?: Record<string, string>): string {
  const dir = tmp();
  writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), {
    'model.embed_tokens.weight': tensor('f32', [2, 2], [1, 2, 3, 4]),
  });
  writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), {
    'lm_head.weight': tensor('bf16', [2, 2], [5, 6, 7, 8]),
    'model.norm.weight': tensor('f32', [2], [1, 1]),
  });
  const index = {
    metadata: { total_size: 40 },
    weight_map: weightMap ?? {
      'model.embed_tokens.weight': 'model-00001-of-00002.safetensors',
      'lm_head.weight': 'model-00002-of-00002.safetensors',
      'model.norm.weight': 'model-00002-of-00002.safetensors',
    },
  };
  fs.writeFileSync(path.join(dir, INDEX_FILE), JSON.stringify(index));
  return dir;
}

describe('sharded checkpoints', () => {
  it('one store over all shards', () => {
    const dir = shardedDir();
    const st = openCheckpoint(dir);
    expect(st).toBeInstanceOf(ShardedSafetensors);
    expect(new Set(st.names())).toEqual(
      new Set(['model.embed_tokens.weight', 'lm_head.weight', 'model.norm.weight']),
    );
    expect(st.files.map((f) => path.basename(f)).sort()).toEqual([
      'model-00001-of-00002.safetensors',
      'model-00002-of-00002.safetensors',
    ]);
    expect(st.info('lm_head.weight')).toMatchObject({ fileDtype: 'BF16', dtype: 'bf16', shape: [2, 2] });
    expect(Array.from(st.read('lm_head.weight').data)).toEqual([5, 6, 7, 8]);
    expect(Array.from(st.get('model.embed_tokens.weight')!.data)).toEqual([1, 2, 3, 4]);
    expect(st.get('missing')).toBeUndefined();
    expect(() => st.read('missing')).toThrow(/index\.json: 'missing': no such tensor/);
  });

  it('prefers model.safetensors when present', () => {
    const dir = shardedDir();
    writeSafetensors(path.join(dir, 'model.safetensors'), { x: tensor('f32', [1], [9]) });
    expect(openCheckpoint(dir)).toBeInstanceOf(SafetensorsFile);
  });

  it('a missing shard or a tensor not in its shard is named', () => {
    const missing = shardedDir({ 'a.weight': 'model-00003-of-00002.safetensors' });
    expect(() => openCheckpoint(missing)).toThrow(
      /index\.json: 'a\.weight': shard 'model-00003-of-00002\.safetensors' is missing/,
    );
    const wrong = shardedDir({ 'lm_head.weight': 'model-00001-of-00002.safetensors' });
    expect(() => openCheckpoint(wrong)).toThrow(
      /model-00001-of-00002\.safetensors: 'lm_head\.weight': tensor listed in .* is not in this shard/,
    );
  });

  it('a bad index and an empty directory give clear errors', () => {
    const dir = tmp();
    fs.writeFileSync(path.join(dir, INDEX_FILE), '{"weight_map": {"a": 3}}');
    expect(() => openCheckpoint(dir)).toThrow(/not a safetensors shard index \(weight_map\.a:/);
    const empty = tmp();
    fs.writeFileSync(path.join(empty, 'pytorch_model.bin'), '');
    expect(() => openCheckpoint(empty)).toThrow(
      /no model\.safetensors or .*found \(found: pytorch_model\.bin\).*pickle/,
    );
  });
});
