// `peftc merge` on a bitsandbytes 4-bit base with an adapter that also targets a weight the
// checkpoint keeps in full precision (lm_head: bnb quantizes only the decoder's linears).
// That branch merges as plain LoRA, W + s B A, in both --merge-into modes; none is dropped.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeToDir } from '../../src/cli/commands/merge.ts';
import { openCheckpoint } from '../../src/io/safetensors/index.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { writeRandomAdapter } from './fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-qmerge-plain-'));
const plain = join(dir, 'plain');
const bnb = join(dir, 'bnb');
const adapter = join(dir, 'adapter');
const HEAD = 'lm_head.weight';
let expected: Float32Array;

describe('peftc merge on a 4-bit base: adapters on full-precision weights', () => {
  beforeAll(() => {
    const c = presetConfig('tiny');
    const base = randomLlamaWeights(c, 5);
    saveModelDir(plain, c, base);
    quantizeCheckpoint(plain, bnb, { quantType: 'nf4', doubleQuant: true });
    const { weights: w } = writeRandomAdapter(
      adapter,
      buildLlama(c, { batch: 1, seq: 4 }),
      base,
      { r: 2, lora_alpha: 8, target_modules: ['q_proj', 'lm_head'], scaleB: 1 },
      bnb,
    );
    // W + s B A for the head, from the adapter's own tensors (s = alpha / r = 4).
    const W = openCheckpoint(bnb).read(HEAD);
    const A = w.get('lm_head.lora_A.default.weight')!;
    const B = w.get('lm_head.lora_B.default.weight')!;
    const [out, inn] = W.shape;
    expected = new Float32Array(out * inn);
    for (let i = 0; i < out; i++)
      for (let j = 0; j < inn; j++) {
        let d = 0;
        for (let k = 0; k < 2; k++) d += B.data[i * 2 + k] * A.data[k * inn + j];
        expected[i * inn + j] = W.data[i * inn + j] + 4 * d;
      }
  });

  for (const into of ['float', '4bit'] as const) {
    it(`--merge-into ${into} merges the lm_head branch as plain LoRA`, () => {
      const out = join(dir, `merged-${into}`);
      const r = mergeToDir({ model: bnb, adapter: [adapter], out, mergeInto: into });
      expect(r.changed).toContain(HEAD);
      expect(r.changed.some((n) => n.includes('q_proj'))).toBe(true);
      const head = openCheckpoint(out).read(HEAD).data;
      let maxDiff = 0;
      for (let i = 0; i < expected.length; i++) maxDiff = Math.max(maxDiff, Math.abs(head[i] - expected[i]));
      expect(maxDiff).toBeLessThan(1e-5);
    });
  }
});
