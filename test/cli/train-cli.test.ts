// `peftc train` as users call it: flags, exit codes, outputs (one real process, the
// rest in-process through runCli).
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, peftc } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-train-cli-'));
const tokens = join(dir, 'tokens.json');
writeFileSync(
  tokens,
  JSON.stringify(
    Array.from({ length: 12 }, (_, i) => Array.from({ length: 40 }, (_, j) => (i * 31 + j * 7) % 256)),
  ),
);

/** `peftc train` on the tiny preset from the token file; `extra` adds or overrides flags. */
async function train(
  out: string,
  extra: string[] = [],
  recipe = 'examples/recipes/lora.json',
  spawn = false,
) {
  const base = `train --model tiny --recipe ${recipe} --tokens ${tokens} --out ${out} --steps 3 --batch 2 --seq 16 --backend cpu`;
  const args = [...base.split(' '), ...extra];
  return spawn ? peftc(args) : cli(args);
}

describe('peftc train', () => {
  it('trains from --tokens and writes a PEFT adapter that peftc logits loads', async () => {
    const out = join(dir, 'run');
    const r = await train(out, ['--no-plot'], undefined, true);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/trained 3 steps at \d+ tokens\/s; eval loss [\d.]+ -> [\d.]+; adapter in/);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r: 8, lora_alpha: 16, task_type: 'CAUSAL_LM' });
    expect(JSON.parse(readFileSync(join(out, 'recipe.json'), 'utf8')).optimizer.lr).toBe(2e-4);
    expect(existsSync(join(out, 'log.jsonl'))).toBe(true);
    const logits = `logits --model tiny --adapter ${out} --tokens ${tokens} --out ${join(dir, 'l.safetensors')} --backend cpu`;
    expect((await cli(logits.split(' '))).code).toBe(0);
    // A second run into the same --out without --resume is refused.
    const again = await train(out);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already holds a training checkpoint .*pass --resume/);
  });

  it('rejects bad flags and recipes with clear messages', async () => {
    const both = await train(join(dir, 'x'), ['--data', tokens]);
    expect(both.code).toBe(2); // a usage error
    expect(both.stderr).toContain('give exactly one of --data <file> and --tokens <file>');
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ methods: [{ method: 'lora', rnak: 4 }] }));
    const r = await train(join(dir, 'y'), [], bad);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('methods[0].rnak: unknown key; did you mean r?');
    const steps = await train(join(dir, 'z'), ['--steps', '0']);
    expect(steps.code).not.toBe(0);
    expect(steps.stderr).toContain('--steps must be a positive integer');
  });
});
