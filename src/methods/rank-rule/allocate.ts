// A rank-rule's allocation on a model: the rank and alpha of every module the following
// lora entry targets, and that entry's options rewritten to plain PEFT LoRA (rank_pattern,
// alpha_pattern; rank 0 = exclude_modules). PEFT's scale per module is then alpha_m / r_m
// (alpha_m / sqrt(r_m) with use_rslora), which is what the lora pass builds from the same options.
import type { Graph, Node } from '../../ir/graph.ts';
import type { LoraOptions } from '../lora/options.ts';
import { candidateModules, layerIndex, patternValue, selectTargets } from '../targets.ts';
import { evalExpr, namesIn } from './expr.ts';
import { ANY_KIND, compileRule, type Rule, type RuleInput, ruleFor } from './rule.ts';

export interface RankRuleOptions {
  readonly rank?: RuleInput;
  readonly alpha?: RuleInput;
}

export interface ModuleRank {
  readonly module: string;
  /** The last part of the module name (`q_proj`). */
  readonly kind: string;
  /** Layer index (PEFT's, from the name); undefined outside the layers (lm_head). */
  readonly depth?: number;
  readonly in: number;
  readonly out: number;
  /** 0: the module is left without an adapter. */
  readonly rank: number;
  readonly alpha: number;
  /** Trainable params the adapter adds: r (in + out), plus the DoRA magnitude. */
  readonly params: number;
  /** Which values a rule gave (the others are the lora entry's: r / rank_pattern, lora_alpha / alpha_pattern). */
  readonly ruled: { readonly rank: boolean; readonly alpha: boolean };
}

export class RankRuleError extends Error {
  override name = 'RankRuleError';
}

const kindOf = (module: string) => module.slice(module.lastIndexOf('.') + 1);

/** in / out features: a linear's input and output widths, an embedding's [vocab, dim]. */
function features(g: Graph, n: Node): { in: number; out: number } {
  if (n.op === 'embedding') {
    const [vocab, dim] = g.node(n.inputs[0]).type.shape;
    return { in: vocab, out: dim };
  }
  const x = g.node(n.inputs[0]).type.shape;
  return { in: x[x.length - 1], out: n.type.shape[n.type.shape.length - 1] };
}

function compiled(v: RuleInput | undefined, kind: 'rank' | 'alpha'): Rule | undefined {
  if (v === undefined) return undefined;
  const { rule, problems } = compileRule(v, kind);
  if (!rule) throw new RankRuleError(`${problems[0].path.join('.')}: ${problems[0].message}`);
  return rule;
}

function describeVars(vars: Readonly<Record<string, number | undefined>>): string {
  return Object.entries(vars)
    .filter(([k, v]) => v !== undefined && k !== 'r' && k !== 'lora_alpha')
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** One rule's value for one module, checked by `check` (what a good value is). */
function ruleValue(
  rule: Rule,
  m: { module: string; kind: string },
  vars: Readonly<Record<string, number | undefined>>,
  check: (x: number) => string | undefined,
): number | undefined {
  const hit = ruleFor(rule, m.kind);
  if (!hit) return undefined;
  for (const name of namesIn(hit.expr))
    if (vars[name] === undefined)
      throw new RankRuleError(
        `${hit.where}: reads ${name}, which ${m.module} does not have (it is outside the model's layers); give '${m.kind}' a table entry of its own or leave it out of the lora entry's targets`,
      );
  const x = evalExpr(hit.expr, vars as Record<string, number>);
  const bad = check(x);
  if (bad)
    throw new RankRuleError(`${hit.where}: gives ${x} for ${m.module} (${describeVars(vars)}); ${bad}`);
  return x;
}

const rankCheck = (x: number) =>
  !Number.isFinite(x) || x < 0 || !Number.isInteger(x)
    ? 'a rank is a whole number >= 0 (0 leaves the module untouched); round with round(...), floor(...) or ceil(...)'
    : undefined;
const alphaCheck = (x: number) => (!Number.isFinite(x) || x <= 0 ? 'an alpha is a number > 0' : undefined);

/** Every target module of `lora` with its rank and alpha under the rules. */
export function allocateRanks(g: Graph, o: RankRuleOptions, lora: LoraOptions): ModuleRank[] {
  const rankRule = compiled(o.rank, 'rank');
  const alphaRule = compiled(o.alpha, 'alpha');
  const seen = new Set<string>();
  const targets = selectTargets(g, lora, ['linear', 'embedding']).filter(
    (n) => !seen.has(n.scope) && seen.add(n.scope),
  );
  const kinds = new Set(targets.map((n) => kindOf(n.scope)));
  for (const [name, rule] of [
    ['rank', rankRule],
    ['alpha', alphaRule],
  ] as const)
    for (const key of rule?.byKind.keys() ?? [])
      if (key !== ANY_KIND && !kinds.has(key))
        throw new RankRuleError(
          `${name}.${key}: no module of kind '${key}' among the lora entry's targets (their kinds: ${[...kinds].join(', ')})`,
        );
  const depths = candidateModules(g, ['linear', 'embedding'])
    .map((n) => layerIndex(n.scope, lora.layers_pattern))
    .filter((d): d is number => d !== undefined);
  const layers = depths.length ? Math.max(...depths) + 1 : undefined;
  return targets.map((n) => {
    const module = n.scope;
    const kind = kindOf(module);
    const f = features(g, n);
    const vars = {
      depth: layerIndex(module, lora.layers_pattern),
      layers,
      ...f,
      r: lora.r,
      lora_alpha: lora.lora_alpha,
    };
    const m = { module, kind };
    const ruledRank = rankRule && ruleValue(rankRule, m, vars, rankCheck);
    const rank = ruledRank ?? patternValue(lora.rank_pattern, module, lora.r);
    const ruledAlpha =
      rank > 0 && alphaRule ? ruleValue(alphaRule, m, { ...vars, rank }, alphaCheck) : undefined;
    const alpha = ruledAlpha ?? patternValue(lora.alpha_pattern, module, lora.lora_alpha);
    const params = rank * (f.in + f.out) + (rank > 0 && lora.use_dora ? f.out : 0);
    const ruled = { rank: ruledRank !== undefined, alpha: ruledAlpha !== undefined };
    return { module, kind, depth: vars.depth, in: f.in, out: f.out, rank, alpha, params, ruled };
  });
}

const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Pattern keys for per-module values: the module names as PEFT itself writes them, unless
 * one would also match a module of another value under PEFT's `(.*\.)?(key)$` (then
 * escaped). Checked per key, so the order of the keys (PEFT takes the first match) does not matter.
 */
export function modulePattern<T>(
  entries: readonly [string, T][],
  modules: readonly string[],
  fallback: T,
): Record<string, T> {
  const want = new Map(entries);
  const ok = entries.every(([k, v]) =>
    modules.every((m) => !patternValue({ [k]: true }, m, false) || (want.get(m) ?? fallback) === v),
  );
  return Object.fromEntries(ok ? entries : entries.map(([k, v]) => [escapeRegex(k), v]));
}

/** The lora entry's options with the allocation written in (plain PEFT LoRA). */
export function shapeLoraOptions(
  lora: LoraOptions,
  o: RankRuleOptions,
  alloc: readonly ModuleRank[],
): LoraOptions {
  const kept = alloc.filter((a) => a.rank > 0);
  if (kept.length === 0)
    throw new RankRuleError(
      `rank: gives 0 to every target module (${alloc.length}): nothing would be trained; check the rule`,
    );
  const dropped = alloc.filter((a) => a.rank === 0).map((a) => a.module);
  const modules = kept.map((a) => a.module);
  // Only the values a rule gave: a kind the rule leaves out keeps the lora entry's r / lora_alpha.
  const rank_pattern =
    o.rank === undefined
      ? lora.rank_pattern
      : modulePattern(
          kept.filter((a) => a.ruled.rank).map((a) => [a.module, a.rank]),
          modules,
          lora.r,
        );
  const alpha_pattern =
    o.alpha === undefined
      ? lora.alpha_pattern
      : modulePattern(
          kept.filter((a) => a.ruled.alpha).map((a) => [a.module, a.alpha]),
          modules,
          lora.lora_alpha,
        );
  let exclude_modules = lora.exclude_modules;
  if (dropped.length) {
    const ex = lora.exclude_modules;
    exclude_modules =
      typeof ex === 'string'
        ? `(?:${ex})|${dropped.map(escapeRegex).join('|')}`
        : [...(ex ?? []), ...dropped];
  }
  return { ...lora, rank_pattern, alpha_pattern, exclude_modules };
}

/** Lines for a run's log: per module kind, the ranks and alphas by layer, and the parameter counts. */
export function describeAllocation(alloc: readonly ModuleRank[], lora: LoraOptions): string[] {
  const fmt = (x: number) => x.toLocaleString('en-US');
  const num = (x: number) => String(Number(x.toPrecision(6)));
  const total = alloc.reduce((s, a) => s + a.params, 0);
  const uniform = alloc.reduce((s, a) => s + lora.r * (a.in + a.out) + (lora.use_dora ? a.out : 0), 0);
  const kept = alloc.filter((a) => a.rank > 0);
  const ranks = kept.map((a) => a.rank);
  const lines = [
    `rank-rule: ${kept.length} of ${alloc.length} target modules adapted, ranks ${Math.min(...ranks)}..${Math.max(...ranks)}, ${fmt(total)} trainable adapter params (r ${lora.r} on every target: ${fmt(uniform)})`,
  ];
  const kinds = [...new Set(alloc.map((a) => a.kind))];
  for (const k of kinds) {
    const of = alloc.filter((a) => a.kind === k).sort((a, b) => (a.depth ?? -1) - (b.depth ?? -1));
    const params = of.reduce((s, a) => s + a.params, 0);
    const by = of.length > 1 ? ' by layer' : '';
    lines.push(
      `  ${k}: r [${of.map((a) => a.rank).join(', ')}]${by}, alpha [${of.map((a) => (a.rank ? num(a.alpha) : '-')).join(', ')}], ${fmt(params)} params`,
    );
  }
  return lines;
}
