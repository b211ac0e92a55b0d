// Zod issues as messages a user can act on: the JSON path (`methods[1].rnak`), what was
// expected, what was given, and for unknown keys the closest known key.
import type { z } from 'zod';
import { closest } from './suggest.ts';

type Path = readonly PropertyKey[];

export function formatPath(path: Path): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || '(top level)';
}

function valueAt(root: unknown, path: Path): unknown {
  let v = root;
  for (const p of path)
    v = v != null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  return v;
}

// biome-ignore lint/suspicious/noExplicitAny: walking zod's internal definition tree
type Def = any;

/** The object schemas (zod defs) a schema holds at `path`, through optional/default/array/union/pipe. */
function objectsAt(schema: z.ZodType, path: Path): Def[] {
  const out: Def[] = [];
  const walk = (s: Def, rest: Path): void => {
    const def: Def = s?._zod?.def;
    if (!def) return;
    switch (def.type) {
      case 'optional':
      case 'nullable':
      case 'default':
      case 'prefault':
      case 'readonly':
      case 'catch':
        walk(def.innerType, rest);
        return;
      case 'pipe':
        walk(def.in, rest);
        return;
      case 'union':
        for (const o of def.options) walk(o, rest);
        return;
      case 'array':
        if (rest.length && typeof rest[0] === 'number') walk(def.element, rest.slice(1));
        return;
      case 'record':
        if (rest.length) walk(def.valueType, rest.slice(1));
        return;
      case 'object':
        if (rest.length === 0) out.push(def);
        else if (typeof rest[0] === 'string' && rest[0] in def.shape) walk(def.shape[rest[0]], rest.slice(1));
        return;
    }
  };
  walk(schema, path);
  return out;
}

/** The object keys a schema accepts at `path`. */
export function keysAt(schema: z.ZodType, path: Path, input?: unknown): string[] {
  const all = objectsAt(schema, path);
  // In a discriminated union, only the variant the input's tag picks (e.g. optimizer.type).
  const obj = valueAt(input, path);
  const picked =
    obj && typeof obj === 'object'
      ? all.filter((d) =>
          Object.entries(d.shape as Record<string, Def>).every(([k, f]) => {
            const tags = f?._zod?.def?.values as unknown[] | undefined;
            return !tags || !(k in obj) || tags.includes((obj as Record<string, unknown>)[k]);
          }),
        )
      : all;
  return [...new Set((picked.length ? picked : all).flatMap((d) => Object.keys(d.shape)))];
}

/** The literal values of key `key` across the object schemas at `path` (a discriminated union's tags). */
function tagsAt(schema: z.ZodType, path: Path, key: string): unknown[] {
  return objectsAt(schema, path).flatMap((d) => d.shape[key]?._zod?.def?.values ?? []);
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** One line per problem; `prefix` is prepended to every path (e.g. ['methods', 1]). */
export function formatIssues(
  error: z.ZodError,
  schema: z.ZodType,
  input: unknown,
  prefix: Path = [],
): { path: string; line: string }[] {
  const lines: { path: string; line: string }[] = [];
  for (const issue of error.issues) {
    const at = issue.path as Path;
    if (issue.code === 'unrecognized_keys') {
      const known = keysAt(schema, at, input);
      for (const key of issue.keys) {
        const path = formatPath([...prefix, ...at, key]);
        const near = closest(key, known);
        const hint = near ? `did you mean ${near}?` : `known keys: ${known.join(', ')}`;
        lines.push({ path, line: `${path}: unknown key; ${hint}` });
      }
      continue;
    }
    const path = formatPath([...prefix, ...at]);
    const got = valueAt(input, at);
    let msg = issue.message;
    const disc = (issue as { discriminator?: string }).discriminator;
    const custom = !/^(Invalid|Too (small|big))/.test(msg);
    if (custom) msg = issue.message;
    else if (issue.code === 'invalid_type') msg = `expected ${issue.expected}`;
    else if (issue.code === 'invalid_union' && disc) {
      const tags = tagsAt(schema, at.slice(0, -1), disc);
      msg = `expected one of ${tags.map((t) => JSON.stringify(t)).join(', ')}`;
    } else if (issue.code === 'invalid_union') {
      const alts = issue.errors.flat().map((i) => (i.code === 'invalid_type' ? i.expected : i.message));
      msg = `expected ${[...new Set(alts)].join(' or ')}`;
    } else if (issue.code === 'invalid_value')
      msg = `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    else msg = msg.replace(/^Invalid input: /, '').replace(/^Too (small|big): /, '');
    lines.push({ path, line: `${path}: ${msg}, got ${show(got)}` });
  }
  return lines;
}
