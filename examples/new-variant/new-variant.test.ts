// The generic method properties run on a variant registered from outside src/.
import { describe, expect, it } from 'vitest';
import { getMethod, parseRecipe } from '../../src/methods/index.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';
import { runPipeline } from '../../src/passes/index.ts';
import { methodProperties } from '../../test/methods/properties.ts';
import './lora-fa.ts';

describe('lora-fa (examples/new-variant)', () => {
  it('is usable from a recipe: A frozen, B trainable', () => {
    const recipe = parseRecipe({ methods: [{ method: 'lora-fa', r: 4, target_modules: ['q_proj'] }] });
    const g = buildLlama(presetConfig('tiny'), { batch: 1, seq: 2 });
    const { graph } = runPipeline(g, [{ name: 'lora-fa', options: recipe.methods[0].options }]);
    const roles = graph
      .params()
      .filter((p) => String(p.attrs.name).includes('.lora_'))
      .map((p) => [String(p.attrs.name).replace(/^.*(lora_[AB]).*$/, '$1'), p.attrs.role]);
    expect(roles).toEqual([
      ['lora_A', 'frozen'],
      ['lora_B', 'trainable'],
      ['lora_A', 'frozen'],
      ['lora_B', 'trainable'],
    ]);
  });
});

methodProperties(getMethod('lora-fa'));
