// `peftc export --format webgpu-ts` (issue 22): the exported package, built and run in a
// temporary directory outside the repository with its own node_modules, gives peftc's logits.
// To stay fast and offline the test does not `npm install`: buildOffline links the package's
// dependencies (webgpu, @webgpu/types, @types/node) from this repository's node_modules
// into the package's own node_modules and compiles with this repository's TypeScript
// (node_modules/.bin/tsc).
// The package's CLI runs in a child process, as its users run it, on this machine's adapter.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { runLogits } from '../../src/cli/commands/logits.ts';
import { buildOffline } from '../../src/export/webgpu-ts/build-offline.ts';
import { exportLengths } from '../../src/export/webgpu-ts/export.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { maxDiff, readLogits } from '../cli/fixtures.ts';
import { cli } from '../cli/run-cli.ts';
import { ENV, MODEL, ROOT, writeTestAdapter } from './webgpu-ts-fixtures.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-webgpu-ts-'));
const tokens = join(dir, 'tokens.json');
const adapter = join(dir, 'adapter');
const seqs = [
  [256, 1, 2, 3, 4, 5],
  [256, 70, 80],
  [256, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11, 12, 13, 14, 15, 16],
];

/** Exports with `flags`, builds the package and runs its CLI; returns its logits. */
async function exported(name: string, flags: string[]): Promise<Float32Array[]> {
  const out = join(dir, name);
  const r = await cli(['export', '--format', 'webgpu-ts', '--model', MODEL, ...flags, '--out', out]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^wrote .*: package tiny-llama-webgpu, \d+ WGSL kernels/);
  buildOffline(out);
  const file = join(dir, `${name}.safetensors`);
  execFileSync(process.execPath, ['dist/cli.js', 'logits', '--tokens', tokens, '--out', file], {
    cwd: out,
    stdio: 'pipe',
    env: ENV,
  });
  return readLogits(file, seqs.length);
}

/** Dispatches per run of an exported package's plan for 32 tokens. */
function dispatches(name: string): number {
  return JSON.parse(readFileSync(join(dir, name, 'model', 'plans', 'gpu-32.json'), 'utf8')).dispatches.length;
}

async function peftcLogits(name: string, model: string, extra: { adapter?: string[]; merge?: boolean } = {}) {
  const out = join(dir, `${name}.peftc.safetensors`);
  await runLogits({ model, tokens, out, backend: 'cpu', ...extra });
  return readLogits(out, seqs.length);
}

describe('peftc export --format webgpu-ts', () => {
  let base: Float32Array[];
  beforeAll(async () => {
    writeFileSync(tokens, JSON.stringify(seqs));
    writeTestAdapter(adapter);
    base = await peftcLogits('base', MODEL);
  });

  it('the base model: the package writes what peftc logits writes, within 1e-4', async () => {
    const got = await exported('base', []);
    expect(got.map((l) => l.length)).toEqual(seqs.map((s) => s.length * 259));
    expect(maxDiff(got, base)).toBeLessThan(1e-4);
    const pkg = JSON.parse(readFileSync(join(dir, 'base', 'package.json'), 'utf8'));
    expect(Object.keys(pkg.dependencies)).toEqual(['webgpu']);
    expect(pkg.scripts.build).toBe('tsc -p .');
    expect(readdirSync(join(dir, 'base', 'model', 'kernels')).every((f) => f.endsWith('.wgsl'))).toBe(true);
  }, 20_000);

  it("the package's own test (`npm test`) passes (after the base model's export)", () => {
    execFileSync(process.execPath, ['--test', 'dist/test.js'], {
      cwd: join(dir, 'base'),
      stdio: 'pipe',
      env: ENV,
    });
  }, 20_000);

  it('an adapter unmerged: its low-rank branches stay in the graph', async () => {
    const ref = await peftcLogits('lora', MODEL, { adapter: [adapter] });
    expect(maxDiff(ref, base)).toBeGreaterThan(1e-2); // the adapter shows
    expect(maxDiff(await exported('lora', ['--adapter', adapter]), ref)).toBeLessThan(1e-4);
    // The branches are dispatches of their own.
    expect(dispatches('lora')).toBeGreaterThan(dispatches('base'));
  }, 20_000);

  it('the adapter merged (--merge): folded into the base weights, no branch left', async () => {
    const merged = await peftcLogits('merged', MODEL, { adapter: [adapter], merge: true });
    expect(maxDiff(merged, base)).toBeGreaterThan(1e-2);
    expect(maxDiff(await exported('merged', ['--adapter', adapter, '--merge']), merged)).toBeLessThan(1e-4);
    expect(dispatches('merged')).toBe(dispatches('base'));
  }, 20_000);

  it('--quant nf4: the NF4 weights as peftc runs them (quantize, then logits), within 1e-4', async () => {
    const q = join(dir, 'nf4-model');
    quantizeCheckpoint(MODEL, q, { quantType: 'nf4', blocksize: 64, doubleQuant: false });
    const ref = await peftcLogits('nf4', q);
    const got = await exported('nf4', ['--quant', 'nf4']);
    expect(maxDiff(got, ref)).toBeLessThan(1e-4);
    // The weights did change (this tiny model's random weights quantize coarsely).
    expect(maxDiff(got, base)).toBeGreaterThan(1e-3);
  }, 20_000);

  it("the package's gpu plans (hardware kernel variants) also give peftc's logits, forced on this adapter", async () => {
    const url = pathToFileURL(join(dir, 'base', 'dist', 'runner.js')).href;
    const { loadModel } = (await import(
      url
    )) as typeof import('../../src/export/webgpu-ts/runtime/runner.ts');
    const model = await loadModel(undefined, { target: 'gpu' });
    try {
      expect(model.device.target).toBe('gpu');
      const got = [];
      for (const ids of seqs) got.push(await model.logits(ids));
      expect(maxDiff(got, base)).toBeLessThan(1e-4);
    } finally {
      model.dispose();
    }
  }, 20_000);

  it("the package's CLI refuses bad tokens and an existing --out, writing nothing", () => {
    const pkg = join(dir, 'base');
    const run = (args: string[]) =>
      spawnSync(process.execPath, ['dist/cli.js', ...args], { cwd: pkg, env: ENV, encoding: 'utf8' });
    const bad = join(dir, 'bad-tokens.json');
    writeFileSync(
      bad,
      JSON.stringify([
        [1, 2],
        [3, 259],
      ]),
    );
    const out = join(dir, 'bad.safetensors');
    let r = run(['logits', '--tokens', bad, '--out', out]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--tokens .*bad-tokens\.json: \[1\]\[1\] = 259 is not a token id in \[0, 259\)/);
    expect(existsSync(out)).toBe(false);
    r = run(['logits', '--tokens', tokens, '--out', join(dir, 'base.safetensors')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/already exists; choose a new file or pass --overwrite/);
    r = run(['train']);
    expect(r.stderr).toMatch(/unknown command 'train'/);
  }, 20_000);

  it('a DoRA adapter (test/fixtures/peft/dora, made by PEFT) unmerged, within 1e-4', async () => {
    const dora = join(ROOT, 'test/fixtures/peft/dora/adapter');
    const ref = await peftcLogits('dora', MODEL, { adapter: [dora] });
    expect(maxDiff(await exported('dora', ['--adapter', dora]), ref)).toBeLessThan(1e-4);
  }, 20_000);

  it('compiled lengths: powers of two up to min(512, max_position_embeddings), and that cap', () => {
    expect(exportLengths(512)).toEqual([1, 2, 4, 8, 16, 32, 64, 128, 256, 512]);
    expect(exportLengths(100)).toEqual([1, 2, 4, 8, 16, 32, 64, 100]);
    expect(exportLengths(4096).at(-1)).toBe(512);
    expect(exportLengths(1)).toEqual([1]);
  });

  it('bad input is refused with the reason, and nothing is written', async () => {
    const cases: [string[], RegExp][] = [
      [['--quant', 'fp8'], /--quant must be one of none, nf4, got 'fp8'/],
      [['--adapter', join(dir, 'no-such-adapter')], /no-such-adapter/],
      [['--merge'], /--merge needs at least one --adapter/],
      [['--type', 'f16'], /--type does not apply to --format webgpu-ts/],
    ];
    for (const [flags, why] of cases) {
      const out = join(dir, 'refused');
      const r = await cli(['export', '--format', 'webgpu-ts', '--model', MODEL, ...flags, '--out', out]);
      expect(r.code, flags.join(' ')).not.toBe(0);
      expect(r.stderr).toMatch(why);
      expect(existsSync(out)).toBe(false);
    }
    const r = await cli([
      'export',
      '--format',
      'webgpu-ts',
      '--model',
      'tiny',
      '--quant',
      'nf4',
      '--out',
      join(dir, 'x'),
    ]);
    expect(r.stderr).toMatch(/--quant nf4 needs --model to be a model directory/);
    expect(existsSync(join(dir, 'x'))).toBe(false);
  }, 20_000);
});
