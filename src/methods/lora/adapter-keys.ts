// Keys every PEFT-style adapter config shares (LoRA, AdaLoRA, MaLoRA, the MALoRA mixture),
// with one schema and one set of PEFT's checks, so each method reads them the same way.
import { z } from 'zod';

export const adapterKeys = {
  adapter_name: z
    .string()
    .regex(/^[A-Za-z0-9_-]+$/, 'adapter names are letters, digits, _ and - (they become part of param names)')
    .default('default'),
  /** Accepted for PEFT compatibility; not used. */
  task_type: z.string().nullable().optional(),
};

/** A positive integer whose errors say so (`what` names it: 'a positive integer'). */
export const posInt = (what: string) =>
  z
    .number({ error: `expected ${what}` })
    .int({ error: `expected ${what}` })
    .positive({ error: `expected ${what}` });

/** A module list (suffix match) or one regex string (full match), as PEFT takes them. */
export const moduleNames = z.union([z.string().min(1), z.array(z.string().min(1))]);

/** LoraConfig's dropout on the adapter's input. */
export const loraDropout = z
  .number({ error: 'expected a number in [0, 1)' })
  .min(0, { error: 'expected a number in [0, 1)' })
  .lt(1, { error: 'expected a number in [0, 1)' })
  .default(0);

/** LoraConfig's target-selection keys besides target_modules (its default differs by method). */
export const targetKeys = {
  exclude_modules: moduleNames.nullable().default(null),
  layers_to_transform: z
    .union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())])
    .nullable()
    .default(null),
  layers_pattern: moduleNames.nullable().default(null),
};

interface TargetFields {
  readonly target_modules: string | readonly string[];
  readonly layers_to_transform: number | readonly number[] | null;
  readonly layers_pattern: string | readonly string[] | null;
}

/** PEFT's LoraConfig.__post_init__ checks on the target keys, as zod issues. */
export function checkTargetKeys(o: TargetFields, ctx: z.RefinementCtx): void {
  // As in PEFT, a string includes "all-linear" (a string until expanded).
  if (typeof o.target_modules === 'string')
    for (const key of ['layers_to_transform', 'layers_pattern'] as const)
      if (o[key] !== null)
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message:
            'cannot be used when target_modules is a string (a regex or all-linear); use a list of module names',
        });
  // PEFT tests `if self.layers_pattern and ...`: an empty list is allowed alone.
  if (o.layers_pattern !== null && o.layers_pattern.length > 0 && o.layers_to_transform === null)
    ctx.addIssue({ code: 'custom', path: ['layers_pattern'], message: 'needs layers_to_transform as well' });
}
