// Recipes: which methods, in which order, and how to train (DESIGN.md "Recipe format").
// A JSON file or the same object from TypeScript. Validation errors name the JSON path
// and what was expected; unknown keys get a did-you-mean; conflicting methods are
// rejected with a reason (conflicts.ts). Defaults: the methods' own (PEFT's), and
// PyTorch's for the optimizer; what a recipe leaves out is not done (no schedule =
// constant lr, no max_grad_norm = no clipping).
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Graph } from '../ir/graph.ts';
import {
  type PipelineOptions,
  type PipelineResult,
  type PipelineStep,
  runPipeline,
} from '../passes/pipeline.ts';
import { findConflict, type MethodEntry } from './conflicts.ts';
import { formatIssues, formatPath } from './issues.ts';
import { shapedEntries } from './recipe-bind.ts';
import { getMethod, hasMethod, methodNames } from './registry.ts';
import { closest } from './suggest.ts';

export class RecipeError extends Error {
  override name = 'RecipeError';
  constructor(
    message: string,
    /** JSON path of the (first) problem, e.g. `methods[1].rnak`. */
    readonly path: string,
    readonly file?: string,
    /** Every problem found, one line each. */
    readonly problems: readonly string[] = [message],
  ) {
    super(file ? `${file}: ${message}` : message);
  }
}

const lr = z.number().positive();
const beta = z.number().min(0).lt(1);

/**
 * GaLore's layer-wise update (the official `*_per_layer` optimizers): each param's update
 * runs as soon as its gradient is final, and that gradient's buffer is freed there, so the
 * gradients of the whole model are never held at once (passes/optimizer/per-layer.ts).
 */
const perLayer = { per_layer: z.boolean().default(false) };

const adamwKeys = {
  lr: lr.default(1e-3),
  betas: z.tuple([beta, beta]).default([0.9, 0.999]),
  eps: z.number().positive().default(1e-8),
  weight_decay: z.number().min(0).default(0.01),
  ...perLayer,
};
/** bitsandbytes' min_8bit_size: smaller params keep 32-bit state. */
const min8bit = { min_8bit_size: z.number().int().min(0).default(4096) };

// adamw8bit = bitsandbytes AdamW8bit; paged_adamw / paged_adamw8bit = PagedAdamW /
// PagedAdamW8bit (transformers: optim="paged_adamw_32bit" / "paged_adamw_8bit"): state on the
// host, streamed to the device for its update (passes/optimizer/adamw8bit.ts, backends/webgpu/paging.ts).
export const optimizerSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('adamw'), ...adamwKeys }),
  z.strictObject({ type: z.literal('adamw8bit'), ...adamwKeys, ...min8bit }),
  z.strictObject({ type: z.literal('paged_adamw'), ...adamwKeys }),
  z.strictObject({ type: z.literal('paged_adamw8bit'), ...adamwKeys, ...min8bit }),
  z.strictObject({
    type: z.literal('sgd'),
    lr: lr.default(1e-3),
    momentum: z.number().min(0).default(0),
    dampening: z.number().min(0).default(0),
    weight_decay: z.number().min(0).default(0),
    nesterov: z.boolean().default(false),
    ...perLayer,
  }),
]);

export const scheduleSchema = z.strictObject({
  type: z.enum(['constant', 'linear', 'cosine']),
  warmup_steps: z.number().int().min(0).default(0),
});

const positiveInt = z.number().int().positive();

/**
 * A param_groups pattern as the trainer matches it: a regex over a param's whole name
 * (`.*lora_B.*`, not the glob `*lora_B*`).
 */
export function paramPattern(pattern: string): RegExp {
  return new RegExp(`^(?:${pattern})$`);
}

// A bad pattern is a recipe error at its JSON path, not a SyntaxError at training time.
function checkPattern(pattern: string, ctx: z.RefinementCtx): void {
  try {
    paramPattern(pattern);
  } catch (e) {
    // "Invalid regular expression: /^(?:*x)$/: Nothing to repeat" -> "nothing to repeat"
    const why = (e as Error).message.replace(/^.*: /s, '');
    // A glob-style `*` is the usual cause; the hint is noise for other mistakes.
    const hint = pattern.includes('*') ? ' (the pattern is anchored; use .* not *)' : '';
    ctx.addIssue({
      code: 'custom',
      message: `not a valid regular expression: ${why.charAt(0).toLowerCase()}${why.slice(1)}${hint}`,
    });
  }
}

export const recipeSchema = z
  .strictObject({
    /** Applied in order; each entry is {method, ...that method's options}. */
    methods: z.array(z.record(z.string(), z.unknown())).min(1),
    optimizer: optimizerSchema.default({
      type: 'adamw',
      per_layer: false,
      lr: 1e-3,
      betas: [0.9, 0.999],
      eps: 1e-8,
      weight_decay: 0.01,
    }),
    schedule: scheduleSchema.default({ type: 'constant', warmup_steps: 0 }),
    max_grad_norm: z.number().positive().nullable().default(null),
    checkpointing: z.boolean().default(false),
    steps: positiveInt.optional(),
    batch_size: positiveInt.optional(),
    seq_len: positiveInt.optional(),
    gradient_accumulation_steps: positiveInt.default(1),
    seed: z.number().int().min(0).default(0),
    /** Fraction of the data's rows held out for eval, in [0, 1) (the trainer's default 0.1; 0: no eval). */
    eval_fraction: z.number().min(0).lt(1).optional(),
    /**
     * Optimizer param groups (torch.optim style), first match wins; params no group
     * names keep the optimizer's lr and weight_decay. `params` is a regex that must
     * match a param's whole name, or a list of exact names.
     */
    param_groups: z
      .array(
        z.strictObject({
          name: z.string().min(1).optional(),
          params: z.union([z.string().min(1).superRefine(checkPattern), z.array(z.string().min(1)).min(1)]),
          lr: lr.optional(),
          weight_decay: z.number().min(0).optional(),
        }),
      )
      .default([]),
  })
  .superRefine((r, ctx) => {
    // As the official layer-wise GaLore: clipping needs every gradient before any update,
    // and accumulation applies the update only on the last micro-step, so neither frees anything.
    if (!r.optimizer.per_layer) return;
    const why =
      r.max_grad_norm !== null
        ? 'cannot be used with max_grad_norm (global-norm clipping needs every gradient before the first update); set max_grad_norm to null'
        : r.gradient_accumulation_steps > 1
          ? 'cannot be used with gradient_accumulation_steps > 1 (the update waits for the last micro-batch); use 1'
          : undefined;
    if (why) ctx.addIssue({ code: 'custom', path: ['optimizer', 'per_layer'], message: why });
  });

export type OptimizerConfig = z.output<typeof optimizerSchema>;
export type ScheduleConfig = z.output<typeof scheduleSchema>;

export interface ResolvedMethod {
  readonly method: string;
  /** The method's options with every default filled in. */
  readonly options: Readonly<Record<string, unknown>>;
}

export type Recipe = Omit<z.output<typeof recipeSchema>, 'methods'> & {
  readonly methods: readonly ResolvedMethod[];
};
/** What a recipe file (or the TS API) may contain. */
export type RecipeInput = z.input<typeof recipeSchema> & {
  methods: Array<{ method: string } & Record<string, unknown>>;
};

function fail(lines: { path: string; line: string }[], file?: string): never {
  const head = lines[0];
  const more =
    lines.length > 1
      ? `\n${lines
          .slice(1)
          .map((l) => `  ${l.line}`)
          .join('\n')}`
      : '';
  throw new RecipeError(
    `${head.line}${more}`,
    head.path,
    file,
    lines.map((l) => l.line),
  );
}

function checkMethod(entry: unknown, i: number, file?: string): ResolvedMethod {
  const at = ['methods', i] as const;
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry))
    fail(
      [{ path: formatPath(at), line: `${formatPath(at)}: expected an object like {"method": "lora", ...}` }],
      file,
    );
  const { method, ...rest } = entry as Record<string, unknown>;
  const mpath = formatPath([...at, 'method']);
  if (typeof method !== 'string') {
    fail(
      [{ path: mpath, line: `${mpath}: expected a method name (known: ${methodNames().join(', ')})` }],
      file,
    );
  }
  if (!hasMethod(method)) {
    const near = closest(method, methodNames());
    fail(
      [
        {
          path: mpath,
          line: `${mpath}: unknown method '${method}'${near ? `; did you mean ${near}?` : ''} (known: ${methodNames().join(', ')})`,
        },
      ],
      file,
    );
  }
  const schema = getMethod(method).options;
  const parsed = schema.safeParse(rest);
  if (!parsed.success) fail(formatIssues(parsed.error, schema, rest, at), file);
  return { method, options: parsed.data as Record<string, unknown> };
}

/** Validates a recipe object and fills every default. Throws RecipeError. */
export function parseRecipe(json: unknown, opts: { file?: string } = {}): Recipe {
  const { file } = opts;
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    fail([{ path: '(top level)', line: 'a recipe is a JSON object with a "methods" list' }], file);
  const parsed = recipeSchema.safeParse(json);
  if (!parsed.success) fail(formatIssues(parsed.error, recipeSchema, json), file);
  const methods = parsed.data.methods.map((m, i) => checkMethod(m, i, file));
  const c = findConflict(methods.map((m) => ({ ...m.options, method: m.method }) as MethodEntry));
  if (c) {
    const [i, j, reason] = c;
    const path = `methods[${j}]`;
    fail(
      [
        {
          path,
          line: `${path}: '${methods[j].method}' conflicts with methods[${i}] '${methods[i].method}': ${reason}`,
        },
      ],
      file,
    );
  }
  // Entries that shape a later one (rank-rule -> lora) must have one to shape.
  const shaped = shapedEntries(methods);
  if (!(shaped instanceof Map)) fail([shaped], file);
  return { ...parsed.data, methods };
}

/** The TypeScript form of a recipe file: same checks, same result. */
export function defineRecipe(input: RecipeInput): Recipe {
  return parseRecipe(input);
}

/** Reads and validates a recipe file; errors name the file. */
export function loadRecipe(file: string): Recipe {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new RecipeError(`cannot read the recipe: ${(e as Error).message}`, '(file)', file);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RecipeError(`not valid JSON: ${(e as Error).message}`, '(file)', file);
  }
  return parseRecipe(json, { file });
}

/** The fully resolved recipe as plain JSON (every default filled in), to write beside a run's output. */
export function resolveRecipe(r: Recipe | RecipeInput): Record<string, unknown> {
  const rec = isResolved(r) ? r : parseRecipe(r);
  const { methods, ...rest } = rec;
  return { methods: methods.map((m) => ({ method: m.method, ...m.options })), ...rest };
}

function isResolved(r: Recipe | RecipeInput): r is Recipe {
  return (r.methods as readonly object[]).every(
    (m) => 'options' in m && typeof (m as ResolvedMethod).options === 'object' && Object.keys(m).length === 2,
  );
}

/** The method passes of a recipe, in order. */
export function recipePipeline(r: Recipe): PipelineStep[] {
  return r.methods.map((m) => ({ name: m.method, options: m.options }));
}

/** Runs a recipe's methods on a graph. */
export function applyRecipe(g: Graph, r: Recipe, opts: PipelineOptions = {}): PipelineResult {
  return runPipeline(g, recipePipeline(r), opts);
}
