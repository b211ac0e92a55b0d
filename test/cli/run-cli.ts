// Two ways to run `peftc` in tests:
// - `cli(args)`: in-process, through runCli (what bin/peftc.js calls), with everything
//   the command writes captured. Cheap (no process start, no tsx, no re-import), so
//   most CLI cases use it.
// - `peftc(args)`: the real command in a child process, as users run it. Costs a
//   process start (~1.5 s of CPU); keep it for what only a process shows: the exit
//   status the shell sees, that the process exits once done (device disposed),
//   plugins loaded into a fresh process.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { format } from 'node:util';
import { runCli } from '../../src/cli/main.ts';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'peftc.js');

export function peftc(args: readonly string[], opts: { timeoutMs?: number } = {}): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Write = typeof process.stdout.write;
const CONSOLE_OUT = ['log', 'info', 'debug'] as const;
const CONSOLE_ERR = ['error', 'warn', 'trace'] as const;

/** Calls run one at a time: the capture swaps process-wide streams. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * `peftc <args>` in this process: the exit code runCli returns (what the real command
 * exits with) and what it wrote. The commands write to process.stdout/stderr and the
 * console; those are captured for the duration of the call, as a pipe would see them
 * (not a TTY, so no redrawn progress bar). Concurrent calls are serialised.
 */
export function cli(args: readonly string[]): Promise<CliResult> {
  const run = queue.then(() => capture(args));
  queue = run.catch(() => undefined);
  return run;
}

async function capture(args: readonly string[]): Promise<CliResult> {
  const out: string[] = [];
  const err: string[] = [];
  const sink =
    (into: string[]): Write =>
    (chunk: unknown, ...rest: unknown[]) => {
      into.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    };
  const line =
    (into: string[]) =>
    (...a: unknown[]) =>
      into.push(`${format(...a)}\n`);
  const saved = {
    out: process.stdout.write,
    err: process.stderr.write,
    tty: Object.getOwnPropertyDescriptor(process.stdout, 'isTTY'),
    console: Object.fromEntries([...CONSOLE_OUT, ...CONSOLE_ERR].map((k) => [k, console[k]])),
  };
  process.stdout.write = sink(out);
  process.stderr.write = sink(err);
  Object.defineProperty(process.stdout, 'isTTY', { value: false, configurable: true, writable: true });
  for (const k of CONSOLE_OUT) console[k] = line(out);
  for (const k of CONSOLE_ERR) console[k] = line(err);
  try {
    const code = await runCli(args, { stdout: (s) => out.push(s), stderr: (s) => err.push(s) });
    return { code, stdout: out.join(''), stderr: err.join('') };
  } finally {
    process.stdout.write = saved.out;
    process.stderr.write = saved.err;
    if (saved.tty) Object.defineProperty(process.stdout, 'isTTY', saved.tty);
    else delete (process.stdout as { isTTY?: boolean }).isTTY;
    Object.assign(console, saved.console);
  }
}
