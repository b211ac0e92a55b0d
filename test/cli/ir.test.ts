// `peftc ir` for compiler researchers: the phase graphs (--train/--eval), --print-after
// with a diff mode, --stats, --kernels, and the usage errors. Most cases call the
// command's function in-process; one real spawn per item that is new on the CLI.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type IrOptions, runIr } from '../../src/cli/commands/ir.ts';
import { UsageError } from '../../src/util/errors.ts';
import { peftc } from './run-cli.ts';

const R = join(import.meta.dirname, '..', '..', 'examples', 'recipes', 'lora-tiny.json');

async function ir(o: Partial<IrOptions>): Promise<string> {
  let out = '';
  await runIr({ model: 'tiny', seq: 8, batch: 1, recipe: R, ...o }, (s) => {
    out += s;
  });
  return out;
}

describe('peftc ir (real command)', () => {
  it('--train --print-after autodiff prints the graph after the train phase autodiff', async () => {
    const r = peftc(['ir', '--model', 'tiny', '--recipe', R, '--train', '--print-after', 'autodiff']);
    expect(r.stderr).not.toMatch(/error/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^\/\/ pipeline \(train\): lora -> autodiff -> optimizer -> fuse-dequant -> fuse-rope-layout -> fuse-elementwise -> fuse-epilogue -> fuse-dropout -> fuse-operand-map$/m,
    );
    expect(r.stdout).toMatch(/^\/\/ IR after autodiff$/m);
    expect(r.stdout).toMatch(/"grad:model\.layers\.0\.self_attn\.q_proj\.lora_A\.default\.weight"=%\d+/);
  });

  it('an unknown --print-after name is a usage error listing the passes that would run', async () => {
    const r = peftc(['ir', '--model', 'tiny', '--recipe', R, '--train', '--print-after', 'autodif']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--print-after: no pass named autodif in the pipeline \(passes: lora, autodiff, optimizer, fuse-dequant, fuse-rope-layout, fuse-elementwise, fuse-epilogue, fuse-dropout, fuse-operand-map; or all, change, diff\)/,
    );
  });
});

describe('peftc ir', () => {
  it('prints the final IR by default, as before', async () => {
    const out = await ir({});
    expect(out).toMatch(/^graph \{\n/);
    expect(out).not.toMatch(/\/\/|grad:/);
    expect(out).toMatch(/lora_A/);
  });

  it('--eval lists the eval phase; its graph has no dropout', async () => {
    const out = await ir({ eval: true, printAfter: 'all' });
    expect(out).toMatch(
      /^\/\/ pipeline \(eval\): lora -> fuse-dequant -> eval-mode -> fuse-rope-layout -> fuse-elementwise -> fuse-epilogue$/m,
    );
    const final = out.slice(out.lastIndexOf('// IR after eval-mode'));
    expect(final).not.toMatch(/= dropout\(/);
  });

  it('--print-after diff (and --diff) prints only the nodes each pass added, removed or rewired', async () => {
    const out = await ir({ diff: true });
    const full = await ir({});
    expect(out).toMatch(/^\/\/ diff after lora\n\/\/ 98 added, 0 removed, 14 changed$/m);
    const nodeLines = out.split('\n').filter((l) => /^[+~-] %/.test(l));
    expect(nodeLines).toHaveLength(98 + 14);
    // Untouched nodes (the embedding, the norms) do not appear; the full IR has them.
    expect(full).toMatch(/embedding\(/);
    expect(out).not.toMatch(/embedding\(|rmsnorm\(/);
    expect(await ir({ printAfter: 'diff' })).toBe(out);
    await expect(ir({ diff: true, printAfter: 'all' })).rejects.toThrow(/--diff is --print-after diff/);
  });

  it('--stats prints a table of pass, ms, node count and op-count changes', async () => {
    const out = await ir({ train: true, stats: true });
    const lines = out.split('\n');
    expect(lines[1]).toMatch(/^pass\s+ms\s+nodes\s+ops$/);
    expect(out).toMatch(/^\(model graph\)\s+\d+$/m);
    expect(out).toMatch(
      /^lora\s+\d+\.\d\d\s+\d+\s+\+28 linear \+28 param \+14 add \+14 dropout \+14 scale$/m,
    );
    expect(out).toMatch(/^autodiff\s+\d+\.\d\d\s+\d+\s+\+\d+ reshape \+\d+ matmul/m);
    expect(out).toMatch(/^optimizer\s+\d+\.\d\d\s+\d+\s+.*\+56 param/m);
    expect(out).toMatch(/^fuse-dequant\s+\d+\.\d\d\s+\d+\s+\(no change\)$/m);
    expect(out).toMatch(/^\/\/ total \d+\.\d\d ms over 9 passes$/m);
    // A view of its own: no final IR.
    expect(out).not.toMatch(/graph \{/);
  });

  it('--kernels lists the WebGPU dispatches of the final graph', async () => {
    const out = await ir({ eval: true, kernels: true });
    expect(out).toMatch(
      /^\/\/ WebGPU kernels for .+: \d+ dispatches, \d+ distinct pipelines; \d+ nodes need none/m,
    );
    expect(out).toMatch(/^\s+#\s+kernel\s+workgroups\s+size\s+node\s+cache key$/m);
    expect(out).toMatch(
      /^\s+0\s+embedding\s+\d+\s+\d+\s+%\d+ embedding @model\.embed_tokens\s+\{"program":/m,
    );
    expect(out).toMatch(
      /^\s+\d+\s+linear\s+\d+\s+[\dx]+\s+%\d+ linear @model\.layers\.0\.self_attn\.q_proj\.lora_A\.default\s/m,
    );
  });

  it('refuses --train with --eval, and --train without a recipe', async () => {
    await expect(ir({ train: true, eval: true })).rejects.toThrow(UsageError);
    await expect(ir({ train: true, eval: true })).rejects.toThrow(/--train and --eval pick one graph/);
    await expect(ir({ train: true, recipe: undefined })).rejects.toThrow(/--train needs --recipe/);
  });

  it('an unknown --print-after name lists the passes of the chosen graph', async () => {
    await expect(ir({ eval: true, printAfter: 'autodiff' })).rejects.toThrow(
      /no pass named autodiff in the pipeline \(passes: lora, fuse-dequant, eval-mode, fuse-rope-layout, fuse-elementwise, fuse-epilogue; or all, change, diff\)/,
    );
  });
});
