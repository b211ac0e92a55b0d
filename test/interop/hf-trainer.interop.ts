// `npm run test:interop` (not part of `npm test`: it needs Python with torch, transformers and
// peft). For each recipe: `peftc export --format hf-trainer` writes the project, `peftc train
// --backend cpu` runs the recipe, the project's train.py runs it with Hugging Face Trainer +
// PEFT on the CPU in one process from the same weights (examples/models/tiny-llama, peftc's
// initial adapter, peftc's rows and batch order), and the first 3 losses must agree within 1e-4.
// Python: $PYTHON, else bench/baseline/.venv/bin/python, else python3.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DATA, exportProject, ROOT, trainCpu } from '../export/hf-trainer-cli.ts';

const VENV = join(ROOT, 'bench', 'baseline', '.venv', 'bin', 'python');
const PYTHON = process.env.PYTHON ?? (existsSync(VENV) ? VENV : 'python3');
const TOLERANCE = 1e-4;

const tmp = mkdtempSync(join(tmpdir(), 'peftc-interop-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const losses = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as { step: number; loss?: number })
    .filter((r) => r.loss !== undefined)
    .map((r) => r.loss as number);

describe.each([
  ['lora (cosine, clipping, weight decay)', 'lora-interop.json'],
  ['DoRA + LoRA+ (linear warmup, gradient accumulation 2, checkpointing)', 'dora-loraplus-interop.json'],
  ['AdaLoRA (rank allocation callback, orthogonality penalty)', 'adalora-interop.json'],
  ['PiSSA (PEFT recomputes the SVD init; saved converted to plain LoRA)', 'pissa-interop.json'],
])('hf-trainer project: %s', (_what, file) => {
  it('tracks peftc train --backend cpu over the first 3 steps within 1e-4', async () => {
    const recipe = join(ROOT, 'test', 'interop', file);
    const dir = join(tmp, file.replace('.json', ''));
    const project = join(dir, 'project');
    const exp = await exportProject(recipe, project, '--data', DATA);
    expect(exp.code, exp.stderr).toBe(0);
    const run = await trainCpu(recipe, join(dir, 'peftc'));
    expect(run.code, run.stderr).toBe(0);
    const py = spawnSync(PYTHON, ['train.py', '--cpu', '--output-dir', join(dir, 'hf')], {
      cwd: project,
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, TRANSFORMERS_VERBOSITY: 'error', OMP_NUM_THREADS: '2' },
    });
    expect(py.status, `${PYTHON} train.py failed:\n${py.stderr}`).toBe(0);
    const ours = losses(join(dir, 'peftc', 'log.jsonl')).slice(0, 3);
    const theirs = losses(join(dir, 'hf', 'losses.jsonl')).slice(0, 3);
    const diffs = ours.map((l, i) => Math.abs(l - theirs[i]));
    console.log(
      `${file}: peftc ${ours.map((l) => l.toFixed(6)).join(' ')} | HF Trainer ${theirs.map((l) => l.toFixed(6)).join(' ')} | max |diff| ${Math.max(...diffs).toExponential(2)}`,
    );
    expect(theirs).toHaveLength(3);
    for (const d of diffs) expect(d).toBeLessThan(TOLERANCE);
  });
});
