// A --plugin for test/cli/adapter-fields.test.ts: a method that trains params but has
// no PEFT save format (LoRA's rewrite registered without `peft`).
import { lora } from '../../src/methods/lora/index.ts';
import { hasMethod, registerMethod } from '../../src/methods/registry.ts';

if (!hasMethod('lora-unsaved'))
  registerMethod({
    ...lora,
    name: 'lora-unsaved',
    description: 'LoRA without a PEFT save format (a test of the no-format path)',
    peft: undefined,
  });
