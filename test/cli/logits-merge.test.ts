// `peftc logits` and `peftc merge` end to end on a small HF-format model and a PEFT adapter
// (in-process through runCli; the WebGPU case as the real command, which must exit).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { maxDiff, writeRandomAdapter } from './fixtures.ts';
import { type CliResult, cli, peftc } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-cli-'));
const model = join(dir, 'model');
const adapter = join(dir, 'adapter');
const tokens = join(dir, 'tokens.json');
const seqs = [
  [256, 1, 2, 3, 4, 5, 6],
  [256, 70, 80],
];

function logitsOf(file: string): Float32Array[] {
  const f = SafetensorsFile.open(file);
  return seqs.map((s, i) => {
    const t = f.read(`logits.${i}`);
    expect(t.shape).toEqual([s.length, 259]);
    return t.data as Float32Array;
  });
}

/** In-process by default; `spawn` runs the real command (a process that must exit once done). */
async function run(args: string[], spawn = false): Promise<CliResult> {
  const r = spawn ? peftc(args) : await cli(args);
  if (r.code !== 0) throw new Error(`peftc ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r;
}

describe('peftc logits / merge', () => {
  beforeAll(() => {
    const c = { ...presetConfig('tiny'), torchDtype: 'bfloat16' as const };
    const base = randomLlamaWeights(c, 11);
    saveModelDir(model, c, base);
    const g = buildLlama(c, { batch: 1, seq: 4 });
    // B scaled up so that the adapter visibly changes the logits.
    writeRandomAdapter(
      adapter,
      g,
      base,
      { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'up_proj'] },
      model,
    );
    writeFileSync(tokens, JSON.stringify(seqs));
  });

  it('--merge gives the logits of the unmerged adapter; merge writes a model that gives them too', async () => {
    const out = (n: string) => join(dir, `${n}.safetensors`);
    await run(['logits', '--model', model, '--tokens', tokens, '--out', out('base'), '--backend', 'cpu']);
    await run([
      'logits',
      '--model',
      model,
      '--adapter',
      adapter,
      '--tokens',
      tokens,
      '--out',
      out('lora'),
      '--backend',
      'cpu',
    ]);
    await run([
      'logits',
      '--model',
      model,
      '--adapter',
      adapter,
      '--merge',
      '--tokens',
      tokens,
      '--out',
      out('merged'),
      '--backend',
      'cpu',
    ]);
    const base = logitsOf(out('base'));
    const lora = logitsOf(out('lora'));
    expect(maxDiff(base, lora)).toBeGreaterThan(1e-2);
    // Merging in f32 reassociates s*B*A into W: agreement to f32 rounding.
    expect(maxDiff(lora, logitsOf(out('merged')))).toBeLessThan(1e-4);

    const merged = join(dir, 'merged-model');
    const m = await run(['merge', '--model', model, '--adapter', adapter, '--out', merged]);
    expect(m.stdout).toMatch(/merged 6 weight\(s\)/);
    const cfg = JSON.parse(readFileSync(join(merged, 'config.json'), 'utf8'));
    expect(cfg.torch_dtype).toBe('bfloat16');
    expect(
      SafetensorsFile.open(join(merged, 'model.safetensors')).info('model.layers.0.self_attn.q_proj.weight')
        .fileDtype,
    ).toBe('BF16');
    await run([
      'logits',
      '--model',
      merged,
      '--tokens',
      tokens,
      '--out',
      out('from-merged'),
      '--backend',
      'cpu',
    ]);
    // The merged weights are stored in bf16 like the base: bf16 rounding of W + sBA.
    expect(maxDiff(lora, logitsOf(out('from-merged')))).toBeLessThan(5e-2);
  });

  it('webgpu logits equal cpu logits (the real command: it exits after disposing the device)', async () => {
    const out = (n: string) => join(dir, `${n}.safetensors`);
    await run([
      'logits',
      '--model',
      model,
      '--adapter',
      adapter,
      '--tokens',
      tokens,
      '--out',
      out('cpu'),
      '--backend',
      'cpu',
    ]);
    await run(
      [
        'logits',
        '--model',
        model,
        '--adapter',
        adapter,
        '--tokens',
        tokens,
        '--out',
        out('gpu'),
        '--backend',
        'webgpu',
      ],
      true,
    );
    expect(maxDiff(logitsOf(out('cpu')), logitsOf(out('gpu')))).toBeLessThan(1e-3);
  });

  it('bad tokens and bad paths fail with a clear message and exit code 1', async () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify([[1, 2, 999]]));
    const r = await cli([
      'logits',
      '--model',
      model,
      '--tokens',
      bad,
      '--out',
      join(dir, 'x.safetensors'),
      '--backend',
      'cpu',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('bad.json: [0][2] = 999 is not a token id in [0, 259)');
    const r2 = await cli([
      'merge',
      '--model',
      join(dir, 'nope'),
      '--adapter',
      adapter,
      '--out',
      join(dir, 'm2'),
    ]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/nope: not a model directory and not a preset/);
    const r3 = await cli(['logits', '--model', model, '--tokens', tokens]);
    expect(r3.code).toBe(2);
    expect(r3.stderr).toMatch(/required option '--out <file>' not specified/);
  });
});
