// `generate` in the exported webgpu-ts package (issue 22): the KV-cache plans (prefill chunks
// and the decode plan, batch 1) run by the package's runtime give `peftc generate --json`'s
// tokens, greedy and seeded-sampled, with the same finish reasons. One package (tiny-llama
// with a random LoRA adapter, unmerged) is exported and built once, offline (build-offline.ts),
// in a temporary directory outside the repository; its CLI runs in a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildOffline } from '../../src/export/webgpu-ts/build-offline.ts';
import { SHIPPED } from '../../src/export/webgpu-ts/emit.ts';
import { kvFeedArrays, MASKED } from '../../src/export/webgpu-ts/runtime/kv-feeds.ts';
import type { Plan } from '../../src/export/webgpu-ts/runtime/plan-types.ts';
import { kvFeeds, MASKED as PEFTC_MASKED } from '../../src/generate/feeds.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { cli } from '../cli/run-cli.ts';
import { ENV, MODEL, ROOT, writeTestAdapter } from './webgpu-ts-fixtures.ts';

type Runner = typeof import('../../src/export/webgpu-ts/runtime/runner.ts');

const dir = mkdtempSync(join(tmpdir(), 'peftc-webgpu-ts-gen-'));
const adapter = join(dir, 'adapter');
const pkg = join(dir, 'pkg');
/** Two prompts: a short one, and one of 80 tokens (two prefill chunks of 64). */
const prompts = [
  [256, 1, 2, 3, 4, 5],
  [256, ...Array.from({ length: 79 }, (_, i) => (7 * i + 3) % 256)],
];
const SAMPLED = ['--temperature', '0.9', '--top-k', '40', '--top-p', '0.95', '--repetition-penalty', '1.2'];

interface Row {
  index: number;
  output_ids: number[];
  finish_reason: string;
}

const rows = (stdout: string): Row[] =>
  stdout
    .trim()
    .split('\n')
    .map((l) => {
      const { index, output_ids, finish_reason } = JSON.parse(l) as Row;
      return { index, output_ids, finish_reason };
    });

async function peftcGenerate(
  flags: string[],
  given: readonly number[][] = prompts,
  model = ['--model', MODEL, '--adapter', adapter],
): Promise<Row[]> {
  const r = await cli(['generate', ...model, '--tokens', JSON.stringify(given), '--json', ...flags]);
  expect(r.code, r.stderr).toBe(0);
  return rows(r.stdout);
}

function packageCli(args: string[]) {
  return spawnSync(process.execPath, ['dist/cli.js', ...args], { cwd: pkg, env: ENV, encoding: 'utf8' });
}

function packageGenerate(flags: string[], at = pkg): Row[] {
  const out = execFileSync(
    process.execPath,
    ['dist/cli.js', 'generate', '--tokens', JSON.stringify(prompts), '--json', ...flags],
    { cwd: at, env: ENV, encoding: 'utf8', stdio: 'pipe' },
  );
  return rows(out);
}

/** Exports tiny-llama with `flags` into `at` and builds the package there. */
async function exportAndBuild(at: string, flags: string[]): Promise<void> {
  const r = await cli(['export', '--format', 'webgpu-ts', '--model', MODEL, ...flags, '--out', at]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout).toMatch(
    /generate: a 512-slot KV cache \(batch 1\), prefill chunks of 1, 2, 4, .*, 64 tokens/,
  );
  buildOffline(at);
}

describe('the webgpu-ts package generates as peftc does', () => {
  beforeAll(async () => {
    writeTestAdapter(adapter);
    await exportAndBuild(pkg, ['--adapter', adapter]);
  }, 20_000);

  it('greedy (no sampling flag): token for token the ids of `peftc generate --json`, adapter unmerged', async () => {
    const flags = ['--max-new-tokens', '12'];
    const want = await peftcGenerate(flags);
    expect(want.map((r) => r.output_ids.length)).toEqual([12, 12]);
    expect(packageGenerate(flags)).toEqual(want);
    // --temperature 0 is greedy too.
    expect(packageGenerate([...flags, '--temperature', '0'])).toEqual(want);
  }, 20_000);

  it("seeded sampling: peftc's draws (HF order, stream per prompt), repeated; another seed differs", async () => {
    const flags = ['--max-new-tokens', '16', ...SAMPLED, '--seed', '7'];
    const want = await peftcGenerate(flags);
    const got = packageGenerate(flags);
    expect(got).toEqual(want);
    expect(packageGenerate(flags)).toEqual(got);
    const other = packageGenerate(['--max-new-tokens', '16', ...SAMPLED, '--seed', '8']);
    expect(other.map((r) => r.output_ids)).not.toEqual(got.map((r) => r.output_ids));
  }, 20_000);

  it("finish reasons: 'length' at maxNewTokens, 'stop' on an eos id (kept last), streamed by onToken", async () => {
    const { loadModel, MODEL: manifest } = (await import(
      pathToFileURL(join(pkg, 'dist', 'runner.js')).href
    )) as Runner;
    expect(manifest.generation?.eos).toEqual([257]); // the model's eos_token_id
    const model = await loadModel();
    try {
      const long = await model.generate(prompts[0], { maxNewTokens: 10 });
      expect(long.finishReason).toBe('length');
      expect(long.outputIds).toHaveLength(10);
      const eos = long.outputIds[4];
      const streamed: number[] = [];
      const stopped = await model.generate(prompts[0], {
        maxNewTokens: 10,
        eos: [eos],
        onToken: (t) => streamed.push(t),
      });
      expect(stopped.finishReason).toBe('stop');
      expect(stopped.outputIds).toEqual(long.outputIds.slice(0, long.outputIds.indexOf(eos) + 1));
      expect(streamed).toEqual(stopped.outputIds);
      // peftc stops on the same id with the same reason.
      const [peftcRow] = await peftcGenerate(['--max-new-tokens', '10'], [prompts[0]]);
      expect(peftcRow.output_ids).toEqual(long.outputIds);
      await expect(model.generate([], {})).rejects.toThrow(/generate takes 1 to 512 tokens/);
      await expect(model.generate([259])).rejects.toThrow(/not a token id in \[0, 259\)/);
    } finally {
      model.dispose();
    }
  }, 20_000);

  it("the gpu plans (hardware kernel variants), forced on this adapter, generate peftc's tokens too", async () => {
    const { loadModel } = (await import(pathToFileURL(join(pkg, 'dist', 'runner.js')).href)) as Runner;
    // The short prompt only: the gpu variants are slow on lavapipe.
    const want = await peftcGenerate(['--max-new-tokens', '8', ...SAMPLED, '--seed', '3'], [prompts[0]]);
    const model = await loadModel(undefined, { target: 'gpu' });
    try {
      expect(model.device.target).toBe('gpu');
      const g = await model.generate(prompts[0], {
        maxNewTokens: 8,
        temperature: 0.9,
        topK: 40,
        topP: 0.95,
        repetitionPenalty: 1.2,
        seed: 3,
      });
      expect(g.outputIds).toEqual(want[0].output_ids);
    } finally {
      model.dispose();
    }
  }, 20_000);

  it('--merge: the folded adapter generates what `peftc generate --merge` does (seeded sampling)', async () => {
    const at = join(dir, 'merged');
    await exportAndBuild(at, ['--adapter', adapter, '--merge']);
    const flags = ['--max-new-tokens', '10', ...SAMPLED, '--seed', '11'];
    const want = await peftcGenerate(flags, prompts, ['--model', MODEL, '--adapter', adapter, '--merge']);
    expect(packageGenerate(flags, at)).toEqual(want);
  }, 20_000);

  it('--quant nf4: the 4-bit package generates what peftc generates on the same NF4 checkpoint', async () => {
    const at = join(dir, 'nf4');
    await exportAndBuild(at, ['--quant', 'nf4']);
    const q = join(dir, 'nf4-model');
    quantizeCheckpoint(MODEL, q, { quantType: 'nf4', blocksize: 64, doubleQuant: false });
    const flags = ['--max-new-tokens', '10', ...SAMPLED, '--seed', '5'];
    expect(packageGenerate(flags, at)).toEqual(await peftcGenerate(flags, prompts, ['--model', q]));
  }, 20_000);

  it('the plans: the cache is state shared by the generate plans, written in place', () => {
    const manifest = JSON.parse(
      readFileSync(join(pkg, 'model', 'plans', 'software-kv512-1.json'), 'utf8'),
    ) as Plan;
    const states = manifest.buffers.flatMap((b) => (b.state ? [b.state] : []));
    expect(states.sort()).toEqual(['kv.0.k', 'kv.0.v', 'kv.1.k', 'kv.1.v']);
    // Each layer's new cache is written into the cache's buffer by the kernel computing it
    // (a group kernel, in place): no copies after the run.
    expect(manifest.copies ?? []).toEqual([]);
    manifest.buffers.forEach((b, i) => {
      if (!b.state) return;
      const writes = manifest.dispatches.filter((d) =>
        d.bindings.some((x, k) => x.buffer === i && d.writes[k]),
      );
      expect(writes.length, b.state).toBeGreaterThan(0);
    });
    expect(Object.keys(manifest.feeds ?? {}).sort()).toEqual([
      'attn_bias',
      'kv_keep',
      'kv_write',
      'positions',
    ]);
    const prefill = JSON.parse(
      readFileSync(join(pkg, 'model', 'plans', 'software-kv512-64.json'), 'utf8'),
    ) as Plan;
    expect(Object.keys(prefill.feeds ?? {})).toContain('last_token');
    // The weights file holds no cache.
    const header = readFileSync(join(pkg, 'model', 'weights.safetensors'));
    const n = Number(header.readBigUInt64LE(0));
    const keys = Object.keys(JSON.parse(header.subarray(8, 8 + n).toString('utf8')));
    expect(keys.some((k) => k.startsWith('kv.'))).toBe(false);
  });

  it("the package's sampler and row rules are peftc's files, imports pointed at the copies", () => {
    for (const f of SHIPPED) {
      const ours = readFileSync(join(ROOT, 'src', f), 'utf8');
      const theirs = readFileSync(join(pkg, 'src', f.split('/').pop() as string), 'utf8');
      expect(theirs.replace("from './rng.ts'", "from '../util/rng.ts'")).toBe(ours);
    }
  });

  it("the CLI streams one prompt's ids without --json, and --eos stops it", () => {
    const [greedy] = packageGenerate(['--max-new-tokens', '6']);
    let r = packageCli(['generate', '--tokens', JSON.stringify(prompts[0]), '--max-new-tokens', '6']);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim().split(' ').map(Number)).toEqual(greedy.output_ids);
    const eos = greedy.output_ids[3];
    const args = ['generate', '--tokens', JSON.stringify([prompts[0]]), '--max-new-tokens', '6', '--json'];
    r = packageCli([...args, '--eos', String(eos)]);
    expect(rows(r.stdout)).toEqual([
      {
        index: 0,
        output_ids: greedy.output_ids.slice(0, greedy.output_ids.indexOf(eos) + 1),
        finish_reason: 'stop',
      },
    ]);
  });

  it("the package's generate refuses bad flags and tokens, with the reason", () => {
    const cases: [string[], RegExp][] = [
      [['--tokens', '[1, 259]'], /--tokens: \[0\]\[1\] = 259 is not a token id in \[0, 259\)/],
      [['--tokens', '[1]', '--top-p', '0'], /--top-p must be a number in \(0, 1\]/],
      [['--tokens', '[1]', '--max-new-tokens', '1.5'], /--max-new-tokens must be an integer >= 1/],
      [['--tokens', '[1]', '--bogus'], /Unknown option '--bogus'/],
      [[], /generate needs --tokens/],
      [['--tokens', '[1]', '--eos', '259'], /--eos must be an integer >= 0 and <= 258, got '259'/],
    ];
    for (const [args, why] of cases) {
      const r = packageCli(['generate', ...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(why);
    }
  });
});

describe("the runtime's KV feeds", () => {
  it("equal peftc's kvFeeds for one row", () => {
    expect(MASKED).toBe(PEFTC_MASKED);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 0, max: 6 }),
        (maxLen, s, n, st) => {
          const seq = Math.max(1, Math.min(s, maxLen));
          const count = Math.min(n, seq);
          const start = Math.min(st, maxLen - count);
          const tokens = Array.from({ length: count }, (_, i) => i + 3);
          const want = kvFeeds([{ start, tokens }], seq, maxLen);
          const got = kvFeedArrays(start, tokens, seq, maxLen);
          expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
          for (const [k, t] of Object.entries(want))
            expect(Array.from(got[k as keyof typeof got] ?? [])).toEqual(Array.from(t.data));
        },
      ),
      { seed: 22, numRuns: 200 },
    );
  });
});
