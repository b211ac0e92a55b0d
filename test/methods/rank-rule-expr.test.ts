// rank-rule's expression grammar (src/methods/rank-rule/expr.ts): printing then reparsing
// gives the same tree and value, precedence and associativity, functions, and errors that
// name the column; in a recipe, the error names the entry's path too.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseRecipe } from '../../src/methods/index.ts';
import {
  ALPHA_NAMES,
  type Expr,
  ExprError,
  evalExpr,
  parseExpr,
  printExpr,
  RANK_NAMES,
} from '../../src/methods/rank-rule/index.ts';

const NAMES = [...ALPHA_NAMES];
const VARS = { depth: 3, layers: 8, in: 64, out: 128, r: 8, lora_alpha: 16, rank: 12 };

/** The tree without columns (printing changes spacing, so columns move). */
function shape(e: Expr): unknown {
  switch (e.k) {
    case 'num':
      return e.v;
    case 'var':
      return e.name;
    case 'neg':
      return ['neg', shape(e.e)];
    case 'bin':
      return [e.op, shape(e.l), shape(e.r)];
    case 'call':
      return [e.fn, ...e.args.map(shape)];
  }
}

const num = fc
  .oneof(fc.integer({ min: 0, max: 1000 }), fc.double({ min: 0, max: 1e6, noNaN: true }))
  .map((v): Expr => ({ k: 'num', v, col: 0 }));
const variable = fc.constantFrom(...NAMES).map((name): Expr => ({ k: 'var', name, col: 0 }));
const { expr: arbExpr } = fc.letrec<{ expr: Expr }>((tie) => ({
  expr: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    num,
    variable,
    tie('expr').map((e): Expr => ({ k: 'neg', e, col: 0 })),
    fc
      .tuple(fc.constantFrom('+', '-', '*', '/' as const), tie('expr'), tie('expr'))
      .map(([op, l, r]): Expr => ({ k: 'bin', op, l, r, col: 0 })),
    fc
      .tuple(fc.constantFrom('min', 'max'), fc.array(tie('expr'), { minLength: 2, maxLength: 3 }))
      .map(([fn, args]): Expr => ({ k: 'call', fn, args, col: 0 })),
    fc
      .tuple(fc.constantFrom('round', 'floor', 'ceil', 'sqrt'), tie('expr'))
      .map(([fn, a]): Expr => ({ k: 'call', fn, args: [a], col: 0 })),
  ),
}));

const same = (a: number, b: number) => Object.is(a, b) || (Number.isNaN(a) && Number.isNaN(b));

describe('rank-rule expressions', () => {
  it('print then parse gives the same tree and the same value (fast-check)', () => {
    fc.assert(
      fc.property(arbExpr, (e) => {
        const text = printExpr(e);
        const back = parseExpr(text, NAMES);
        expect(shape(back)).toEqual(shape(e));
        expect(same(evalExpr(back, VARS), evalExpr(e, VARS))).toBe(true);
        // Printing is a fixed point after one round.
        expect(printExpr(back)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });

  it('precedence and associativity are the usual ones; unary minus binds tightest', () => {
    const v = (s: string) => evalExpr(parseExpr(s, NAMES), VARS);
    expect(v('1 + 2 * 3')).toBe(7);
    expect(v('(1 + 2) * 3')).toBe(9);
    expect(v('10 - 4 - 3')).toBe(3);
    expect(v('24 / 4 / 2')).toBe(3);
    expect(v('2 * 3 - 4 / 2')).toBe(4);
    expect(v('-2 * 3')).toBe(-6);
    expect(v('- -2')).toBe(2);
    expect(v('8 - -2')).toBe(10);
    expect(v('min(64, 4 + 4 * depth)')).toBe(16);
    expect(v('min(64, 4 + 4 * layers * 2)')).toBe(64);
    expect(v('max(in, out) / 16')).toBe(8);
    expect(v('round(2.5) + round(-2.5) + floor(2.7) + ceil(2.1)')).toBe(3 - 3 + 2 + 3);
    expect(v('sqrt(rank) * 1.5e1 / .5')).toBeCloseTo(Math.sqrt(12) * 30, 12);
    expect(printExpr(parseExpr('(a) - (b - c) + (d * e)'.replace(/[a-e]/g, 'depth'), NAMES))).toBe(
      'depth - (depth - depth) + depth * depth',
    );
  });

  const errors: Array<[string, number, RegExp]> = [
    ['4 + * depth', 5, /expected a number, a name or '\(', found '\*'/],
    ['min(64, 4 + 4 * deph)', 17, /unknown name 'deph'; did you mean depth\?/],
    ['4 + 4 depth', 7, /expected an operator or the end, found 'depth'/],
    ['4depth', 2, /a name cannot follow the number 4 \(a missing '\*'\?\)/],
    ['(1 + 2', 7, /expected '\)', found the end of the rule/],
    ['1 $ 2', 3, /unexpected character '\$'/],
    ['round(1, 2)', 1, /round takes 1 argument, not 2/],
    ['4 + min(1)', 5, /min takes at least 2 arguments, not 1/],
    ['pow(2, 3)', 1, /unknown function 'pow'/],
    ['2 * min', 5, /min is a function: write min\(\.\.\.\)/],
    ['', 1, /found the end of the rule/],
    ['min(1, 2', 9, /expected ',' or '\)' to close min\(/],
  ];
  it.each(errors)('%j: an error at column %i', (src, col, re) => {
    let err: unknown;
    try {
      parseExpr(src, NAMES);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ExprError);
    expect((err as ExprError).col).toBe(col);
    expect((err as ExprError).message).toMatch(new RegExp(`^column ${col}: `));
    expect((err as ExprError).message).toMatch(re);
  });

  it('the rank rule may not read rank (only the alpha rule may)', () => {
    expect(() => parseExpr('rank * 2', RANK_NAMES)).toThrow(/column 1: unknown name 'rank'/);
    expect(evalExpr(parseExpr('rank * 2', ALPHA_NAMES), VARS)).toBe(24);
  });

  it('in a recipe, the error names the entry path, the table key and the column', () => {
    const recipe = (rank: unknown, alpha?: unknown) => ({
      methods: [{ method: 'rank-rule', rank, ...(alpha === undefined ? {} : { alpha }) }, { method: 'lora' }],
    });
    expect(() => parseRecipe(recipe('min(64, 4 + 4 * deph)'))).toThrow(
      /methods\[0\]\.rank: column 17: unknown name 'deph'; did you mean depth\?.*, got "min\(64, 4 \+ 4 \* deph\)"/,
    );
    expect(() => parseRecipe(recipe({ q_proj: 16, v_proj: '4 +' }))).toThrow(
      /methods\[0\]\.rank\.v_proj: column 4: expected a number/,
    );
    expect(() => parseRecipe(recipe('rank + 1'))).toThrow(
      /methods\[0\]\.rank: column 1: unknown name 'rank'.*\(rank is known in the alpha rule\)/,
    );
    expect(() => parseRecipe(recipe({ q_proj: 2.5 }))).toThrow(
      /methods\[0\]\.rank\.q_proj: a rank is a whole number >= 0/,
    );
    expect(() => parseRecipe(recipe(8, { '*': 0 }))).toThrow(
      /methods\[0\]\.alpha\.\*: an alpha is a number > 0/,
    );
    expect(() => parseRecipe(recipe(8, '2 * rnak'))).toThrow(
      /methods\[0\]\.alpha: column 5: unknown name 'rnak'; did you mean rank\?/,
    );
    expect(() => parseRecipe({ methods: [{ method: 'rank-rule' }, { method: 'lora' }] })).toThrow(
      /methods\[0\]: give a rank rule, an alpha rule, or both/,
    );
    expect(() => parseRecipe(recipe(true))).toThrow(/methods\[0\]\.rank: expected an expression/);
  });
});
