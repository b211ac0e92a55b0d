// Methods own their structure: merge, disable and save find adapters through the
// structures methods register, and adapter params no structure recognises are an error
// naming the module, never skipped.
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.ts';
import {
  adapterSites,
  checkAdapters,
  disableAdapters,
  mergeAdapters,
  setActiveAdapters,
} from '../../src/methods/index.ts';
import { injectLora, loraOptions } from '../../src/methods/lora/index.ts';
import { buildLlama, presetConfig } from '../../src/models/llama/index.ts';

const llama = buildLlama(presetConfig('tiny'), { batch: 1, seq: 4 });
const M = 'model.layers.0.self_attn.q_proj';

/** A linear with a hand-made "adapter" whose params are LoRA-named but in a shape nobody registered. */
function strayAdapter() {
  const b = new GraphBuilder();
  const x = b.input('x', 'f32', [2, 8]);
  const W = b.atScope(M, () => b.param(`${M}.weight`, 'f32', [8, 8], 'frozen'));
  const y = b.atScope(M, () => b.linear(x, W));
  const E = b.atScope(`${M}.lora_E.default`, () =>
    b.param(`${M}.lora_E.default.weight`, 'f32', [8], 'trainable'),
  );
  return b.build({ y: b.mul(y, E) });
}

describe('adapter structures', () => {
  it('finds LoRA adapters by the structure LoRA registers, with module, adapter, base and params', () => {
    const o = loraOptions.parse({ r: 2, target_modules: ['q_proj'] });
    const { graph } = injectLora(llama, o);
    const sites = adapterSites(graph);
    expect(sites.map((s) => [s.structure.name, s.module, s.adapter])).toEqual([
      ['lora', M, 'default'],
      ['lora', 'model.layers.1.self_attn.q_proj', 'default'],
    ]);
    expect(sites[0].params).toEqual([`${M}.lora_A.default.weight`, `${M}.lora_B.default.weight`]);
    expect(sites[0].base.op).toBe('linear');
  });

  it('adapter params in a structure no method registered are an error naming the module, for merge, disable and set-active', () => {
    const g = strayAdapter();
    expect(() => checkAdapters(g, 'save')).toThrow(
      new RegExp(`save: the adapter params of ${M.replaceAll('.', '\\.')} \\(e\\.g\\. ${M}\\.lora_E`),
    );
    expect(() => mergeAdapters(g, undefined)).toThrow(/merge: the adapter params of .*q_proj.*registered/);
    expect(() => disableAdapters(g)).toThrow(/disable: the adapter params/);
    expect(() => setActiveAdapters(g, ['default'])).toThrow(/no adapter named 'default'|set-active/);
  });
});
