// Which method combinations a recipe may not contain, and why. Methods added later
// extend the table with registerConflict (e.g. AdaLoRA with DoRA, as PEFT refuses).
export interface MethodEntry {
  readonly method: string;
  readonly [key: string]: unknown;
}

export interface Conflict {
  /** The earlier entry's method ('*' = any). */
  readonly first: string;
  /** The later entry's method ('*' = any). */
  readonly later: string;
  /** Also conflicts in the other order. */
  readonly eitherOrder?: boolean;
  /** Narrows the conflict to some option values; absent means always. */
  readonly when?: (first: MethodEntry, later: MethodEntry) => boolean;
  readonly reason: string | ((first: MethodEntry, later: MethodEntry) => string);
}

const table: Conflict[] = [
  {
    first: 'lora',
    later: 'qlora',
    reason:
      'qlora quantizes the base weights, so it must come before lora (the adapter sits in full precision over the 4-bit base); move the qlora entry first',
  },
  {
    first: 'lora',
    later: 'lora',
    when: (a, b) => (a.adapter_name ?? 'default') === (b.adapter_name ?? 'default'),
    reason: (a) =>
      `both add the adapter '${String(a.adapter_name ?? 'default')}' to the same model; give the second entry another adapter_name`,
  },
];

export function registerConflict(c: Conflict): void {
  table.push(c);
}

export function conflicts(): readonly Conflict[] {
  return table;
}

const is = (pattern: string, name: string) => pattern === '*' || pattern === name;

/** The first conflict among entries i < j, as [i, j, reason]. */
export function findConflict(entries: readonly MethodEntry[]): [number, number, string] | undefined {
  for (let j = 0; j < entries.length; j++) {
    for (let i = 0; i < j; i++) {
      const a = entries[i];
      const b = entries[j];
      for (const c of table) {
        const fwd = is(c.first, a.method) && is(c.later, b.method);
        const rev = c.eitherOrder && is(c.first, b.method) && is(c.later, a.method);
        if (!fwd && !rev) continue;
        const [x, y] = fwd ? [a, b] : [b, a];
        if (c.when && !c.when(x, y)) continue;
        return [i, j, typeof c.reason === 'string' ? c.reason : c.reason(x, y)];
      }
    }
  }
  return undefined;
}
