// Recipe entries that shape a later entry (MethodDef.shapes: rank-rule -> lora). At recipe
// time: each shaper has an entry to shape and no other shaper claims it. Once the model
// graph is known (the trainer, `peftc ir`): the shaped entry's options are replaced by what
// the shaper computes, so applying, saving and logging see plain options (plain LoRA with
// rank_pattern / alpha_pattern). The shaper's own entry stays in the recipe as a no-op pass.
import type { Graph } from '../ir/graph.ts';
import { UserError } from '../util/errors.ts';
import type { Recipe, ResolvedMethod } from './recipe.ts';
import { getMethod } from './registry.ts';

export interface RecipeProblem {
  readonly path: string;
  readonly line: string;
}

/** Shaper entry index -> the index of the entry it shapes, or the first problem. */
export function shapedEntries(methods: readonly ResolvedMethod[]): Map<number, number> | RecipeProblem {
  const pairs = new Map<number, number>();
  const claimed = new Map<number, number>();
  for (let i = 0; i < methods.length; i++) {
    const shaper = getMethod(methods[i].method).shapes;
    if (!shaper) continue;
    const at = `methods[${i}]`;
    const j = methods.findIndex((m, k) => k > i && shaper.methods.includes(m.method));
    const names = shaper.methods.join(' or ');
    if (j < 0)
      return {
        path: at,
        line: `${at}: '${methods[i].method}' shapes the next ${names} entry, and none follows it; put it before the entry it applies to`,
      };
    const other = claimed.get(j);
    if (other !== undefined)
      return {
        path: at,
        line: `${at}: methods[${other}] already shapes methods[${j}] ('${methods[j].method}'); keep one of them`,
      };
    const problem = shaper.check?.(methods[i].options as never, methods[j].options);
    if (problem) {
      const path = `methods[${j}].${problem.key}`;
      return { path, line: `${path}: ${problem.message} (methods[${i}] '${methods[i].method}' sets it)` };
    }
    claimed.set(j, i);
    pairs.set(i, j);
  }
  return pairs;
}

/** A recipe entry's method failed on this model; the CLI adds the recipe file. */
export class RecipeEntryError extends UserError {
  override name = 'RecipeEntryError';
  constructor(
    readonly index: number,
    readonly method: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`recipe methods[${index}] ('${method}'): ${reason}`, options);
  }
}

/** The recipe with every shaped entry's options computed for `g` (the model's graph), and log lines. */
export function bindRecipe(recipe: Recipe, g: Graph): { recipe: Recipe; notes: string[] } {
  const pairs = shapedEntries(recipe.methods);
  if (!(pairs instanceof Map)) throw new UserError(pairs.line);
  if (pairs.size === 0) return { recipe, notes: [] };
  const methods = [...recipe.methods];
  const notes: string[] = [];
  for (const [i, j] of pairs) {
    const shaper = getMethod(methods[i].method).shapes!;
    let bound: ReturnType<typeof shaper.bind>;
    try {
      bound = shaper.bind(g, methods[i].options as never, methods[j].options);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new RecipeEntryError(i, methods[i].method, (e as Error).message, { cause: e });
    }
    // The target's own schema checks the result (and fills nothing new: it is resolved already).
    const parsed = getMethod(methods[j].method).options.safeParse(bound.options);
    if (!parsed.success)
      throw new RecipeEntryError(
        i,
        methods[i].method,
        `the options it made for methods[${j}] are not valid: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`,
      );
    methods[j] = { method: methods[j].method, options: parsed.data as Record<string, unknown> };
    notes.push(...bound.notes);
  }
  return { recipe: { ...recipe, methods }, notes };
}
