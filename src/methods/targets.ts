// Which modules a method targets, with PEFT's exact rules (peft/tuners/tuners_utils.py
// check_target_module_exists, _maybe_include_all_linear_layers; utils/other.py
// get_pattern_key, _set_trainable):
// - exclude_modules first: a string is a regex that must match the whole name; a list
//   entry matches when the name equals it or ends with "." + entry;
// - a module named by modules_to_save is never an adapter target;
// - target_modules as one string: regex, whole name ("all-linear": every linear except
//   the output head, expanded to the list of their full names);
// - as a list: name equals an entry (taken as is), or ends with "." + entry, and then
//   layers_to_transform / layers_pattern filter by the layer index;
// - rank_pattern / alpha_pattern: the first key for which `(.*\.)?(key)$` matches the name.
import type { Graph, Node } from '../ir/graph.ts';

export interface TargetConfig {
  readonly target_modules?: string | readonly string[] | null;
  readonly exclude_modules?: string | readonly string[] | null;
  readonly layers_to_transform?: number | readonly number[] | null;
  readonly layers_pattern?: string | readonly string[] | null;
  readonly modules_to_save?: readonly string[] | null;
}

export class TargetError extends Error {
  override name = 'TargetError';
}

export const ALL_LINEAR = 'all-linear';

/** Python's re syntax is close to JS's; the named-group spelling differs. */
function pyRegex(src: string, anchored: 'full' | 'start'): RegExp {
  const js = src.replace(/\(\?P</g, '(?<').replace(/\(\?P=(\w+)\)/g, '\\k<$1>');
  try {
    return new RegExp(anchored === 'full' ? `^(?:${js})$` : `^(?:${js})`);
  } catch (e) {
    throw new TargetError(`'${src}' is not a valid regular expression: ${(e as Error).message}`);
  }
}

export function fullMatch(pattern: string, name: string): boolean {
  return pyRegex(pattern, 'full').test(name);
}

function listMatch(entries: readonly string[], name: string): boolean {
  return entries.includes(name) || entries.some((e) => name.endsWith(`.${e}`));
}

export function isExcluded(cfg: TargetConfig, name: string): boolean {
  const ex = cfg.exclude_modules;
  if (ex) {
    if (typeof ex === 'string' ? fullMatch(ex, name) : listMatch(ex, name)) return true;
  }
  const mts = cfg.modules_to_save;
  return !!mts?.some((m) => pyRegex(`(^|.*\\.)${m}($|\\..*)`, 'start').test(name));
}

/** The layer index PEFT reads from a module name, or undefined. */
export function layerIndex(
  name: string,
  layersPattern?: string | readonly string[] | null,
): number | undefined {
  const pats = layersPattern == null || layersPattern.length === 0 ? [] : [layersPattern].flat();
  const regs = pats.length
    ? pats.map((p) => pyRegex(`.*?\\.${p}\\.(\\d+)\\.`, 'start'))
    : [/^.*?\.[^.]*\.(\d+)\./];
  for (const r of regs) {
    const m = r.exec(name);
    if (m) return Number(m[1]);
  }
  return undefined;
}

/**
 * check_target_module_exists for one module name, with `target_modules` already
 * expanded (see expandTargets for all-linear).
 */
export function isTargeted(cfg: TargetConfig, name: string): boolean {
  if (isExcluded(cfg, name)) return false;
  const t = cfg.target_modules;
  if (t == null) return false;
  if (typeof t === 'string') return fullMatch(t, name);
  if (t.includes(name)) return true;
  if (!t.some((e) => name.endsWith(`.${e}`))) return false;
  const layers = cfg.layers_to_transform;
  const using = layers != null && (typeof layers === 'number' || layers.length > 0);
  if (!using) return true;
  const idx = layerIndex(name, cfg.layers_pattern);
  if (idx === undefined) return false;
  return typeof layers === 'number' ? idx === layers : layers.includes(idx);
}

/** Scopes that belong to an adapter's own modules (lora_A, lora_B, ...): never targets. */
const ADAPTER_PART = /\.(lora_[A-Za-z_]+|modules_to_save)(\.|$)/;

export function isAdapterScope(scope: string): boolean {
  return ADAPTER_PART.test(scope);
}

/** The output head: a linear at scope `lm_head`, or a linear whose value is the `logits` output. */
export function outputHeads(g: Graph): Set<string> {
  const heads = new Set<string>();
  const logits = g.outputs.find((o) => o.name === 'logits');
  for (const n of g.ofOp('linear')) {
    if (n.scope === 'lm_head' || n.scope.endsWith('.lm_head') || n.id === logits?.id) heads.add(n.scope);
  }
  return heads;
}

/** Module names a method may adapt: scopes of the given ops, adapter parts excluded, in graph order. */
export function candidateModules(g: Graph, ops: readonly string[] = ['linear']): Node[] {
  return g.nodes.filter((n) => ops.includes(n.op) && n.scope !== '' && !isAdapterScope(n.scope));
}

/** Replaces `all-linear` by the full names of every linear except the output head (as PEFT does). */
export function expandTargets<C extends TargetConfig>(g: Graph, cfg: C): C {
  const t = cfg.target_modules;
  if (typeof t !== 'string' || t.toLowerCase() !== ALL_LINEAR) return cfg;
  const heads = outputHeads(g);
  const names = [...new Set(candidateModules(g, ['linear']).map((n) => n.scope))].filter(
    (s) => !heads.has(s),
  );
  return { ...cfg, target_modules: names };
}

/** The nodes (of `ops`) whose module is targeted; errors like PEFT when nothing matches. */
export function selectTargets(g: Graph, cfg: TargetConfig, ops: readonly string[] = ['linear']): Node[] {
  const expanded = expandTargets(g, cfg);
  const cands = candidateModules(g, ops);
  const hits = cands.filter((n) => isTargeted(expanded, n.scope));
  if (hits.length === 0) {
    const sample = [...new Set(cands.map((n) => n.scope))].slice(0, 8);
    throw new TargetError(
      `target modules ${JSON.stringify(cfg.target_modules)} not found in the model` +
        (cfg.layers_to_transform != null
          ? ` (with layers_to_transform ${JSON.stringify(cfg.layers_to_transform)})`
          : '') +
        `; module names look like: ${sample.join(', ') || '(no candidate modules)'}`,
    );
  }
  return hits;
}

/** PEFT's get_pattern_key + lookup: the value of the first key matching `(.*\.)?(key)$`, else `fallback`. */
export function patternValue<T>(
  pattern: Readonly<Record<string, T>> | null | undefined,
  name: string,
  fallback: T,
): T {
  if (!pattern) return fallback;
  for (const [key, v] of Object.entries(pattern)) {
    if (pyRegex(`(.*\\.)?(${key})$`, 'start').test(name)) return v;
  }
  return fallback;
}

/** modules_to_save matching (PEFT's _set_trainable): the module name ends with an entry (no dot needed). */
export function isModuleToSave(modulesToSave: readonly string[] | null | undefined, name: string): boolean {
  return !!modulesToSave?.some((m) => name.endsWith(m));
}

/** PEFT's MIN_TARGET_MODULES_FOR_OPTIMIZATION: from this many entries on, a target list is condensed. */
export const MIN_TARGETS_TO_CONDENSE = 20;

/** Python's list ordering for lists of strings (the sort key PEFT uses). */
function compareLists(a: readonly string[], b: readonly string[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * PEFT's _find_minimal_target_modules (tuners_utils.py): the fewest name suffixes that still
 * select every target and none of `others`. Sorted, as a set has no order.
 */
export function minimalTargetModules(targets: readonly string[], others: readonly string[]): string[] {
  // Suffixes shortest first: "a.b.c" -> ["c", "b.c", "a.b.c"].
  const suffixes = (s: string) => {
    const parts = s.split('.');
    return parts.map((_, i) => parts.slice(i).join('.')).reverse();
  };
  const otherSuffixes = new Set(others.flatMap(suffixes));
  const required = new Set<string>();
  const items = [...new Set(targets)].map((t) => [t, suffixes(t)] as const);
  items.sort((x, y) => compareLists(x[1], y[1]));
  for (const [item, sfx] of items) {
    for (const s of sfx) {
      if (required.has(s) || otherSuffixes.has(s)) continue;
      if (![...required].some((r) => item.endsWith(`.${r}`))) {
        required.add(s);
        break;
      }
    }
  }
  return required.size ? [...required].sort() : [...new Set(targets)].sort();
}

/** Every module path of the graph: node scopes and their parents (PyTorch's named_modules, roughly). */
function moduleNames(g: Graph): string[] {
  const out = new Set<string>();
  for (const n of g.nodes) {
    const parts = n.scope.split('.');
    for (let i = 1; i <= parts.length; i++) if (n.scope) out.add(parts.slice(0, i).join('.'));
  }
  return [...out];
}

/**
 * `target_modules` as PEFT saves it after injection (inject_adapter mutates the config):
 * "all-linear" becomes the full names of the linears it selected, and a list of at least
 * MIN_TARGETS_TO_CONDENSE entries is condensed by minimalTargetModules. A regex string
 * and shorter lists stay as given.
 */
export function savedTargetModules(g: Graph, cfg: TargetConfig): string | string[] | null {
  const t = expandTargets(g, cfg).target_modules;
  if (t == null || typeof t === 'string') return t ?? null;
  const list = [...new Set(t)];
  if (list.length < MIN_TARGETS_TO_CONDENSE) return list;
  const suffixes = list.map((e) => `.${e}`);
  const others = moduleNames(g).filter((n) => !list.includes(n) && !suffixes.some((s) => n.endsWith(s)));
  const condensed = minimalTargetModules(list, others);
  return condensed.length < list.length ? condensed : list;
}
