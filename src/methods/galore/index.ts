// GaLore (Zhao et al. 2024; official jiaweizzhao/GaLore at 2cc66f8, galore_torch/adamw.py,
// adamw8bit.py, galore_projector.py; facts in ../../../shared/METHODS.md "GaLore"): the
// targeted linears' weights train at full rank while their gradients are projected to rank r
// for the optimizer, whose Adam moments live in the low-rank shape. Recipe entry:
// {"method": "galore", "target_modules": [...], "rank": 128, "update_proj_gap": 200,
//  "scale": 0.25, "proj_type": "std"} (the official GaLoreAdamW group keys).
// The parts: apply marks the weights trainable (nothing else is trained), paramGroups puts
// them in a group with the projected update (rule.ts), and the host session refreshes the
// projector by SVD (session.ts). The result is the full model: runs save a Hugging Face
// model directory (savesModel), not an adapter.
import { type Rule, rewrite } from '../../passes/rewrite/engine.ts';
import { registerConflict } from '../conflicts.ts';
import { hasMethod, type MethodDef, MethodError, type ParamGroup, registerMethod } from '../registry.ts';
import { type GaloreOptions, galoreOptions } from './options.ts';
import { galoreParams } from './params.ts';
import { galoreRule } from './rule.ts';
import { startGalore } from './session.ts';

export {
  type GaloreOptions,
  galoreOptions,
  type ProjType,
  projection,
  projectionSide,
  type Side,
} from './options.ts';
export { type GaloreParam, galoreParams } from './params.ts';
export { projectorsOf } from './projector.ts';
export { type GaloreRuleOptions, galoreRule, HOLD_STATE, projectorKinds } from './rule.ts';
export { refreshesAt, startGalore } from './session.ts';

export const GALORE_GROUP = 'galore';

export const galore: MethodDef<GaloreOptions> = {
  name: 'galore',
  description:
    'GaLore: targeted weights trained at full rank, gradients projected to rank r (SVD every update_proj_gap steps) for Adam moments in low rank (official GaLoreAdamW keys)',
  options: galoreOptions,
  apply: (g, o) => {
    const params = galoreParams(g, o);
    const names = new Set(params.map((p) => p.name));
    for (const p of g.params())
      if (names.has(String(p.attrs.name)) && p.attrs.role !== 'frozen')
        throw new MethodError(
          `galore: '${String(p.attrs.name)}' is already ${String(p.attrs.role)}; GaLore trains frozen base weights`,
        );
    const rules: Rule[] = [
      [
        { op: 'param', where: (n) => names.has(String(n.attrs.name)) && n.attrs.role === 'frozen' },
        (m, b) => b.emit('param', [], { ...m.node.attrs, role: 'trainable' } as never, m.node.scope),
        'galore-trainable',
      ],
    ];
    return { graph: rewrite(g, rules, { once: true }).graph };
  },
  paramGroups: (groups, o, ctx) => {
    const all = groups.flatMap((g) => g.params);
    const mine = all.filter((n) => n.endsWith('.weight') && isGaloreShape(ctx.shapeOf(n)));
    // The refresh probe (session.ts) holds only GaLore weights still: anything else trained
    // alongside would take an extra update every update_proj_gap steps.
    const others = all.filter((n) => !mine.includes(n));
    if (others.length)
      throw new MethodError(
        `galore: the recipe also trains ${others[0]}${others.length > 1 ? ` and ${others.length - 1} more` : ''}, which GaLore's projector refresh would step twice; train only the GaLore targets (put other methods in another run)`,
      );
    const opt = ctx.optimizer;
    if (opt && opt.type !== 'adamw' && opt.type !== 'adamw8bit')
      throw new MethodError(
        `galore: optimizer type '${opt.type}' has no GaLore variant; use "adamw" (GaLoreAdamW) or "adamw8bit" (GaLoreAdamW8bit)`,
      );
    const group: ParamGroup = {
      name: GALORE_GROUP,
      params: mine,
      rule: galoreRule({
        galore: o,
        type: opt?.type === 'adamw8bit' ? 'adamw8bit' : 'adamw',
        betas: opt?.betas ?? [0.9, 0.999],
        // GaLoreAdamW's default is 1e-6; the recipe's eps (default 1e-8) is what runs.
        eps: opt?.eps ?? 1e-6,
        minEightBitSize: opt?.min_8bit_size,
      }),
    };
    return [group];
  },
  train: {
    readsGradients: true,
    start: (graph, o, ctx) => startGalore(graph, o, ctx),
  },
  savesModel: true,
  properties: {
    identityAtInit: true,
    mergeEqualsForward: false,
    mergeUnmergeIdentity: false,
    // It makes existing weights trainable; it adds none.
    addsTrainableParams: false,
  },
  fixtures: { options: ({ r }) => ({ target_modules: ['q_proj', 'v_proj', 'down_proj'], rank: r }) },
};

function isGaloreShape(s: readonly number[]): boolean {
  return s.length === 2;
}

if (!hasMethod('galore')) {
  registerMethod(galore);
  for (const other of ['lora', 'dora', 'adalora', 'qlora'])
    registerConflict({
      first: 'galore',
      later: other,
      eitherOrder: true,
      reason:
        other === 'qlora'
          ? 'GaLore trains the base weights at full precision, and qlora freezes them in 4 bits; use one of them'
          : `GaLore trains the base weights themselves at full rank (its result is the whole model), while ${other} freezes them and trains an adapter beside them; use one of them`,
    });
}
