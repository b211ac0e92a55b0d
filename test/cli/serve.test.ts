// `peftc serve`: flag errors in-process (exit 2, nothing started), and the real command in
// a process: it prints the URL it listens on (loopback, port 0 = a free one), serves the
// base model and an --adapter by name, and exits 0 on SIGTERM.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { makeAdapter } from '../models/multi-lora-cases.ts';
import { adapterDirs, BASE, MODEL_DIR, model } from '../serve/helpers.ts';
import { cli } from './run-cli.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'peftc.js');

it('refuses bad flags with exit 2 and says what to give', async () => {
  const bad: [string[], RegExp][] = [
    [['--adapter', 'noname'], /--adapter must be name=<dir>/],
    [['--adapter', 'a=/nonexistent/adapter'], /--adapter a=\/nonexistent\/adapter: no such directory/],
    [['--adapter', `a=${MODEL_DIR}`, '--adapter', `a=${MODEL_DIR}`], /'a' is given twice/],
    [['--port', '-1'], /--port must be a non-negative integer/],
    [['--max-batch', '0'], /--max-batch must be a positive integer/],
    [
      ['--max-loras', '1', '--adapter', `a=${MODEL_DIR}`, '--adapter', `b=${MODEL_DIR}`],
      /2 adapters given but --max-loras is 1/,
    ],
  ];
  for (const [flags, message] of bad) {
    const r = await cli(['serve', '--model', MODEL_DIR, '--backend', 'cpu', ...flags]);
    expect(r.code, flags.join(' ')).toBe(2);
    expect(r.stderr).toMatch(message);
  }
  // Not a PEFT folder: a runtime error (exit 1) naming the flag and the file.
  const r = await cli(['serve', '--model', MODEL_DIR, '--backend', 'cpu', '--adapter', `a=${MODEL_DIR}`]);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/--adapter a=examples\/models\/tiny-llama: .*adapter_config\.json/);
});

it('serves on loopback, prints its URL, and exits 0 on SIGTERM', async () => {
  const adapter = adapterDirs()[0];
  // Rank 24, above the default --max-lora-rank 16: the default rises to fit it.
  const big = makeAdapter(model, { r: 24, targets: ['q_proj'], alpha: 8, seed: 9 });
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--model',
      MODEL_DIR,
      '--adapter',
      `mine=${adapter}`,
      '--adapter',
      `big=${big}`,
      '--backend',
      'cpu',
      '--port',
      '0',
      '--max-model-len',
      '64',
    ],
    {
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    err += d;
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    const end = Date.now() + 15_000;
    while (!/listening on http:\/\/127\.0\.0\.1:\d+/.test(out)) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`no URL printed:\n${out}\n${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const url = (out.match(/http:\/\/127\.0\.0\.1:\d+/) as RegExpMatchArray)[0];
    expect(out).toMatch(new RegExp(`models: ${BASE}, mine, big`));
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual([BASE, 'mine', 'big']);
    const res = await fetch(`${url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'mine', prompt: 'Hi', max_tokens: 4, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    expect(
      ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens,
    ).toBeGreaterThan(0);
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
}, 20_000);
