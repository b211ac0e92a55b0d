// Recipe `param_groups`: params matched by a group train with that group's lr and
// weight decay (torch.optim param groups), others with the optimizer's.
import { describe, expect, it } from 'vitest';
import { hasMethod, parseRecipe, registerMethod } from '../../src/methods/index.ts';
import { lora } from '../../src/methods/lora/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { unfuseElementwise } from '../../src/passes/fuse/elementwise.ts';
import { describeGroups, prepareRun } from '../../src/train/setup.ts';

const model = loadModel('examples/models/tiny-llama');

function recipe(param_groups: unknown) {
  return parseRecipe({
    methods: [{ method: 'lora', r: 2, lora_alpha: 4, target_modules: ['q_proj', 'v_proj'] }],
    optimizer: { type: 'adamw', lr: 1e-3, weight_decay: 0.01 },
    param_groups,
  });
}

/** The scale factors the step graph applies to the `lr` input, per param update scope. */
function lrScales(fused: ReturnType<typeof prepareRun>['step']): Map<string, number[]> {
  const step = unfuseElementwise(fused);
  const out = new Map<string, number[]>();
  const lrId = step.inputs().find((n) => n.attrs.name === 'lr')!.id;
  for (const n of step.nodes) {
    if (n.op === 'scale' && n.inputs[0] === lrId) {
      out.set(n.scope, [...(out.get(n.scope) ?? []), Number(n.attrs.factor)]);
    }
  }
  return out;
}

describe('recipe param_groups', () => {
  it('gives matching params their own lr and weight decay', () => {
    const run = prepareRun(
      model,
      recipe([{ params: '.*lora_B.*', lr: 1.6e-2, weight_decay: 0 }]),
      { batch: 1, seq: 8 },
      { seed: 0 },
    );
    const scales = [...lrScales(run.step).values()].flat();
    // lora_B at 16x the base lr (LoRA+ style): one shared lr*16 node.
    expect(scales).toContain(16);
    // Weight decay: the default group decays (lr * 0.01), the B group does not.
    const wd = unfuseElementwise(run.step).nodes.filter(
      (n) => n.op === 'scale' && Number(n.attrs.factor) === 0.01,
    );
    expect(wd.length).toBeGreaterThan(0);
  });

  it('the run lists its groups, one trainer log line each; none for the single default group', () => {
    const run = prepareRun(
      model,
      recipe([{ name: 'B', params: '.*lora_B.*', lr: 1.6e-2, weight_decay: 0 }]),
      { batch: 1, seq: 8 },
      { seed: 0 },
    );
    expect(describeGroups(run.groups, 1e-3)).toEqual([
      'optimizer group B: lr 0.016 (16 x 0.001), weight_decay 0, 4 params',
      'optimizer group default: lr 0.001, weight_decay 0.01, 4 params',
    ]);
    const plain = prepareRun(model, recipe([]), { batch: 1, seq: 8 }, { seed: 0 });
    expect(plain.groups.map((g) => [g.name, g.params.length])).toEqual([['default', 8]]);
    expect(describeGroups(plain.groups, 1e-3)).toEqual([]);
  });

  it('rejects a group that matches nothing, naming it', () => {
    expect(() =>
      prepareRun(model, recipe([{ params: 'nothing.*' }]), { batch: 1, seq: 8 }, { seed: 0 }),
    ).toThrow(/param_groups\[0\]: "nothing\.\*" matches no trainable parameter/);
  });

  it('validates the keys', () => {
    expect(() => recipe([{ params: [], lr: 1 }])).toThrow(/param_groups\[0\]\.params/);
    expect(() => recipe([{ params: 'x', lrr: 1 }])).toThrow(
      /param_groups\[0\]\.lrr: unknown key; did you mean lr\?/,
    );
  });
});

describe('a method param group with its own update rule', () => {
  it('the optimizer pass updates that group with the method rule, the rest with the recipe optimizer', () => {
    // A method (LoRA's rewrite) whose paramGroups moves lora_B to a group with a rule of its
    // own: plain SGD without moments, marked by a scale the test can find.
    if (!hasMethod('test-rule-lora'))
      registerMethod({
        ...lora,
        name: 'test-rule-lora',
        paramGroups: (groups) => {
          const all = groups.flatMap((g) => g.params);
          return [
            {
              name: 'own-rule',
              params: all.filter((n) => n.includes('.lora_B.')),
              rule: ({ b, value, grad }) => b.sub(value, b.scale(grad, 0.125)),
            },
            { name: 'rest', params: all.filter((n) => !n.includes('.lora_B.')) },
          ];
        },
      });
    const run = prepareRun(
      model,
      parseRecipe({
        methods: [{ method: 'test-rule-lora', r: 2, target_modules: ['q_proj'] }],
        optimizer: { type: 'adamw', lr: 1e-3 },
      }),
      { batch: 1, seq: 8 },
      { seed: 0 },
    );
    expect(run.groups.map((g) => [g.name, g.params.length, typeof g.rule])).toEqual([
      ['own-rule', 2, 'function'],
      ['rest', 2, 'undefined'],
    ]);
    const states = run.step
      .params()
      .filter((p) => p.attrs.role === 'state')
      .map((p) => String(p.attrs.name));
    // AdamW moments for lora_A only; the rule's group keeps none.
    expect(states.some((n) => n.includes('.lora_A.'))).toBe(true);
    expect(states.some((n) => n.includes('.lora_B.'))).toBe(false);
    expect(
      unfuseElementwise(run.step).nodes.filter((n) => n.op === 'scale' && n.attrs.factor === 0.125),
    ).toHaveLength(2);
  });
});
