// The researcher's path through the CLI: a method registered in a module outside src/
// (examples/new-variant/lora-fa.ts) is usable from a recipe with --plugin.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { peftc } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-plugin-'));
const recipe = join(dir, 'lora-fa.json');
writeFileSync(
  recipe,
  JSON.stringify({ methods: [{ method: 'lora-fa', r: 4, target_modules: ['q_proj', 'v_proj'] }] }),
);

describe('--plugin', () => {
  it('loads an outside method for ir and train', () => {
    const ir = peftc([
      'ir',
      '--model',
      'tiny',
      '--recipe',
      recipe,
      '--seq',
      '2',
      '--plugin',
      'examples/new-variant/lora-fa.ts',
    ]);
    expect(ir.code).toBe(0);
    expect(ir.stdout).toMatch(
      /name="model\.layers\.0\.self_attn\.q_proj\.lora_A\.default\.weight", role="frozen"/,
    );
    const out = join(dir, 'run');
    const args = `--plugin examples/new-variant/lora-fa.ts train --model examples/models/tiny-llama --recipe ${recipe} --data examples/data/tiny-instruct.jsonl --out ${out} --steps 2 --batch 2 --seq 32 --backend cpu --no-plot`;
    const train = peftc(args.split(' '));
    expect(train.stderr).toBe('');
    expect(train.code).toBe(0);
  });

  it('without the plugin the method is unknown; a missing plugin is named', () => {
    const r = peftc(['ir', '--model', 'tiny', '--recipe', recipe]);
    expect(r.code).toBe(1);
    // The child process knows the built-in methods only. This worker's registry may hold
    // more (lora-fa from the new-variant example, test-* methods: files share modules under
    // vitest's isolate: false), so the list is checked against the built-ins it must name.
    const known = /methods\[0\]\.method: unknown method 'lora-fa' \(known: ([^)]*)\)/.exec(r.stderr);
    expect(known, r.stderr).not.toBeNull();
    const names = known![1].split(', ');
    expect(names).not.toContain('lora-fa');
    expect(names).toEqual(expect.arrayContaining(['lora', 'qlora', 'dora', 'adalora', 'galore', 'longlora']));
    const m = peftc(['ir', '--model', 'tiny', '--plugin', join(dir, 'nope.ts')]);
    expect(m.code).toBe(1);
    expect(m.stderr).toMatch(/--plugin .*nope\.ts: no such file/);
  });
});
