// `peftc merge` on a bitsandbytes 4-bit base (QLoRA): --merge-into float gives the
// logits of the unmerged 4-bit base + adapter; --merge-into 4bit requantizes (same
// layout, loads as a 4-bit base again) and warns with the rounding it caused.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openCheckpoint, SafetensorsFile } from '../../src/io/safetensors/index.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { maxDiff, writeRandomAdapter } from './fixtures.ts';
import { cli } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-qmerge-'));
const plain = join(dir, 'plain');
const bnb = join(dir, 'bnb');
const adapter = join(dir, 'adapter');
const tokens = join(dir, 'tokens.json');
const seqs = [
  [256, 1, 2, 3, 4, 5, 6],
  [256, 70, 80],
];
const Q = 'model.layers.0.self_attn.q_proj.weight';

async function run(args: string[]) {
  const r = await cli(args);
  if (r.code !== 0) throw new Error(`peftc ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r;
}

async function logits(model: string, name: string, extra: string[] = []): Promise<Float32Array[]> {
  const file = join(dir, `${name}.safetensors`);
  await run(['logits', '--model', model, ...extra, '--tokens', tokens, '--out', file, '--backend', 'cpu']);
  const f = SafetensorsFile.open(file);
  return seqs.map((_, i) => f.read(`logits.${i}`).data as Float32Array);
}

/** The float-merged model (written once; both tests use it). */
async function mergedFloat(): Promise<{ dir: string; stdout: string }> {
  const out = join(dir, 'merged-float');
  if (existsSync(out)) return { dir: out, stdout: '' };
  const r = await run(['merge', '--model', bnb, '--adapter', adapter, '--out', out, '--merge-into', 'float']);
  return { dir: out, stdout: r.stdout };
}

describe('peftc merge on a bitsandbytes 4-bit base', () => {
  beforeAll(async () => {
    const c = presetConfig('tiny');
    const base = randomLlamaWeights(c, 11);
    saveModelDir(plain, c, base);
    await run(['quantize', '--model', plain, '--out', bnb, '--double-quant']);
    // B scaled up so that the adapter visibly changes the logits.
    writeRandomAdapter(
      adapter,
      buildLlama(c, { batch: 1, seq: 4 }),
      base,
      { r: 4, lora_alpha: 16, target_modules: ['q_proj', 'v_proj', 'up_proj'] },
      bnb,
    );
    writeFileSync(tokens, JSON.stringify(seqs));
  });

  it('--merge-into float: a full-precision model giving the unmerged QLoRA logits', async () => {
    const unmerged = await logits(bnb, 'qlora', ['--adapter', adapter]);
    expect(maxDiff(unmerged, await logits(bnb, 'qbase'))).toBeGreaterThan(1e-2);
    const { dir: out, stdout } = await mergedFloat();
    expect(stdout).toMatch(/merged 6 weight\(s\)/);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(cfg.quantization_config).toBeUndefined();
    expect(cfg.torch_dtype).toBe('float32');
    const st = openCheckpoint(out);
    // Every linear is full precision again; no bitsandbytes tensor is left.
    expect(st.keys().filter((k) => /absmax|quant_map|quant_state/.test(k))).toEqual([]);
    expect(st.read(Q).dtype).toBe('f32');
    expect(st.read(Q).shape).toEqual([64, 64]);
    // dequantize + s B A in f32: agreement to f32 rounding.
    expect(maxDiff(unmerged, await logits(out, 'from-float'))).toBeLessThan(1e-4);
  });

  it('--merge-into 4bit: the 4-bit layout again, within the requantization rounding, with a warning', async () => {
    const unmerged = await logits(bnb, 'qlora4', ['--adapter', adapter]);
    const out = join(dir, 'merged-4bit');
    const r = await run([
      'merge',
      '--model',
      bnb,
      '--adapter',
      adapter,
      '--out',
      out,
      '--merge-into',
      '4bit',
    ]);
    const m = /warning: .*requantizes 6 weight\(s\).*max \|change\| = ([0-9.e+-]+)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    const change = Number(m![1]);
    // Requantizing rounds to the nearest NF4 code: at most half the widest gap (0.139) of a
    // block's absmax (double-quant absmax slightly above max |W|).
    const merged = openCheckpoint((await mergedFloat()).dir).read(Q).data;
    const maxW = Math.max(...Array.from(merged, Math.abs));
    expect(change).toBeGreaterThan(0);
    expect(change).toBeLessThan(0.14 * maxW * 1.01);
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).quantization_config.load_in_4bit).toBe(
      true,
    );
    const st = openCheckpoint(out);
    expect(st.read(Q).dtype).toBe('u8');
    expect(st.has(`${Q}.nested_absmax`)).toBe(true);
    // Unmerged weights are kept byte for byte.
    const k = 'model.layers.0.self_attn.k_proj.weight';
    expect(Array.from(st.read(k).data)).toEqual(Array.from(openCheckpoint(bnb).read(k).data));
    // The requantized weights are exactly what quantizing the float-merged model gives.
    const requant = join(dir, 'requant');
    await run(['quantize', '--model', (await mergedFloat()).dir, '--out', requant, '--double-quant']);
    for (const key of [Q, `${Q}.absmax`, `${Q}.nested_absmax`])
      expect(Array.from(st.read(key).data)).toEqual(Array.from(openCheckpoint(requant).read(key).data));
    // Stated bound: the merged-4bit logits are no farther from the unmerged QLoRA logits than
    // quantizing the whole float-merged model moves its logits (that rounds these 6 weights
    // identically, and 8 more).
    const d4 = maxDiff(unmerged, await logits(out, 'from-4bit'));
    const dq = maxDiff(await logits((await mergedFloat()).dir, 'mf'), await logits(requant, 'rq'));
    expect(d4).toBeGreaterThan(0);
    expect(d4).toBeLessThan(1.5 * dq);
  });

  it('refuses a bad --merge-into, and --merge-into on a full-precision model', async () => {
    const r = await cli([
      'merge',
      '--model',
      bnb,
      '--adapter',
      adapter,
      '--out',
      join(dir, 'x'),
      '--merge-into',
      '8bit',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--merge-into must be float or 4bit, got '8bit'/);
    const r2 = await cli([
      'merge',
      '--model',
      plain,
      '--adapter',
      adapter,
      '--out',
      join(dir, 'y'),
      '--merge-into',
      '4bit',
    ]);
    expect(r2.code).toBe(1);
    expect(r2.stderr).toMatch(/--merge-into applies to bitsandbytes 4-bit models only/);
  });
});
