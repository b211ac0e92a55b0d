// Audit (issue 3, "Bad recipes ... clear error, exit code non-zero"): recipe.test.ts
// checks the messages through parseRecipe and the exit code for one typo only; here
// each kind of bad recipe goes through the `peftc ir` command (in-process, runCli). Also
// `--print-after all` prints the IR after each pass of the recipe's pipeline.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../cli/run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'audit-recipe-'));

const BAD: [string, unknown, RegExp][] = [
  [
    'unknown method',
    { methods: [{ method: 'vera' }] },
    /methods\[0\]\.method: unknown method 'vera'.*known: .*lora/,
  ],
  [
    'wrong type',
    { methods: [{ method: 'lora', lora_alpha: 'x' }] },
    /methods\[0\]\.lora_alpha: expected number, got "x"/,
  ],
  [
    'out-of-range rank',
    { methods: [{ method: 'lora', r: 0 }] },
    /methods\[0\]\.r: expected a positive integer, got 0/,
  ],
  [
    'conflicting methods',
    { methods: [{ method: 'lora' }, { method: 'qlora' }] },
    /methods\[1\]: 'qlora' conflicts with methods\[0\] 'lora': .*move the qlora entry first/,
  ],
];

describe('peftc ir on bad recipes', () => {
  it.each(BAD)(
    '%s: exit code 1, the file, JSON path and what was expected; no stack trace',
    async (name, json, pattern) => {
      const f = join(dir, `${name.replace(/\W+/g, '-')}.json`);
      writeFileSync(f, JSON.stringify(json));
      const r = await cli(['ir', '--model', 'tiny', '--recipe', f, '--seq', '2']);
      expect(r.code).toBe(1);
      expect(r.stderr.startsWith(`peftc: error: ${f}: `)).toBe(true);
      expect(r.stderr).toMatch(pattern);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      expect(r.stdout).toBe('');
    },
  );
});

describe('peftc ir --print-after all', () => {
  it('prints the IR after every pass of the pipeline, then the final IR', async () => {
    const f = join(dir, 'two-adapters.json');
    writeFileSync(
      f,
      JSON.stringify({
        methods: [
          { method: 'lora', r: 2, target_modules: ['q_proj'] },
          { method: 'lora', r: 2, target_modules: ['v_proj'], adapter_name: 'second' },
        ],
      }),
    );
    const r = await cli(['ir', '--model', 'tiny', '--recipe', f, '--seq', '2', '--print-after', 'all']);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    const all = r.stdout + r.stderr;
    const headers = all.split('\n').filter((l) => l.startsWith('// IR after'));
    expect(headers).toEqual(['// IR after lora', '// IR after lora']);
    // The first dump has only the first adapter; the second dump adds the second.
    const [, first, second] = all.split(/^\/\/ IR after lora\n/m);
    expect(first).toMatch(/q_proj\.lora_A\.default\.weight/);
    expect(first).not.toMatch(/lora_A\.second\.weight/);
    expect(second).toMatch(/v_proj\.lora_A\.second\.weight/);
  });
});
