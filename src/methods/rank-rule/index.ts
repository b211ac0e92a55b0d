// rank-rule: a rank (and alpha) per target module from a rule in the recipe, e.g. by layer
// depth `"rank": "min(64, 4 + 4 * depth)"` or by module kind `{"q_proj": 16, "*": 8}`
// (the seed's "Dynamic LoRA"; METHODS.md "Rank allocation"). The entry sits before the
// lora (or dora) entry it shapes: {"method": "rank-rule", "rank": <rule>, "alpha": <rule>}.
// It rewrites nothing itself: once the model is known the recipe binds it (recipe-bind.ts),
// writing the allocation into that lora entry as rank_pattern / alpha_pattern (rank 0:
// exclude_modules), so the result trains, saves and loads as plain PEFT LoRA.
import { z } from 'zod';
import type { LoraOptions } from '../lora/options.ts';
import { hasMethod, type MethodDef, registerMethod } from '../registry.ts';
import { allocateRanks, describeAllocation, type RankRuleOptions, shapeLoraOptions } from './allocate.ts';
import { compileRule, ruleInput } from './rule.ts';

export {
  allocateRanks,
  describeAllocation,
  type ModuleRank,
  modulePattern,
  RankRuleError,
  type RankRuleOptions,
  shapeLoraOptions,
} from './allocate.ts';
export { type Expr, ExprError, evalExpr, parseExpr, printExpr } from './expr.ts';
export { ALPHA_NAMES, RANK_NAMES } from './rule.ts';

export const rankRuleOptions = z
  .strictObject({
    /** Rank per module: whole numbers >= 0 (0 leaves the module without an adapter). */
    rank: ruleInput.optional(),
    /** lora_alpha per module (> 0); may read `rank`, the module's allocated rank. */
    alpha: ruleInput.optional(),
  })
  .superRefine((o, ctx) => {
    if (o.rank === undefined && o.alpha === undefined)
      ctx.addIssue({ code: 'custom', message: 'give a rank rule, an alpha rule, or both' });
    for (const kind of ['rank', 'alpha'] as const) {
      const v = o[kind];
      if (v === undefined) continue;
      for (const p of compileRule(v, kind).problems)
        ctx.addIssue({ code: 'custom', path: p.path, message: p.message });
    }
  });

export const rankRule: MethodDef<RankRuleOptions> = {
  name: 'rank-rule',
  description:
    "rank / alpha per target module from a rule (depth, layers, in, out; a table by module kind), written into the next lora entry's rank_pattern / alpha_pattern",
  options: rankRuleOptions as z.ZodType<RankRuleOptions>,
  // The work happens when the recipe is bound to a model (shapes.bind); the pass is a no-op.
  apply: (g) => ({ graph: g }),
  shapes: {
    methods: ['lora', 'dora'],
    check: (o, target) => {
      for (const [own, key] of [
        ['rank', 'rank_pattern'],
        ['alpha', 'alpha_pattern'],
      ] as const) {
        const pattern = target[key] as Record<string, unknown> | undefined;
        if (o[own] !== undefined && pattern && Object.keys(pattern).length > 0)
          return { key, message: `remove it: the ${own} rule makes ${key}` };
      }
      return undefined;
    },
    bind: (g, o, target) => {
      const lora = target as LoraOptions;
      const alloc = allocateRanks(g, o, lora);
      return { options: shapeLoraOptions(lora, o, alloc), notes: describeAllocation(alloc, lora) };
    },
  },
  properties: {
    // Alone it changes nothing; what it does shows in the lora entry it shapes.
    identityAtInit: true,
    mergeEqualsForward: false,
    mergeUnmergeIdentity: false,
    addsTrainableParams: false,
    changesGraph: false,
  },
  fixtures: { options: () => ({ rank: 'min(8, 2 + 2 * depth)' }) },
};

if (!hasMethod('rank-rule')) registerMethod(rankRule);
