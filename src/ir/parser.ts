// Parser for the text IR that printer.ts prints (golden pass tests are written in it):
//   graph {
//     %0 = input() {name="x"} : f32[1,4,8]
//     %1 = linear(%0, %2) {} : f32[1,4,16] @model.mlp.up_proj   # comment
//     return y=%1
//   }
// Hand-written recursive descent over the characters. A node or `return` statement
// lives on one line, so a missing piece is reported at the end of its line, not on
// the next. Every node is checked (op table arity, attrs, shape rule) as it is read,
// so errors point at the line that is wrong.
import { DTYPES, type DType, isDType } from './dtype.ts';
import { type Attrs, type AttrValue, Graph, type GraphOutput, type Node, type TensorType } from './graph.ts';
import { getOp, hasOp, opNames } from './ops/index.ts';
import { printScope, SOURCE_OPS } from './printer.ts';
import { checkNode, findProblems } from './verify.ts';

export class ParseError extends Error {
  override name = 'ParseError';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    /** The message without the location and the source excerpt. */
    readonly reason: string,
    sourceLine: string,
  ) {
    const caret = `${sourceLine.slice(0, col - 1).replace(/[^\t]/g, ' ')}^`;
    super(`${file}:${line}:${col}: ${reason}\n  ${sourceLine}\n  ${caret}`);
  }
}

export interface ParseOptions {
  /** Shown in error messages (default "<ir>"). */
  readonly file?: string;
  /** Line number of the text's first line in that file (default 1), for IR embedded in a larger file. */
  readonly firstLine?: number;
}

const IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const INT = /[0-9]+/y;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const SCOPE = /[A-Za-z0-9_][A-Za-z0-9_.-]*/y;
const WORD = /[A-Za-z0-9_.%+-]+/y;
const WORDS: Record<string, AttrValue> = { true: true, false: false, null: null, NaN: Number.NaN };

/** Character cursor with line:col errors. */
class Reader {
  pos = 0;
  private readonly lineStarts: number[] = [0];

  constructor(
    readonly src: string,
    readonly file: string,
    private readonly firstLine: number,
  ) {
    for (let i = 0; i < src.length; i++) if (src[i] === '\n') this.lineStarts.push(i + 1);
  }

  /** Skips spaces, tabs, CR and comments, staying on this line. */
  skipInline(): void {
    const s = this.src;
    while (this.pos < s.length) {
      const c = s[this.pos];
      if (c === ' ' || c === '\t' || c === '\r') this.pos++;
      else if (c === '#') while (this.pos < s.length && s[this.pos] !== '\n') this.pos++;
      else break;
    }
  }

  /** Skips whitespace, comments and line breaks. */
  skipAll(): void {
    for (;;) {
      this.skipInline();
      if (this.src[this.pos] !== '\n') return;
      this.pos++;
    }
  }

  peek(): string {
    return this.src[this.pos] ?? '';
  }

  /** Consumes `ch` (after inline space) when it is next. */
  eat(ch: string): boolean {
    this.skipInline();
    if (this.src[this.pos] !== ch) return false;
    this.pos++;
    return true;
  }

  expect(ch: string, what = `'${ch}'`): void {
    if (!this.eat(ch)) this.fail(what);
  }

  /** Matches a sticky regex at the cursor (after inline space); returns the text or null. */
  match(re: RegExp): string | null {
    this.skipInline();
    re.lastIndex = this.pos;
    const m = re.exec(this.src);
    if (!m) return null;
    this.pos += m[0].length;
    return m[0];
  }

  /** A JSON string literal at the cursor, or null when none starts here. */
  string(): string | null {
    this.skipInline();
    const s = this.src;
    const start = this.pos;
    if (s[start] !== '"') return null;
    let i = start + 1;
    while (i < s.length && s[i] !== '"' && s[i] !== '\n') i += s[i] === '\\' ? 2 : 1;
    if (s[i] !== '"') {
      const col = this.lineCol(start).col;
      this.fail(`'"' closing the string that starts at column ${col}`, Math.min(i, s.length));
    }
    try {
      const v = JSON.parse(s.slice(start, i + 1)) as string;
      this.pos = i + 1;
      return v;
    } catch {
      return this.fail('a valid JSON string (bad escape?)', start);
    }
  }

  /** The token at `at`, for "found ..." in messages. */
  describe(at: number): string {
    const s = this.src;
    if (at >= s.length) return 'end of input';
    if (s[at] === '\n') return 'end of line';
    let text: string;
    if (s[at] === '"') {
      const nl = s.indexOf('\n', at);
      text = s.slice(at, nl < 0 ? s.length : nl);
    } else {
      WORD.lastIndex = at;
      text = WORD.exec(s)?.[0] ?? String.fromCodePoint(s.codePointAt(at)!);
    }
    return `'${text.length > 30 ? `${text.slice(0, 27)}...` : text}'`;
  }

  fail(what: string, at?: number): never {
    if (at === undefined) {
      this.skipInline();
      at = this.pos;
    }
    return this.error(`expected ${what}, found ${this.describe(at)}`, at);
  }

  error(reason: string, at: number): never {
    const { line, col } = this.lineCol(at);
    const start = this.lineStarts[line - 1];
    const shown = line + this.firstLine - 1;
    const end = this.src.indexOf('\n', start);
    const text = this.src.slice(start, end < 0 ? this.src.length : end).replace(/\r$/, '');
    throw new ParseError(this.file, shown, col, reason, text);
  }

  lineCol(at: number): { line: number; col: number } {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid] <= at) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: at - this.lineStarts[lo] + 1 };
  }
}

interface Placed {
  readonly node: Node;
  readonly at: number;
}

/** Parses the text form of a graph; throws ParseError with file:line:col on any problem. */
export function parseGraph(text: string, opts: ParseOptions = {}): Graph {
  const r = new Reader(text, opts.file ?? '<ir>', opts.firstLine ?? 1);
  r.skipAll();
  const start = r.pos;
  if (r.match(IDENT) !== 'graph') r.fail(`'graph'`, start);
  r.skipAll();
  r.expect('{', `'{' after 'graph'`);
  const defined = new Map<number, Placed>();
  const placed: Placed[] = [];
  let outputs: GraphOutput[] | null = null;
  for (;;) {
    r.skipAll();
    const at = r.pos;
    if (r.peek() === '%') {
      const p = parseNode(r, defined);
      defined.set(p.node.id, p);
      placed.push(p);
    } else if (r.match(IDENT) === 'return') {
      outputs = parseReturn(r, defined);
      r.skipAll();
      r.expect('}', `'}' closing the graph after 'return'`);
      break;
    } else {
      r.fail(`a node '%<id> = ...' or 'return <name>=%<id>'`, at);
    }
    r.skipInline();
    if (r.peek() !== '\n' && r.pos < text.length) r.fail('end of line after the statement');
  }
  r.skipAll();
  if (r.pos < text.length) r.fail("end of input after the closing '}'");
  const g = new Graph(
    placed.map((p) => p.node),
    outputs,
  );
  // Checks that need the whole graph (duplicate param/input names, ...).
  const problem = findProblems(g)[0];
  if (problem) r.error(problem.message, problem.at >= 0 ? placed[problem.at].at : text.lastIndexOf('return'));
  return g;
}

/** Digits exactly at the cursor (no space allowed, as in %12). */
function digitsHere(r: Reader): string | null {
  INT.lastIndex = r.pos;
  const m = INT.exec(r.src);
  if (!m) return null;
  r.pos += m[0].length;
  return m[0];
}

function parseRef(r: Reader, defined: ReadonlyMap<number, Placed>, what: string): number {
  r.skipInline();
  const at = r.pos;
  if (!r.eat('%')) r.fail(what);
  const digits = digitsHere(r);
  if (digits === null) r.fail(`a number right after '%'`, r.pos);
  const id = Number(digits);
  if (!defined.has(id))
    r.error(`%${id} is not defined above (a value must be defined on an earlier line than its use)`, at);
  return id;
}

function parseNode(r: Reader, defined: ReadonlyMap<number, Placed>): Placed {
  const at = r.pos;
  r.expect('%');
  const digits = digitsHere(r);
  if (digits === null) r.fail(`a node id (a number) right after '%'`, r.pos);
  const id = Number(digits);
  const prev = defined.get(id);
  if (prev) r.error(`%${id} is defined twice (first on line ${r.lineCol(prev.at).line})`, at);
  r.expect('=', `'=' after %${id}`);
  r.skipInline();
  const opAt = r.pos;
  const op = r.match(IDENT);
  if (op === null) r.fail('an op name');
  if (!hasOp(op)) r.error(`unknown op '${op}' (known ops: ${opNames().join(', ')})`, opAt);
  r.expect('(', `'(' after the op name`);
  const inputs: number[] = [];
  if (!r.eat(')')) {
    do inputs.push(parseRef(r, defined, `an input '%<id>'`));
    while (r.eat(','));
    r.expect(')', `',' or ')' after an input`);
  }
  r.skipInline();
  let attrs: Attrs = {};
  if (r.peek() === '{') attrs = parseObject(r);
  else if (r.peek() !== ':') r.fail(`'{' attrs or ':' and the result type`);
  r.expect(':', `':' and the result type`);
  const type = parseType(r);
  let scope = '';
  if (r.eat('@')) {
    const s = r.string() ?? r.match(SCOPE);
    if (s === null) r.fail('a scope (a module path like model.layers.0.mlp, or a JSON string)');
    scope = s;
  }
  if (SOURCE_OPS.has(op)) attrs = { dtype: type.dtype, shape: [...type.shape], ...attrs };
  const node: Node = { id, op, inputs, attrs, type, scope };
  const problem = checkNode(node, (i) => defined.get(i)!.node.type);
  if (problem) r.error(`%${id} (${op}${printScope(scope)}): ${problem}`, at);
  // Apply the schema's defaults, as the builder does, so parsed and built graphs agree.
  const parsed = getOp(op).attrs.safeParse(attrs);
  return { node: parsed.success ? { ...node, attrs: parsed.data } : node, at };
}

function parseType(r: Reader): TensorType {
  r.skipInline();
  const at = r.pos;
  const name = r.match(IDENT);
  if (name === null || !isDType(name)) r.fail(`a dtype (${DTYPES.join(', ')})`, at);
  r.expect('[', `'[' and the shape after the dtype`);
  const shape: number[] = [];
  if (!r.eat(']')) {
    do {
      const d = r.match(INT);
      if (d === null) r.fail('a dimension (a non-negative integer)');
      shape.push(Number(d));
    } while (r.eat(','));
    r.expect(']', `',' or ']' in the shape`);
  }
  return { dtype: name as DType, shape };
}

function parseKey(r: Reader, what: string): string {
  const k = r.string() ?? r.match(IDENT);
  if (k === null) r.fail(what);
  return k;
}

function parseObject(r: Reader): { [k: string]: AttrValue } {
  r.expect('{');
  const out: { [k: string]: AttrValue } = {};
  if (r.eat('}')) return out;
  do {
    r.skipInline();
    const at = r.pos;
    const key = parseKey(r, `an attribute name`);
    if (Object.hasOwn(out, key)) r.error(`attribute '${key}' is given twice`, at);
    r.expect('=', `'=' after attribute '${key}'`);
    out[key] = parseValue(r);
  } while (r.eat(','));
  r.expect('}', `',' or '}' after an attribute`);
  return out;
}

function parseValue(r: Reader): AttrValue {
  r.skipInline();
  const c = r.peek();
  if (c === '"') return r.string()!;
  if (c === '{') return parseObject(r);
  if (c === '[') {
    r.pos++;
    const out: AttrValue[] = [];
    if (r.eat(']')) return out;
    do out.push(parseValue(r));
    while (r.eat(','));
    r.expect(']', `',' or ']' in the list`);
    return out;
  }
  const at = r.pos;
  if (r.src.startsWith('-Infinity', at)) {
    r.pos += 9;
    return Number.NEGATIVE_INFINITY;
  }
  const num = r.match(NUMBER);
  if (num !== null) return Number(num);
  const word = r.match(IDENT);
  if (word === 'Infinity') return Number.POSITIVE_INFINITY;
  if (word !== null && Object.hasOwn(WORDS, word)) return WORDS[word];
  return r.fail('a value (number, "string", true, false, null, [list] or {object})', at);
}

function parseReturn(r: Reader, defined: ReadonlyMap<number, Placed>): GraphOutput[] {
  const outs: GraphOutput[] = [];
  r.skipInline();
  if (r.peek() === '\n' || r.peek() === '}' || r.peek() === '') return outs;
  do {
    r.skipInline();
    const at = r.pos;
    const name = parseKey(r, `an output name (like y=%3)`);
    if (outs.some((o) => o.name === name)) r.error(`output '${name}' is named twice`, at);
    r.expect('=', `'=' after output name '${name}'`);
    outs.push({ name, id: parseRef(r, defined, `'%<id>' for output '${name}'`) });
  } while (r.eat(','));
  return outs;
}
