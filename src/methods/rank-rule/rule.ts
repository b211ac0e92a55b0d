// A rank-rule's `rank` and `alpha` rules as recipe data: an expression (expr.ts), a number,
// or a table by module kind (the last part of the module name, `q_proj`) whose values are
// numbers or expressions, with "*" for the kinds it does not name. A table entry wins over
// "*" ("both": the table overrides the expression for its kinds). A kind the rule does not
// cover (no entry, no "*") keeps the lora entry's r / lora_alpha.
import { z } from 'zod';
import { type Expr, ExprError, parseExpr } from './expr.ts';

/** What a rank rule may read: the module's layer index, the layer count, its in/out features, the lora entry's r and lora_alpha. */
export const RANK_NAMES = ['depth', 'layers', 'in', 'out', 'r', 'lora_alpha'] as const;
/** An alpha rule may also read the module's allocated rank. */
export const ALPHA_NAMES = [...RANK_NAMES, 'rank'] as const;
/** The table key for every kind the table does not name. */
export const ANY_KIND = '*';

const entry = z.union([z.number(), z.string().min(1)], {
  error: 'expected a number or an expression string',
});
export const ruleInput = z.union([entry, z.record(z.string().min(1), entry)], {
  error:
    'expected an expression ("min(64, 4 + 4 * depth)"), a number, or a table by module kind ({"q_proj": 16, "*": 8})',
});
export type RuleInput = z.output<typeof ruleInput>;

/** A parsed rule: an expression per table key ("*" included) or one for every kind. */
export interface Rule {
  readonly byKind: ReadonlyMap<string, Expr>;
  /** The rule's path under the entry (`rank` or `rank.q_proj`), for messages, by table key. */
  readonly where: ReadonlyMap<string, string>;
}

const asExpr = (v: number | string, names: readonly string[]): Expr =>
  typeof v === 'number' ? { k: 'num', v, col: 1 } : parseExpr(v, names);

export type RuleKind = 'rank' | 'alpha';

/** Parses a rule; problems come back with their path under the entry (zod issues). */
export function compileRule(
  v: RuleInput,
  kind: RuleKind,
): { rule?: Rule; problems: { path: (string | number)[]; message: string }[] } {
  const names = kind === 'rank' ? RANK_NAMES : ALPHA_NAMES;
  const entries: [string, number | string, (string | number)[]][] =
    typeof v === 'object' ? Object.entries(v).map(([k, x]) => [k, x, [kind, k]]) : [[ANY_KIND, v, [kind]]];
  const byKind = new Map<string, Expr>();
  const where = new Map<string, string>();
  const problems: { path: (string | number)[]; message: string }[] = [];
  for (const [key, x, path] of entries) {
    if (typeof x === 'number' && !literalOk(x, kind)) {
      problems.push({
        path,
        message: kind === 'rank' ? 'a rank is a whole number >= 0' : 'an alpha is a number > 0',
      });
      continue;
    }
    try {
      byKind.set(key, asExpr(x, names));
      where.set(key, path.join('.'));
    } catch (e) {
      if (!(e instanceof ExprError)) throw e;
      const hint =
        kind === 'rank' && /unknown name 'rank'/.test(e.reason) ? ' (rank is known in the alpha rule)' : '';
      problems.push({ path, message: `${e.message}${hint}` });
    }
  }
  return problems.length ? { problems } : { rule: { byKind, where }, problems };
}

function literalOk(x: number, kind: RuleKind): boolean {
  return kind === 'rank' ? Number.isInteger(x) && x >= 0 : Number.isFinite(x) && x > 0;
}

/** The expression that applies to a module kind, and its path; undefined when the rule leaves the kind alone. */
export function ruleFor(rule: Rule, kind: string): { expr: Expr; where: string } | undefined {
  const key = rule.byKind.has(kind) ? kind : rule.byKind.has(ANY_KIND) ? ANY_KIND : undefined;
  return key === undefined ? undefined : { expr: rule.byKind.get(key)!, where: rule.where.get(key)! };
}
