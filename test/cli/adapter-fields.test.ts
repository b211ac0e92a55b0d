// Issue 17 item 3 through the real CLI: an adapter field that changes the math is refused
// by logits, merge and train --init-adapter alike (one line: file, field, value);
// train --init-adapter validates the adapter as logits does; a recipe's lora_bias says
// "not supported yet"; a method with no PEFT save format says so instead of claiming an
// adapter, and one that has one (the LoRA-FA example, LoRA's format) writes it.
// Kept to one spawn per behaviour; the rest runs in process.
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { attachPeftAdapter, savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../src/models/llama/index.ts';
import { cli, peftc } from './run-cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'peftc-adapter-fields-'));
const model = 'examples/models/tiny-llama';
const data = 'examples/data/tiny-instruct.jsonl';
const tokens = join(dir, 'tokens.json');
const recipe = join(dir, 'recipe.json');
const adapter = join(dir, 'adapter');
const trainArgs = (out: string) =>
  `train --model ${model} --data ${data} --out ${out} --steps 2 --batch 2 --seq 16 --backend cpu --no-plot`.split(
    ' ',
  );

const logitsArgs = (a: string, out = 'l.safetensors') => [
  'logits',
  '--model',
  model,
  '--adapter',
  a,
  '--tokens',
  tokens,
  '--out',
  join(dir, out),
  '--backend',
  'cpu',
];

/** A copy of the adapter with adapter_config.json fields patched. */
function patched(name: string, fields: Record<string, unknown>): string {
  const to = join(dir, name);
  cpSync(adapter, to, { recursive: true, force: true });
  const cfg = join(to, 'adapter_config.json');
  writeFileSync(cfg, JSON.stringify({ ...JSON.parse(readFileSync(cfg, 'utf8')), ...fields }));
  return to;
}

/** In-process (cli): the refusal needs no process of its own. */
async function failsWith(args: string[], line: RegExp) {
  const r = await cli(args);
  expect(r.stderr).toMatch(line);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.code).toBe(1);
}

beforeAll(() => {
  const c = presetConfig('tiny');
  const o = loraOptions.parse({ r: 4, target_modules: ['q_proj', 'v_proj'], init_lora_weights: false });
  const inj = injectLora(buildLlama(c, { batch: 1, seq: 4 }), o, randomLlamaWeights(c, 1));
  const w = bindParams(inj.graph, inj.weights!, 3);
  savePeftAdapter(adapter, inj.graph, (n) => w.get(n)!, o, model);
  writeFileSync(tokens, JSON.stringify([[256, 1, 2, 3]]));
  writeFileSync(
    recipe,
    JSON.stringify({ methods: [{ method: 'lora', r: 4, target_modules: ['q_proj', 'v_proj'] }] }),
  );
});

describe('adapter fields that change the math', () => {
  // One line naming file, field and value, from each command that takes an adapter.
  const cordaSays = () =>
    new RegExp(
      `^peftc: error: ${join(dir, 'corda')}/adapter_config\\.json: 'init_lora_weights': "corda" means CorDA .* is not supported yet; `,
    );
  const corda = () => patched('corda', { init_lora_weights: 'corda' });
  it('logits --adapter refuses init_lora_weights "corda"', async () => {
    await failsWith(logitsArgs(corda()), cordaSays());
  });
  it('merge --adapter refuses it', async () => {
    await failsWith(
      ['merge', '--model', model, '--adapter', corda(), '--out', join(dir, 'merged')],
      cordaSays(),
    );
  });
  it('train --init-adapter refuses it', async () => {
    await failsWith(
      [...trainArgs(join(dir, 'run-corda')), '--recipe', recipe, '--init-adapter', corda()],
      cordaSays(),
    );
  });

  it('train --init-adapter validates the adapter as logits does (target_modules the model lacks)', async () => {
    const lacks = patched('lacks', { target_modules: ['nope_proj'] });
    const says = /lacks\/adapter_config\.json: target modules \["nope_proj"\] not found in the model/;
    // (logits' own refusal of it is test/models/adapters.test.ts, in process.)
    await failsWith(
      [...trainArgs(join(dir, 'run-lacks')), '--recipe', recipe, '--init-adapter', lacks],
      says,
    );
  });

  it('a recipe with lora_bias: true says "not supported yet", not "unknown key"', async () => {
    const bias = join(dir, 'lora-bias.json');
    writeFileSync(bias, JSON.stringify({ methods: [{ method: 'lora', lora_bias: true }] }));
    await failsWith(
      ['ir', '--model', 'tiny', '--recipe', bias, '--seq', '2'],
      /methods\[0\]\.lora_bias: a bias on lora_B .* is not supported yet/,
    );
    // Off, as in a LoraConfig copied from PEFT: accepted.
    expect(
      loraOptions.safeParse({ use_dora: false, lora_bias: false, layer_replication: null }).success,
    ).toBe(true);
  });
});

describe('saving asks the method', () => {
  it('a method with no PEFT save format says so, at the start and in the summary, and claims no adapter', () => {
    const r2 = join(dir, 'unsaved.json');
    writeFileSync(
      r2,
      JSON.stringify({ methods: [{ method: 'lora-unsaved', r: 2, target_modules: ['q_proj'] }] }),
    );
    const out = join(dir, 'run-unsaved');
    const r = peftc(['--plugin', 'test/cli/no-peft-format-plugin.ts', ...trainArgs(out), '--recipe', r2]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const note = `method 'lora-unsaved' has no PEFT save format: no adapter is written for it; its trained parameters are saved only in ${out}/checkpoint-2 (a peftc checkpoint`;
    const lines = r.stdout.trim().split('\n');
    expect(lines.filter((l) => l.includes(note))).toHaveLength(2);
    expect(lines[lines.length - 1]).toContain(note);
    expect(r.stdout).not.toContain('adapter in');
    expect(existsSync(join(out, 'adapter_config.json'))).toBe(false);
    expect(existsSync(join(out, 'checkpoint-2'))).toBe(true);
  });

  it("the LoRA-FA example saves in LoRA's PEFT format, which logits loads", () => {
    const r2 = join(dir, 'lora-fa.json');
    writeFileSync(
      r2,
      JSON.stringify({ methods: [{ method: 'lora-fa', r: 2, target_modules: ['q_proj', 'v_proj'] }] }),
    );
    const out = join(dir, 'run-lora-fa');
    const r = peftc(['--plugin', 'examples/new-variant/lora-fa.ts', ...trainArgs(out), '--recipe', r2]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain(`adapter in ${out}`);
    // What logits --adapter attaches, in process.
    const c = presetConfig('tiny');
    const a = attachPeftAdapter(buildLlama(c, { batch: 1, seq: 4 }), randomLlamaWeights(c, 1), out);
    expect(a.tensors.size).toBe(8);
  });
});
