// Python source text from data: literals (None, True, 1e-08, "q_proj", [..], {..}), keyword
// arguments one per line, and raw expressions (`torch.float32`) where a value is code. The
// generated project is meant to be read and edited, so values print the way a person writes them.

/** Python code placed as it is (a name such as `torch.float32`). */
export class PyExpr {
  constructor(readonly code: string) {}
}

export const expr = (code: string): PyExpr => new PyExpr(code);

export type Py = null | boolean | number | string | PyExpr | readonly Py[] | { readonly [k: string]: Py };

function num(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`python: ${x} has no literal`);
  // JS prints 1e-8 and 0.003 as Python reads them; whole numbers stay ints (Python widens).
  return String(x);
}

/** A Python literal for `v` (a list or dict on one line). */
export function py(v: Py): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return num(v);
  // JSON's string escapes are Python's too.
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof PyExpr) return v.code;
  if (Array.isArray(v)) return `[${v.map(py).join(', ')}]`;
  const entries = Object.entries(v as Record<string, Py>);
  return `{${entries.map(([k, x]) => `${JSON.stringify(k)}: ${py(x)}`).join(', ')}}`;
}

/** Lines longer than this break a list or dict into one item per line (as black would). */
const WIDTH = 100;

/** A literal for `v` at `indent` spaces: on one line when it fits, else one item per line. */
export function pyBlock(v: Py, indent: number, lead = 0): string {
  const flat = py(v);
  if (indent + lead + flat.length <= WIDTH || v === null || typeof v !== 'object' || v instanceof PyExpr)
    return flat;
  const pad = ' '.repeat(indent + 4);
  if (Array.isArray(v))
    return `[\n${v.map((x) => `${pad}${pyBlock(x, indent + 4)},\n`).join('')}${' '.repeat(indent)}]`;
  const entries = Object.entries(v as Record<string, Py>);
  return `{\n${entries.map(([k, x]) => `${pad}${JSON.stringify(k)}: ${pyBlock(x, indent + 4, k.length + 4)},\n`).join('')}${' '.repeat(indent)}}`;
}

/** Keyword arguments, one `name=value,` per line at `indent` spaces (for a call split over lines). */
export function kwargs(args: Readonly<Record<string, Py>>, indent = 4): string {
  const pad = ' '.repeat(indent);
  return Object.entries(args)
    .map(([k, v]) => `${pad}${k}=${pyBlock(v, indent, k.length + 2)},\n`)
    .join('');
}

/** `name(\n    k=v,\n)`: a call with its keyword arguments one per line. */
export function call(name: string, args: Readonly<Record<string, Py>>, indent = 0): string {
  const entries = Object.keys(args).length;
  if (entries === 0) return `${name}()`;
  return `${name}(\n${kwargs(args, indent + 4)}${' '.repeat(indent)})`;
}
