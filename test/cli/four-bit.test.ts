// Issue 17 item 4: 4-bit bases all the way. `logits --merge` on a `peftc quantize` output
// gives what `peftc merge` then `peftc logits` gives; training a qlora recipe on an
// already-4-bit model says so and names the recipe entry to remove.
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runLogits } from '../../src/cli/commands/logits.ts';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { maxDiff, writeTinyModels } from './fixtures.ts';
import { cli } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-4bit-'));
const plain = join(dir, 'plain');
const bnb = join(dir, 'bnb');
const adapter = join(dir, 'adapter');
const tokens = join(dir, 'tokens.json');
const seqs = [
  [256, 1, 2, 3, 4, 5],
  [256, 70, 80],
];

function read(file: string): Float32Array[] {
  const f = SafetensorsFile.open(file);
  return seqs.map((_, i) => f.read(`logits.${i}`).data as Float32Array);
}

async function logits(name: string, model: string, extra: { adapter?: string[]; merge?: boolean } = {}) {
  const out = join(dir, `${name}.safetensors`);
  await runLogits({ model, tokens, out, backend: 'cpu', ...extra });
  return read(out);
}

describe('4-bit bases all the way', () => {
  beforeAll(() => {
    // B scaled up so that the adapter visibly changes the logits.
    writeTinyModels(
      { plain, bnb, adapter },
      7,
      { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj'] },
      bnb,
    );
    writeFileSync(tokens, JSON.stringify(seqs));
  });

  it('logits --merge on a quantize output equals merge then logits, and the unmerged 4-bit logits', async () => {
    const out = join(dir, 'merged-logits.safetensors');
    const r = await cli([
      'logits',
      '--model',
      bnb,
      '--adapter',
      adapter,
      '--merge',
      '--tokens',
      tokens,
      '--out',
      out,
      '--backend',
      'cpu',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^wrote .*merged-logits\.safetensors: 2 f32 tensor\(s\): logits\.0 \[6, 259\], logits\.1 \[3, 259\]/,
    );
    const merged = read(out);
    const m = await cli(['merge', '--model', bnb, '--adapter', adapter, '--out', join(dir, 'merged-model')]);
    expect(m.code, m.stderr).toBe(0);
    // Both dequantize each adapted weight and add s B A in f32 (the model's compute dtype is
    // float32, so `merge` stores the merged weights unrounded): the same weights, the same graph.
    expect(maxDiff(merged, await logits('from-merged-model', join(dir, 'merged-model')))).toBeLessThan(1e-5);
    // Unmerged, the 4-bit matmul and the branch run separately: (W + sBA)x vs Wx + sB(Ax)
    // differ only by f32 reassociation, ~1e-7 relative on logits of magnitude < 10.
    const unmerged = await logits('unmerged', bnb, { adapter: [adapter] });
    expect(maxDiff(merged, unmerged)).toBeLessThan(1e-4);
    expect(maxDiff(unmerged, await logits('base', bnb))).toBeGreaterThan(1e-2);
  });

  it('a qlora recipe on an already-4-bit --model names the model, its storage and the entry to remove', async () => {
    const out = join(dir, 'run');
    const r = await cli([
      'train',
      '--model',
      bnb,
      '--recipe',
      'examples/recipes/qlora-tiny.json',
      '--tokens',
      tokens,
      '--out',
      out,
      '--steps',
      '1',
      '--batch',
      '1',
      '--seq',
      '3',
      '--backend',
      'cpu',
    ]);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr.match(/peftc: error:/g)).toHaveLength(1);
    expect(r.stderr).toMatch(
      /--model .*bnb is already 4-bit \(bitsandbytes nf4, blocksize 64, double quant\); remove the qlora entry \(methods\[0\]\) from the recipe examples\/recipes\/qlora-tiny\.json/,
    );
    expect(r.stderr).not.toMatch(/^ {4}at |PEFTC_DEBUG|run qlora before/m);
    expect(existsSync(out)).toBe(false);
  });
});
