// What a VJP rule is, and the registry autodiff reads (core rules plus ones that
// methods add for their own ops with `registerVjp`).
import type { GraphBuilder, Value } from '../../ir/builder.ts';
import type { Node } from '../../ir/graph.ts';
import type { CoreOpName, OpAttrs } from '../../ir/ops/index.ts';

export interface VjpContext {
  /** Emits backward nodes; its scope is already the forward node's scope. */
  readonly b: GraphBuilder;
  readonly node: Node;
  readonly inputs: readonly Value[];
  readonly out: Value;
  /** Cotangent of the node's output (same type as `out`). */
  readonly cot: Value;
  /** needs[i]: input i leads to a wanted param. A rule emits nothing for inputs that don't. */
  readonly needs: readonly boolean[];
}

/** One cotangent per input, same type as that input; null where no gradient is needed or defined. */
export type VjpFn = (ctx: VjpContext) => readonly (Value | null | undefined)[];

export type VjpRule =
  /** input/param/const: gradients stop here (autodiff reads the param's cotangent). */
  | { readonly kind: 'leaf' }
  /** No gradient flows through at all: piecewise-constant or integer results, stop_gradient. */
  | { readonly kind: 'none'; readonly why: string }
  | {
      readonly kind: 'vjp';
      /** Inputs without a derivative (indices, labels, masks, step counters), by position. */
      readonly nonDiff: readonly number[];
      readonly vjp: VjpFn;
    };

export const leaf: VjpRule = { kind: 'leaf' };

export function none(why: string): VjpRule {
  return { kind: 'none', why };
}

export function vjp(fn: VjpFn, nonDiff: readonly number[] = []): VjpRule {
  return { kind: 'vjp', nonDiff, vjp: fn };
}

/** The node's attrs typed for a core op (the op table's schema has checked them). */
export function attrsOf<K extends CoreOpName>(ctx: VjpContext, _op: K): OpAttrs<K> {
  return ctx.node.attrs as unknown as OpAttrs<K>;
}

/** Whether input `i` of a node gets a cotangent under `rule`. */
export function passesTo(rule: VjpRule, i: number): boolean {
  return rule.kind === 'vjp' && !rule.nonDiff.includes(i);
}

export class VjpRegistry {
  private readonly rules = new Map<string, VjpRule>();

  constructor(initial: Readonly<Record<string, VjpRule>>) {
    for (const [op, r] of Object.entries(initial)) this.rules.set(op, r);
  }

  register(op: string, rule: VjpRule): void {
    if (this.rules.has(op)) throw new Error(`a VJP rule for op '${op}' is already registered`);
    this.rules.set(op, rule);
  }

  has(op: string): boolean {
    return this.rules.has(op);
  }

  get(op: string, where: string): VjpRule {
    const r = this.rules.get(op);
    if (!r) {
      throw new Error(
        `${where}: op '${op}' has no VJP rule, so autodiff cannot differentiate through it; ` +
          `register one with registerVjp('${op}', rule) from the file that registers the op`,
      );
    }
    return r;
  }
}
