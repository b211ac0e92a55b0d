// Issue 5 `peftc logits --adapter <dir>...` (repeated) and issue 7 "`--model` everywhere
// accepts [bitsandbytes 4-bit] checkpoints", through the real command:
//  - two adapters stack: the second changes the logits, and --merge of both gives the
//    logits of both applied unmerged;
//  - `peftc quantize` output trains with `peftc train --model`, and the adapter it
//    writes runs with `peftc logits --model` on that 4-bit base.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { cli } from '../cli/run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-audit-cli-'));
const model = join(dir, 'model');
const tokens = join(dir, 'tokens.json');
const seqs = [
  [256, 1, 2, 3, 4, 5, 6],
  [256, 70, 80],
];

async function run(args: string[]) {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`peftc ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r;
}

async function logits(name: string, args: string[]): Promise<Float32Array[]> {
  const out = join(dir, `${name}.safetensors`);
  await run(['logits', ...args, '--tokens', tokens, '--out', out, '--backend', 'cpu']);
  const f = SafetensorsFile.open(out);
  return seqs.map((s, i) => {
    const t = f.read(`logits.${i}`);
    expect(f.info(`logits.${i}`).fileDtype).toBe('F32');
    expect(t.shape).toEqual([s.length, 259]);
    return t.data as Float32Array;
  });
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, k) => {
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - b[k][i]));
  });
  return m;
}

function adapter(name: string, targets: string[], seed: number): string {
  const c = presetConfig('tiny');
  const g = buildLlama(c, { batch: 1, seq: 4 });
  const o = loraOptions.parse({ r: 4, lora_alpha: 8, target_modules: targets, init_lora_weights: false });
  const inj = injectLora(g, o, randomLlamaWeights(c, 11));
  const w = bindParams(inj.graph, inj.weights!, seed);
  for (const n of w.names()) if (n.includes('lora_B')) w.get(n)!.data.forEach((_, i, a) => void (a[i] *= 20));
  const out = join(dir, name);
  savePeftAdapter(out, inj.graph, (n) => w.get(n)!, o, model);
  return out;
}

describe('CLI contracts (audit, issues 5 and 7)', () => {
  beforeAll(async () => {
    const c = presetConfig('tiny');
    saveModelDir(model, c, randomLlamaWeights(c, 11));
    writeFileSync(tokens, JSON.stringify(seqs));
  });

  it('logits with two --adapter: both apply, and --merge equals them unmerged', async () => {
    const a = adapter('a', ['q_proj', 'v_proj'], 3);
    const b = adapter('b', ['v_proj', 'down_proj'], 5);
    const one = await logits('one', ['--model', model, '--adapter', a]);
    const two = await logits('two', ['--model', model, '--adapter', a, '--adapter', b]);
    const merged = await logits('two-merged', ['--model', model, '--adapter', a, '--adapter', b, '--merge']);
    expect(maxDiff(one, two)).toBeGreaterThan(1e-2);
    expect(maxDiff(two, merged)).toBeLessThan(1e-4);
    // merge with both writes a model that gives the same logits.
    const mdir = join(dir, 'merged-model');
    await run(['merge', '--model', model, '--adapter', a, '--adapter', b, '--out', mdir]);
    expect(maxDiff(two, await logits('from-merged', ['--model', mdir]))).toBeLessThan(1e-4);
  });

  it('a peftc quantize checkpoint trains with peftc train --model and serves peftc logits', async () => {
    const q = join(dir, 'q');
    await run(['quantize', '--model', model, '--out', q, '--double-quant']);
    const data = join(dir, 'train-tokens.json');
    writeFileSync(
      data,
      JSON.stringify(
        Array.from({ length: 12 }, (_, i) => Array.from({ length: 40 }, (_, j) => (i * 31 + j * 7) % 256)),
      ),
    );
    const out = join(dir, 'run');
    const r = await run([
      'train',
      '--model',
      q,
      '--recipe',
      'examples/recipes/lora.json',
      '--tokens',
      data,
      '--out',
      out,
      '--steps',
      '2',
      '--batch',
      '2',
      '--seq',
      '16',
      '--backend',
      'cpu',
      '--no-plot',
    ]);
    expect(r.stdout).toMatch(/trained 2 steps/);
    const base = await logits('q-base', ['--model', q]);
    const tuned = await logits('q-tuned', ['--model', q, '--adapter', out]);
    // lora.json's B starts at 0: after 2 AdamW steps the adapter is small but not zero.
    expect(maxDiff(base, tuned)).toBeGreaterThan(0);
    expect(maxDiff(base, tuned)).toBeLessThan(1);
  });
});
