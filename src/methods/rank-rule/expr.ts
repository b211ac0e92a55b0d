// The arithmetic of a rank-rule (a recipe's `"rank": "min(64, 4 + 4 * depth)"`): a small
// grammar, parsed by hand (no eval), printed back, evaluated over named numbers.
//
//   expr    := term (('+' | '-') term)*
//   term    := unary (('*' | '/') unary)*
//   unary   := '-' unary | atom
//   atom    := number | name | name '(' expr (',' expr)* ')' | '(' expr ')'
//   number  := digits ['.' digits] [('e' | 'E') ['+' | '-'] digits]  (also '.5')
//
// Left-associative, the usual precedence; unary minus binds tighter than * and /.
// Errors carry the 1-based column of the offending character.

import { editDistance } from '../suggest.ts';

export type BinOp = '+' | '-' | '*' | '/';

export type Expr =
  | { readonly k: 'num'; readonly v: number; readonly col: number }
  | { readonly k: 'var'; readonly name: string; readonly col: number }
  | { readonly k: 'neg'; readonly e: Expr; readonly col: number }
  | { readonly k: 'bin'; readonly op: BinOp; readonly l: Expr; readonly r: Expr; readonly col: number }
  | { readonly k: 'call'; readonly fn: string; readonly args: readonly Expr[]; readonly col: number };

/** The functions a rule may call, with their arity ([min, max]) and meaning. */
export const FUNCTIONS: Readonly<Record<string, { arity: [number, number]; f: (...x: number[]) => number }>> =
  {
    min: { arity: [2, Number.POSITIVE_INFINITY], f: Math.min },
    max: { arity: [2, Number.POSITIVE_INFINITY], f: Math.max },
    /** Half away from zero (2.5 -> 3, -2.5 -> -3), not Python's banker's rounding. */
    round: { arity: [1, 1], f: (x) => Math.sign(x) * Math.round(Math.abs(x)) },
    floor: { arity: [1, 1], f: Math.floor },
    ceil: { arity: [1, 1], f: Math.ceil },
    sqrt: { arity: [1, 1], f: Math.sqrt },
  };

export class ExprError extends Error {
  override name = 'ExprError';
  constructor(
    readonly col: number,
    readonly reason: string,
  ) {
    super(`column ${col}: ${reason}`);
  }
}

type Tok =
  | { t: 'num'; v: number; col: number; text: string }
  | { t: 'name'; v: string; col: number }
  | { t: 'op'; v: string; col: number }
  | { t: 'end'; col: number };

const NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*/;

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    const rest = src.slice(i);
    const num = NUMBER.exec(rest);
    if (num) {
      if (NAME.test(rest.slice(num[0].length)))
        throw new ExprError(
          i + num[0].length + 1,
          `a name cannot follow the number ${num[0]} (a missing '*'?)`,
        );
      out.push({ t: 'num', v: Number(num[0]), col: i + 1, text: num[0] });
      i += num[0].length;
      continue;
    }
    const name = NAME.exec(rest);
    if (name) {
      out.push({ t: 'name', v: name[0], col: i + 1 });
      i += name[0].length;
      continue;
    }
    if ('+-*/(),'.includes(c)) {
      out.push({ t: 'op', v: c, col: i + 1 });
      i++;
      continue;
    }
    throw new ExprError(i + 1, `unexpected character '${c}' (a rule uses numbers, names, + - * / ( ) and ,)`);
  }
  out.push({ t: 'end', col: src.length + 1 });
  return out;
}

function describe(t: Tok): string {
  if (t.t === 'end') return 'the end of the rule';
  if (t.t === 'num') return `'${t.text}'`;
  return `'${t.v}'`;
}

/**
 * Parses a rule. `names` are the variables it may read; a name outside them (or a function
 * that does not exist, or a call with the wrong number of arguments) is an error at its column.
 */
export function parseExpr(src: string, names: readonly string[]): Expr {
  const toks = tokenize(src);
  let p = 0;
  const peek = () => toks[p];
  const isOp = (v: string) => {
    const t = toks[p];
    return t.t === 'op' && t.v === v;
  };
  const expect = (v: string, what: string) => {
    if (!isOp(v)) throw new ExprError(peek().col, `expected ${what}, found ${describe(peek())}`);
    p++;
  };
  const expr = (): Expr => {
    let l = term();
    while (isOp('+') || isOp('-')) {
      const t = toks[p++] as { v: string; col: number };
      l = { k: 'bin', op: t.v as BinOp, l, r: term(), col: t.col };
    }
    return l;
  };
  const term = (): Expr => {
    let l = unary();
    while (isOp('*') || isOp('/')) {
      const t = toks[p++] as { v: string; col: number };
      l = { k: 'bin', op: t.v as BinOp, l, r: unary(), col: t.col };
    }
    return l;
  };
  const unary = (): Expr => {
    if (isOp('-')) {
      const col = toks[p++].col;
      return { k: 'neg', e: unary(), col };
    }
    return atom();
  };
  const atom = (): Expr => {
    const t = toks[p];
    if (t.t === 'num') {
      p++;
      return { k: 'num', v: t.v, col: t.col };
    }
    if (t.t === 'name') {
      p++;
      if (isOp('(')) return call(t.v, t.col);
      if (t.v in FUNCTIONS) throw new ExprError(t.col, `${t.v} is a function: write ${t.v}(...)`);
      if (!names.includes(t.v)) throw new ExprError(t.col, unknownName(t.v, names));
      return { k: 'var', name: t.v, col: t.col };
    }
    if (isOp('(')) {
      p++;
      const e = expr();
      expect(')', "')'");
      return e;
    }
    throw new ExprError(t.col, `expected a number, a name or '(', found ${describe(t)}`);
  };
  const call = (fn: string, col: number): Expr => {
    const def = FUNCTIONS[fn];
    if (!def)
      throw new ExprError(col, `unknown function '${fn}' (functions: ${Object.keys(FUNCTIONS).join(', ')})`);
    p++; // '('
    const args = [expr()];
    while (isOp(',')) {
      p++;
      args.push(expr());
    }
    expect(')', `',' or ')' to close ${fn}(`);
    const [lo, hi] = def.arity;
    if (args.length < lo || args.length > hi) {
      const want = lo === hi ? `${lo}` : `at least ${lo}`;
      throw new ExprError(
        col,
        `${fn} takes ${want} argument${lo === 1 && hi === 1 ? '' : 's'}, not ${args.length}`,
      );
    }
    return { k: 'call', fn, args, col };
  };
  const e = expr();
  if (peek().t !== 'end')
    throw new ExprError(peek().col, `expected an operator or the end, found ${describe(peek())}`);
  return e;
}

function unknownName(name: string, names: readonly string[]): string {
  // By spelling only (suggest.ts's closest also knows key aliases, where r means rank).
  const [near] = names
    .map((n) => [n, editDistance(name.toLowerCase(), n)] as const)
    .filter(([, d]) => d <= Math.max(2, Math.floor(name.length / 3)))
    .sort((a, b) => a[1] - b[1])
    .map(([n]) => n);
  return `unknown name '${name}'${near ? `; did you mean ${near}?` : ''} (names: ${names.join(', ')})`;
}

const PREC: Record<BinOp, number> = { '+': 1, '-': 1, '*': 2, '/': 2 };

/** Prints a rule so that parseExpr gives the same tree back (only the parentheses it needs). */
export function printExpr(e: Expr): string {
  switch (e.k) {
    case 'num':
      return String(e.v);
    case 'var':
      return e.name;
    case 'neg':
      return `-${e.e.k === 'bin' ? `(${printExpr(e.e)})` : printExpr(e.e)}`;
    case 'call':
      return `${e.fn}(${e.args.map(printExpr).join(', ')})`;
    case 'bin': {
      const p = PREC[e.op];
      const side = (x: Expr, right: boolean) => {
        // Left-associative: the right operand of an equal-precedence op needs parentheses.
        const paren = x.k === 'bin' && (PREC[x.op] < p || (right && PREC[x.op] === p));
        return paren ? `(${printExpr(x)})` : printExpr(x);
      };
      return `${side(e.l, false)} ${e.op} ${side(e.r, true)}`;
    }
  }
}

/** The rule's value for the given variables (every name the rule reads must be there). */
export function evalExpr(e: Expr, vars: Readonly<Record<string, number>>): number {
  switch (e.k) {
    case 'num':
      return e.v;
    case 'var': {
      const v = vars[e.name];
      if (v === undefined) throw new ExprError(e.col, `'${e.name}' has no value here`);
      return v;
    }
    case 'neg':
      return -evalExpr(e.e, vars);
    case 'call':
      return FUNCTIONS[e.fn].f(...e.args.map((a) => evalExpr(a, vars)));
    case 'bin': {
      const l = evalExpr(e.l, vars);
      const r = evalExpr(e.r, vars);
      return e.op === '+' ? l + r : e.op === '-' ? l - r : e.op === '*' ? l * r : l / r;
    }
  }
}

/** The variables a rule reads. */
export function namesIn(e: Expr): Set<string> {
  const out = new Set<string>();
  const walk = (x: Expr): void => {
    if (x.k === 'var') out.add(x.name);
    else if (x.k === 'neg') walk(x.e);
    else if (x.k === 'bin') {
      walk(x.l);
      walk(x.r);
    } else if (x.k === 'call') x.args.forEach(walk);
  };
  walk(e);
  return out;
}
