// adapter_config.json for LoRA, as PEFT's LoraConfig writes it. Parsing tolerates missing
// keys (filled with LoraConfig's defaults) and keeps unknown keys, so a read-then-write
// round trip preserves everything PEFT (or a newer PEFT) put there.
import { z } from 'zod';
import { FormatError } from '../errors.ts';

const strOrList = z.union([z.string(), z.array(z.string())]);

/** Defaults are PEFT's `LoraConfig` / `PeftConfig` field defaults. */
export const loraConfigSchema = z.looseObject({
  peft_type: z.string().default('LORA'),
  task_type: z.string().nullable().default(null),
  base_model_name_or_path: z.string().nullable().default(null),
  revision: z.string().nullable().default(null),
  inference_mode: z.boolean().default(false),
  r: z.number().int().positive().default(8),
  lora_alpha: z.number().default(8),
  lora_dropout: z.number().min(0).max(1).default(0),
  target_modules: strOrList.nullable().default(null),
  exclude_modules: strOrList.nullable().default(null),
  fan_in_fan_out: z.boolean().default(false),
  bias: z.enum(['none', 'all', 'lora_only']).default('none'),
  use_rslora: z.boolean().default(false),
  use_dora: z.boolean().default(false),
  lora_bias: z.boolean().default(false),
  modules_to_save: z.array(z.string()).nullable().default(null),
  init_lora_weights: z.union([z.boolean(), z.string()]).default(true),
  layers_to_transform: z
    .union([z.number().int(), z.array(z.number().int())])
    .nullable()
    .default(null),
  layers_pattern: strOrList.nullable().default(null),
  rank_pattern: z.record(z.string(), z.number().int().positive()).nullable().default({}),
  alpha_pattern: z.record(z.string(), z.number()).nullable().default({}),
});

export type LoraAdapterConfig = z.infer<typeof loraConfigSchema>;

/** `json` checked against an adapter_config.json schema; the first problem names `file` and the field. */
export function parseConfigFields<S extends z.ZodType>(schema: S, json: unknown, file: string): z.output<S> {
  const r = schema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FormatError(file, `invalid value: ${i.message}`, i.path.join('.') || '(root)');
  }
  return r.data;
}

/** Validates a parsed LoRA adapter_config.json object; `file` is named in errors. */
export function parseLoraConfig(json: unknown, file = 'adapter_config.json'): LoraAdapterConfig {
  const c = parseConfigFields(loraConfigSchema, json, file);
  if (c.peft_type !== 'LORA') {
    throw new FormatError(
      file,
      `peft_type '${c.peft_type}' is not supported (peftc reads LORA and ADALORA adapters, and its own MALORA_MOE)`,
      'peft_type',
    );
  }
  for (const [field, pat] of [
    ['rank_pattern', c.rank_pattern],
    ['alpha_pattern', c.alpha_pattern],
  ] as const) {
    for (const key of Object.keys(pat ?? {})) {
      try {
        patternRegex(key);
      } catch (e) {
        throw new FormatError(
          file,
          `not a valid regular expression: ${(e as Error).message}`,
          `${field}.${key}`,
        );
      }
    }
  }
  return c;
}

/** A config with every default filled in (PEFT's `LoraConfig()` plus the given fields). */
export function loraConfig(
  fields: Partial<LoraAdapterConfig> & Record<string, unknown> = {},
): LoraAdapterConfig {
  return parseLoraConfig(fields, '(config)');
}

function patternRegex(key: string): RegExp {
  // PEFT's get_pattern_key: re.match(rf"(.*\.)?({key})$", name), i.e. a full match.
  return new RegExp(`^(?:.*\\.)?(?:${key})$`);
}

/** The first pattern key (in the config's order) that matches `module`, as PEFT's get_pattern_key. */
export function matchPatternKey(
  patterns: Record<string, unknown> | null,
  module: string,
): string | undefined {
  for (const key of Object.keys(patterns ?? {})) if (patternRegex(key).test(module)) return key;
  return undefined;
}

/** LoRA rank for a module (its HF path, e.g. `model.layers.0.self_attn.q_proj`): rank_pattern, else r. */
export function rankFor(config: LoraAdapterConfig, module: string): number {
  const key = matchPatternKey(config.rank_pattern, module);
  return key === undefined ? config.r : config.rank_pattern![key];
}

/** LoRA alpha for a module: alpha_pattern, else lora_alpha. */
export function alphaFor(config: LoraAdapterConfig, module: string): number {
  const key = matchPatternKey(config.alpha_pattern, module);
  return key === undefined ? config.lora_alpha : config.alpha_pattern![key];
}

/** The LoRA scale for a module: alpha / r, or alpha / sqrt(r) with rsLoRA (PEFT's update_layer). */
export function scalingFor(config: LoraAdapterConfig, module: string): number {
  const r = rankFor(config, module);
  const a = alphaFor(config, module);
  return config.use_rslora ? a / Math.sqrt(r) : a / r;
}

function sortKeysDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeysDeep);
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, sortKeysDeep(o[k])]),
    );
  }
  return v;
}

/** JSON text as PEFT writes it: `json.dumps(config, indent=2, sort_keys=True)`. */
export function formatLoraConfig(config: object): string {
  return JSON.stringify(sortKeysDeep(config), null, 2);
}
