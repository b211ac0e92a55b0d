import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  defineRecipe,
  loadRecipe,
  methodNames,
  parseRecipe,
  RecipeError,
  recipePipeline,
  registerConflict,
  resolveRecipe,
} from '../../src/methods/index.ts';

import { cli } from '../cli/run-cli.ts';

const root = join(import.meta.dirname, '../..');

function errorOf(json: unknown): RecipeError {
  try {
    parseRecipe(json);
  } catch (e) {
    expect(e).toBeInstanceOf(RecipeError);
    return e as RecipeError;
  }
  throw new Error('expected a RecipeError');
}

describe('recipes', () => {
  it('loads the example and fills defaults (PEFT for LoRA, PyTorch for AdamW)', () => {
    const r = loadRecipe(join(root, 'examples/recipes/lora.json'));
    expect(r.methods[0].options).toMatchObject({
      r: 8,
      lora_alpha: 16,
      bias: 'none',
      adapter_name: 'default',
    });
    expect(r.optimizer).toEqual({
      type: 'adamw',
      lr: 2e-4,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0,
      per_layer: false,
    });
    const d = parseRecipe({ methods: [{ method: 'lora' }] });
    expect(d.optimizer).toEqual({
      type: 'adamw',
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0.01,
      per_layer: false,
    });
    expect(d.schedule).toEqual({ type: 'constant', warmup_steps: 0 });
    expect(d.max_grad_norm).toBeNull();
    expect(d.methods[0].options).toMatchObject({
      r: 8,
      lora_alpha: 8,
      lora_dropout: 0,
      target_modules: ['q_proj', 'v_proj'],
    });
    expect(recipePipeline(r)).toEqual([{ name: 'lora', options: r.methods[0].options }]);
  });

  it('resolveRecipe writes every default as plain JSON that parses back to the same recipe', () => {
    const resolved = resolveRecipe({ methods: [{ method: 'lora', r: 4 }], optimizer: { type: 'sgd' } });
    expect(resolved.methods).toEqual([
      expect.objectContaining({ method: 'lora', r: 4, lora_alpha: 8, use_rslora: false }),
    ]);
    expect(resolved.optimizer).toEqual({
      type: 'sgd',
      lr: 1e-3,
      momentum: 0,
      dampening: 0,
      weight_decay: 0,
      nesterov: false,
      per_layer: false,
    });
    const again = resolveRecipe(parseRecipe(JSON.parse(JSON.stringify(resolved))));
    expect(again).toEqual(resolved);
  });

  it('the TS API is the same check', () => {
    expect(defineRecipe({ methods: [{ method: 'lora', r: 2 }] }).methods[0].options.r).toBe(2);
    expect(() => defineRecipe({ methods: [{ method: 'lora', r: -2 }] })).toThrow(RecipeError);
  });

  it('unknown method: lists the known ones', () => {
    const e = errorOf({ methods: [{ method: 'lorra' }] });
    expect(e.path).toBe('methods[0].method');
    expect(e.message).toBe(
      `methods[0].method: unknown method 'lorra'; did you mean lora? (known: ${methodNames().join(', ')})`,
    );
  });

  it("unknown key in a tagged variant: only that variant's keys are suggested", () => {
    // min_8bit_size belongs to adamw8bit, not adamw: no suggestion of it for adamw.
    const e = errorOf({ methods: [{ method: 'lora' }], optimizer: { type: 'adamw', min_8bit_size: 4096 } });
    expect(e.message).toBe(
      'optimizer.min_8bit_size: unknown key; known keys: type, lr, betas, eps, weight_decay, per_layer',
    );
    const f = errorOf({
      methods: [{ method: 'lora' }],
      optimizer: { type: 'adamw8bit', min_8bit_siz: 4096 },
    });
    expect(f.message).toBe('optimizer.min_8bit_siz: unknown key; did you mean min_8bit_size?');
  });

  it('typo key: names the path and suggests the key', () => {
    const e = errorOf({ methods: [{ method: 'lora' }, { method: 'lora', adapter_name: 'b', rnak: 4 }] });
    expect(e.path).toBe('methods[1].rnak');
    expect(e.message).toBe('methods[1].rnak: unknown key; did you mean r?');
    expect(errorOf({ methods: [{ method: 'lora', lora_alhpa: 4 }] }).message).toMatch(
      /did you mean lora_alpha\?/,
    );
    expect(errorOf({ methods: [{ method: 'lora' }], optimiser: {} }).message).toMatch(
      /^optimiser: unknown key; did you mean optimizer\?/,
    );
    expect(errorOf({ methods: [{ method: 'lora', zzzzzz: 1 }] }).message).toMatch(
      /zzzzzz: unknown key; known keys: r, lora_alpha/,
    );
  });

  it('wrong type and out-of-range values: the path and what was expected', () => {
    expect(errorOf({ methods: [{ method: 'lora', r: 0 }] }).message).toBe(
      'methods[0].r: expected a positive integer, got 0',
    );
    expect(errorOf({ methods: [{ method: 'lora', r: 2.5 }] }).message).toBe(
      'methods[0].r: expected a positive integer, got 2.5',
    );
    expect(errorOf({ methods: [{ method: 'lora', r: '8' }] }).message).toMatch(
      /^methods\[0\]\.r: expected .*got "8"$/,
    );
    expect(errorOf({ methods: [{ method: 'lora', lora_dropout: 1 }] }).message).toBe(
      'methods[0].lora_dropout: expected a number in [0, 1), got 1',
    );
    expect(errorOf({ methods: [{ method: 'lora', bias: 'some' }] }).message).toMatch(
      /bias: expected one of "none", "all", "lora_only"/,
    );
    expect(errorOf({ methods: [{ method: 'lora' }], optimizer: { type: 'adam' } }).message).toBe(
      'optimizer.type: expected one of "adamw", "adamw8bit", "paged_adamw", "paged_adamw8bit", "sgd", got "adam"',
    );
    expect(
      errorOf({ methods: [{ method: 'lora' }], optimizer: { type: 'adamw', betas: [0.9, 1.5] } }).path,
    ).toBe('optimizer.betas[1]');
    expect(errorOf({ methods: [] }).path).toBe('methods');
    expect(errorOf([1]).message).toMatch(/a recipe is a JSON object/);
  });

  it('conflicts are rejected with a reason, and the table is extensible', () => {
    const e = errorOf({ methods: [{ method: 'lora' }, { method: 'lora', r: 4 }] });
    expect(e.path).toBe('methods[1]');
    expect(e.message).toMatch(
      /conflicts with methods\[0\] 'lora': both add the adapter 'default'.*adapter_name/,
    );
    expect(
      parseRecipe({ methods: [{ method: 'lora' }, { method: 'lora', adapter_name: 'b' }] }).methods,
    ).toHaveLength(2);
    expect(
      errorOf({ methods: [{ method: 'lora', target_modules: '.*q_proj', layers_to_transform: 0 }] }).path,
    ).toBe('methods[0].layers_to_transform');
    registerConflict({
      first: 'lora',
      later: 'lora',
      when: (_a, b) => b.adapter_name === 'forbidden',
      reason: 'test reason',
    });
    expect(
      errorOf({ methods: [{ method: 'lora' }, { method: 'lora', adapter_name: 'forbidden' }] }).message,
    ).toMatch(/test reason/);
  });

  it('loadRecipe names the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'recipe-'));
    const f = join(dir, 'bad.json');
    writeFileSync(f, '{"methods": [{"method": "lora", "r": "eight"}]}');
    expect(() => loadRecipe(f)).toThrow(`${f}: methods[0].r: expected`);
    writeFileSync(f, '{"methods": [');
    expect(() => loadRecipe(f)).toThrow(`${f}: not valid JSON`);
    expect(() => loadRecipe(join(dir, 'missing.json'))).toThrow(/missing\.json: cannot read the recipe/);
  });
});

describe('peftc ir', () => {
  const peftc = async (...args: string[]) => {
    const r = await cli(args);
    return { ...r, status: r.code };
  };

  it('prints the IR after the recipe', async () => {
    const r = await peftc(
      'ir',
      '--model',
      'tiny',
      '--recipe',
      join(root, 'examples/recipes/lora.json'),
      '--seq',
      '2',
    );
    expect(r.stderr).not.toMatch(/error/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(
      /param\(\) \{name="model\.layers\.1\.self_attn\.o_proj\.lora_B\.default\.weight"/,
    );
    expect(r.stdout).toMatch(/: i32\[1,2\]/);
  });

  it('exits non-zero with the message on a bad recipe', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'recipe-'));
    const f = join(dir, 'typo.json');
    writeFileSync(f, JSON.stringify({ methods: [{ method: 'lora', rnak: 8 }] }));
    const r = await peftc('ir', '--model', 'tiny', '--recipe', f);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`peftc: error: ${f}: methods[0].rnak: unknown key; did you mean r?`);
    const r2 = await peftc('ir', '--model', 'nope');
    expect(r2.status).toBe(1);
    expect(r2.stderr).toMatch(/--model 'nope' is neither a preset \(.*tiny.*\) nor a model directory/);
  });
});
