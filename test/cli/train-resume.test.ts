// `peftc train --resume` tells the truth (issue 17, item 6): it says which checkpoint it
// resumes from; a larger --steps than the run was planned for is refused for a schedule
// that depends on its total unless --schedule-steps restates it; the summary counts this
// invocation's steps and keeps the step-0 baseline; Ctrl-C saves a checkpoint and says
// how to resume.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TrainCliOptions } from '../../src/cli/commands/train.ts';
import { lrAt } from '../../src/train/schedule.ts';
import { trainCaptured, trainLogOf } from './fixtures.ts';
import { peftc } from './run-cli.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'peftc.js');
const dir = mkdtempSync(join(tmpdir(), 'peftc-train-resume-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tokens = join(dir, 'tokens.json');
writeFileSync(
  tokens,
  JSON.stringify(
    Array.from({ length: 10 }, (_, i) => Array.from({ length: 16 }, (_, j) => (i * 29 + j * 5) % 256)),
  ),
);
const LR = 1e-2;
const recipe = (schedule: Record<string, unknown>) => {
  const f = join(mkdtempSync(join(dir, 'r-')), 'recipe.json');
  writeFileSync(
    f,
    JSON.stringify({
      methods: [{ method: 'lora', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] }],
      optimizer: { type: 'adamw', lr: LR },
      schedule,
    }),
  );
  return f;
};
const cosine = recipe({ type: 'cosine', warmup_steps: 0 });

/** runTrain in-process with its progress output captured (test/cli/fixtures.ts). */
const trainIn = (o: Partial<TrainCliOptions>) =>
  trainCaptured({
    out: join(dir, 'run'),
    recipe: cosine,
    tokens,
    ...o,
  });

const logOf = trainLogOf;

describe('peftc train --resume', () => {
  it('refuses to re-stretch a cosine schedule unless --schedule-steps restates it; the summary counts this run', async () => {
    const out = join(dir, 'cos');
    const first = await trainIn({ out, steps: 2 });
    const baseline = first.r.evalLosses[0];
    expect(baseline.step).toBe(0);

    // The real command: a bad-input exit with the exact flags to pass.
    const cli = peftc([
      ...['train', '--model', 'tiny', '--recipe', cosine, '--tokens', tokens, '--out', out],
      ...['--batch', '2', '--seq', '16', '--backend', 'cpu', '--resume', '--steps', '4'],
    ]);
    expect(cli.code).toBe(1);
    const lrPlanned = lrAt({ type: 'cosine' }, LR, 1, 2).toExponential(2);
    const lrStretched = lrAt({ type: 'cosine' }, LR, 2, 4).toExponential(2);
    expect(cli.stderr).toContain(
      `--resume: the run in this checkpoint was planned for 2 steps of a cosine lr schedule, and 4 steps go past its end. Stretched over 4 steps, the lr would go from ${lrPlanned} (step 2, as run) to ${lrStretched} (step 3). To do that, restate the schedule: add --schedule-steps 4; to finish the run as planned, pass --steps 2.`,
    );

    const resumed = await trainIn({ out, steps: 4, scheduleSteps: 4, resume: true });
    expect(resumed.text).toContain(`resuming from ${join(out, 'checkpoint-2')}\n`);
    expect(resumed.text).toContain('lr schedule restated: cosine over 4 steps (was 2)');
    expect(resumed.r.losses).toHaveLength(2);
    expect(resumed.r.evalLosses[0]).toEqual(baseline);
    expect(resumed.line).toMatch(
      new RegExp(
        `^trained 2 steps \\(steps 3-4, resumed from step 2\\) at \\d+ tokens/s; eval loss ${baseline.loss.toFixed(4)} \\(step 0\\) -> [\\d.]+ \\(step 4\\); adapter in `,
      ),
    );
    const log = logOf(out);
    expect(log.map((r) => r.step)).toEqual([0, 1, 2, 3, 4]);
    expect(log[3].lr).toBeCloseTo(lrAt({ type: 'cosine' }, LR, 2, 4), 12);
  }, 30_000);

  it('a run planned with --schedule-steps continues along it; a resume without --steps stops where planned', async () => {
    const out = join(dir, 'planned');
    await trainIn({ out, steps: 2, scheduleSteps: 4 });
    await expect(trainIn({ out, resume: true })).rejects.toThrow(
      'the checkpoint is at step 2; ask for more --steps than that',
    );
    const more = await trainIn({ out, steps: 4, resume: true });
    expect(more.text).not.toContain('lr schedule restated');
    expect(logOf(out)[3].lr).toBeCloseTo(lrAt({ type: 'cosine' }, LR, 2, 4), 12);
    // A fresh run cannot end past its schedule.
    await expect(trainIn({ out: join(dir, 'short'), steps: 4, scheduleSteps: 2 })).rejects.toThrow(
      '--schedule-steps 2 is less than --steps 4',
    );
  }, 30_000);

  it('Ctrl-C stops after the current step with a checkpoint and the command to resume (exit 130)', async () => {
    const out = join(dir, 'sigint');
    const args = [
      ...['train', '--model', 'tiny', '--recipe', recipe({ type: 'constant' }), '--tokens', tokens],
      ...['--out', out, '--steps', '100000', '--batch', '2', '--seq', '16', '--backend', 'cpu', '--no-plot'],
    ];
    // In a process group of its own, so that the signal can go to the whole group as a
    // terminal's Ctrl-C does: the launcher and the program behind it must see one SIGINT.
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' },
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const code = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d) => {
        stdout += d;
        // The first progress line: training is under way.
        if (!sent && /step 1\/100000/.test(stdout)) {
          sent = true;
          process.kill(-(child.pid as number), 'SIGINT');
        }
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    const m = stderr.match(/interrupted at step (\d+); saved (\S+); resume with: (.*)\n/);
    expect(m, stderr).not.toBeNull();
    const [, step, ckpt, again] = m as RegExpMatchArray;
    expect(ckpt).toBe(join(out, `checkpoint-${step}`));
    expect(again).toBe(`peftc ${args.join(' ')} --resume`);
    expect(JSON.parse(readFileSync(join(ckpt, 'trainer_state.json'), 'utf8')).step).toBe(Number(step));
    expect(existsSync(join(out, 'adapter_model.safetensors'))).toBe(true);
    // The checkpoint resumes (here to one more step).
    const next = await trainIn({
      out,
      recipe: args[4],
      steps: Number(step) + 1,
      resume: true,
    });
    expect(next.text).toContain(`resuming from ${ckpt}`);
    expect(next.r.losses).toHaveLength(1);
  }, 30_000);
});
