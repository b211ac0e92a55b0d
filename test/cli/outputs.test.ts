// Issue 17 item 5: outputs and their errors. A failed write names the user's --out (never
// the temporary file), says why and what to do, and leaves nothing behind; logits, merge
// and quantize refuse an existing --out unless --overwrite, which replaces it whole.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { mergeToDir } from '../../src/cli/commands/merge.ts';
import { writeAll, writeFileAtomic } from '../../src/io/atomic.ts';
import { OutputError } from '../../src/io/fs-errors.ts';
import { SafetensorsFile, writeSafetensors } from '../../src/io/safetensors/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights, saveModelDir } from '../../src/models/llama/index.ts';
import { type CliResult, cli } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-outputs-'));
const model = join(dir, 'model');
const adapter = join(dir, 'adapter');
const tokens = join(dir, 'tokens.json');
const trainTokens = join(dir, 'train-tokens.json');
const aFile = join(dir, 'a-file');
const BIN = join(import.meta.dirname, '..', '..', 'bin', 'peftc.js');

/** `peftc` on a disk that is full after `bytes` bytes (full-disk.mjs). */
function peftcOnFullDisk(bytes: number, args: string[]): CliResult {
  const r = spawnSync(
    process.execPath,
    ['--import', join(import.meta.dirname, 'full-disk.mjs'), BIN, ...args],
    {
      encoding: 'utf8',
      timeout: 120_000,
      env: {
        ...process.env,
        PEFTC_TEST_DISK_BYTES: String(bytes),
        XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp',
      },
    },
  );
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user error: one `peftc: error:` line, no stack trace, no temporary name. */
function expectUserError(r: CliResult, says: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr.match(/peftc: error:/g)).toHaveLength(1);
  expect(r.stderr).toMatch(says);
  expect(r.stderr).not.toMatch(/^ {4}at |PEFTC_DEBUG|\.tmp-|ENOSPC|ENOENT|EACCES/m);
}

/** A folder the current user cannot write: chmod works unless we are root, who may write anyway; /sys refuses root too. */
function readOnlyDir(): string {
  if (process.getuid?.() !== 0) {
    const ro = join(dir, 'read-only');
    mkdirSync(ro, { mode: 0o555 });
    return ro;
  }
  return '/sys';
}

const logitsArgs = (out: string, extra: string[] = []) => [
  'logits',
  '--model',
  model,
  '--tokens',
  tokens,
  '--out',
  out,
  '--backend',
  'cpu',
  ...extra,
];

describe('outputs: where and how a failed write is said', () => {
  beforeAll(() => {
    const c = presetConfig('tiny');
    const base = randomLlamaWeights(c, 5);
    saveModelDir(model, c, base);
    const o = loraOptions.parse({ r: 2, target_modules: ['q_proj'], init_lora_weights: false });
    const inj = injectLora(buildLlama(c, { batch: 1, seq: 4 }), o, base);
    const w = bindParams(inj.graph, inj.weights!, 3);
    savePeftAdapter(adapter, inj.graph, (n) => w.get(n)!, o, model);
    writeFileSync(tokens, JSON.stringify([[256, 1, 2, 3]]));
    writeFileSync(trainTokens, JSON.stringify([1, 2, 3, 4].map((k) => [256, k, k + 1, k + 2, k + 3])));
    writeFileSync(aFile, 'keep me\n');
  });

  it('a full disk: logits names --out and the size, leaves no file and no temp file', () => {
    const sub = join(dir, 'full');
    mkdirSync(sub);
    const out = join(sub, 'x.safetensors');
    const r = peftcOnFullDisk(64, logitsArgs(out));
    // 4 x 259 f32 logits + header.
    expectUserError(
      r,
      /cannot write --out .*full\/x\.safetensors: the disk is full \(4\.\d KiB to write\); free some space on it or choose another --out/,
    );
    expect(readdirSync(sub)).toEqual([]);
  });

  it('a full disk mid-train: the error names --out and the run it started is removed', () => {
    const out = join(dir, 'full-run', 'run');
    const r = peftcOnFullDisk(0, [
      'train',
      '--model',
      model,
      '--recipe',
      'examples/recipes/lora-tiny.json',
      '--tokens',
      trainTokens,
      '--out',
      out,
      '--steps',
      '2',
      '--batch',
      '1',
      '--seq',
      '4',
      '--backend',
      'cpu',
    ]);
    expectUserError(
      r,
      /cannot write --out .*full-run\/run: the disk is full.*; free some space on it or choose another --out\. The run had written nothing to keep; .* was removed/,
    );
    expect(existsSync(join(dir, 'full-run'))).toBe(false);
  });

  it('a read-only or impossible --out parent: named, with what to do, before any work', async () => {
    const ro = readOnlyDir();
    expectUserError(
      await cli(logitsArgs(join(ro, 'x.safetensors'))),
      /cannot write --out .*x\.safetensors: .* is not writable \(permission denied\)|on a read-only file system; choose another --out/,
    );
    expectUserError(
      await cli(['merge', '--model', model, '--adapter', adapter, '--out', join(aFile, 'sub', 'm')]),
      /cannot write --out .*a-file\/sub\/m: .*a-file is a file, not a directory; choose another --out/,
    );
    expect(readFileSync(aFile, 'utf8')).toBe('keep me\n');
  });

  it('in-process: every write error is an OutputError of the target, its temp file and new folders removed', () => {
    const devFull = openSync('/dev/full', 'w');
    const target = join(dir, 'fresh', 'deeper', 'f.bin');
    let err: unknown;
    try {
      writeFileAtomic(target, () => writeAll(devFull, new Uint8Array(10)), { bytes: 10 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(OutputError);
    expect((err as Error).message).toBe(
      `cannot write ${target}: the disk is full (10 bytes to write); free some space on it or choose another location`,
    );
    expect(existsSync(join(dir, 'fresh'))).toBe(false);
    expect(() => writeSafetensors(join(aFile, 'x.safetensors'), { x: tensor('f32', [1], [1]) })).toThrow(
      /a-file is a file, not a directory/,
    );
    closeSync(devFull);
  });

  it('logits refuses an existing --out; --overwrite replaces it and says what it wrote', async () => {
    const out = join(dir, 'l.safetensors');
    writeFileSync(out, 'old\n');
    expectUserError(
      await cli(logitsArgs(out)),
      /--out .*l\.safetensors already exists; choose a new file name \(or pass --overwrite to replace it\)/,
    );
    expect(readFileSync(out, 'utf8')).toBe('old\n');
    const r = await cli(logitsArgs(out, ['--overwrite']));
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*l\.safetensors: 1 f32 tensor\(s\): logits\.0 \[4, 259\]\n$/);
    expect(SafetensorsFile.open(out).read('logits.0').shape).toEqual([4, 259]);
  });

  it('merge --overwrite swaps the whole directory (nothing of the old one is left)', () => {
    const out = join(dir, 'merged');
    mkdirSync(out);
    writeFileSync(join(out, 'stale.txt'), 'old\n');
    expect(() => mergeToDir({ model, adapter: [adapter], out })).toThrow(
      /--out .*merged already exists; choose a new directory \(or pass --overwrite/,
    );
    mergeToDir({ model, adapter: [adapter], out, overwrite: true });
    expect(readdirSync(out).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(() => mergeToDir({ model, adapter: [adapter], out: model, overwrite: true })).toThrow(
      /is the --model directory/,
    );
  });
});
