// LoRA-FA (Zhang et al. 2023, "LoRA-FA: Memory-efficient Low-rank Adaptation"):
// LoRA with A frozen at its random init; only B trains. A variant the library does not
// ship, added from outside src/ as LoRA's rewrite plus one rule, through the public
// registries. Merge is LoRA's (the math is the same); unmerge re-adds the branch, so it
// must freeze A again (the generic merge-unmerge property test caught exactly that).
// Saving is LoRA's too (LoRA's `peft` hooks, kept by the spread): the file is a PEFT LoRA
// adapter with the frozen A beside the trained B.
import {
  injectLora,
  type LoraOptions,
  lora,
  loraOptions,
  unmergeLora,
} from '../../src/methods/lora/index.ts';
import { hasMethod, registerMethod } from '../../src/methods/registry.ts';
import { type Rule, rewrite } from '../../src/passes/rewrite/engine.ts';

/** The one new rule: every lora_A param becomes frozen. */
export const freezeA: Rule[] = [
  [
    {
      op: 'param',
      attrs: { role: 'trainable' },
      where: (n) => /\.lora_A\.[^.]+\.weight$/.test(String(n.attrs.name)),
    },
    (m, b) => b.emit('param', [], { ...m.node.attrs, role: 'frozen' }),
    'lora-fa-freeze-A',
  ],
];

if (!hasMethod('lora-fa'))
  registerMethod<LoraOptions>({
    ...lora,
    name: 'lora-fa',
    description: 'LoRA-FA: LoRA with A frozen (only B is trained)',
    options: loraOptions,
    apply: (g, o, ctx) => {
      const r = injectLora(g, o, ctx.weights);
      return { graph: rewrite(r.graph, freezeA).graph, weights: r.weights };
    },
    unmerge: (g, o, ctx) => {
      const r = unmergeLora(g, o, ctx.weights);
      return { graph: rewrite(r.graph, freezeA).graph, weights: r.weights };
    },
  });
