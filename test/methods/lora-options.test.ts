// LoRA options checks against PEFT's LoraConfig.__post_init__ (tuners/lora/config.py).
import { describe, expect, it } from 'vitest';
import { loraOptions } from '../../src/methods/lora/index.ts';

describe('LoRA options (LoraConfig.__post_init__)', () => {
  it('layers_pattern needs layers_to_transform only when it is truthy (an empty list is fine)', () => {
    // PEFT: `if self.layers_pattern and self.layers_to_transform is None: raise ValueError`.
    expect(loraOptions.safeParse({ layers_pattern: [] }).success).toBe(true);
    const bad = loraOptions.safeParse({ layers_pattern: 'layers' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]).toMatchObject({ path: ['layers_pattern'], message: /layers_to_transform/ });
  });

  it('a string target_modules rejects layers_to_transform / layers_pattern (is not None)', () => {
    const r = loraOptions.safeParse({ target_modules: 'all-linear', layers_to_transform: [0] });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0].path).toEqual(['layers_to_transform']);
    expect(loraOptions.safeParse({ target_modules: '.*q_proj', layers_pattern: [] }).success).toBe(false);
  });
});
