// LLaMA-family configuration from an HF config.json. Reads both dialects:
// transformers 4 (rope_theta, rope_scaling, torch_dtype) and transformers 5
// (rope_parameters, dtype). Unknown keys are ignored (configs carry many).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';

export interface LlamaConfig {
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  /** Linear RoPE position scaling: positions are divided by this (1 = none). */
  readonly ropeLinearFactor: number;
  readonly tieWordEmbeddings: boolean;
  readonly attentionBias: boolean;
  readonly mlpBias: boolean;
  readonly maxPositionEmbeddings: number;
  /** Storage dtype of the checkpoint (compute is f32 regardless). */
  readonly torchDtype: 'float32' | 'float16' | 'bfloat16';
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  /** Every end-of-sequence id (`eos_token_id` may be a list); generation stops on any. */
  readonly eosTokenIds?: readonly number[];
  readonly padTokenId?: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const posInt = z.number().int().positive();
const ropeScaling = z
  .looseObject({
    rope_type: z.string().optional(),
    type: z.string().optional(),
    factor: z.number().positive().optional(),
    rope_theta: z.number().positive().optional(),
  })
  .nullable()
  .optional();

const hfConfig = z.looseObject({
  model_type: z.string().optional(),
  vocab_size: posInt,
  hidden_size: posInt,
  intermediate_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullable().optional(),
  head_dim: posInt.nullable().optional(),
  rms_norm_eps: z.number().positive().default(1e-6),
  rope_theta: z.number().positive().optional(),
  rope_scaling: ropeScaling,
  rope_parameters: ropeScaling,
  tie_word_embeddings: z.boolean().default(false),
  attention_bias: z.boolean().default(false),
  mlp_bias: z.boolean().default(false),
  hidden_act: z.string().default('silu'),
  max_position_embeddings: posInt.default(2048),
  torch_dtype: z.string().nullable().optional(),
  dtype: z.string().nullable().optional(),
  bos_token_id: z
    .union([z.number().int(), z.array(z.number().int())])
    .nullable()
    .optional(),
  eos_token_id: z
    .union([z.number().int(), z.array(z.number().int())])
    .nullable()
    .optional(),
  pad_token_id: z.number().int().nullable().optional(),
});

const SUPPORTED_TYPES = new Set(['llama', 'mistral', 'qwen2', 'smollm', 'tinyllama']);

function firstId(v: number | number[] | null | undefined): number | undefined {
  if (v === null || v === undefined) return undefined;
  return Array.isArray(v) ? v[0] : v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 37)}...` : v);
  return typeof v === 'object' ? 'an object' : String(v);
}

const EXPECTED: Record<string, string> = {
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  string: 'a string',
  object: 'an object',
};

// Zod's wording ("Invalid input: expected number, received undefined") as a sentence
// about the key: "num_attention_heads is missing", "... must be a positive integer, got 2.5".
function plainIssue(issue: z.core.$ZodIssue, json: unknown): string {
  const key = issue.path.map(String).join('.');
  let got: unknown = json;
  for (const p of issue.path) got = (got as Record<PropertyKey, unknown> | undefined)?.[p];
  if (got === undefined) return `${key} is missing`;
  const want =
    issue.code === 'invalid_type'
      ? (EXPECTED[issue.expected] ?? `a ${issue.expected}`)
      : issue.code === 'too_small'
        ? 'greater than 0'
        : issue.code === 'invalid_union'
          ? 'a token id or a list of token ids'
          : issue.message.replace(/^Invalid input: /, '');
  return `${key} must be ${want}, got ${describe(got)}`;
}

/** Parses an HF config object; `file` is used in error messages. */
export function parseLlamaConfig(json: unknown, file = 'config.json'): LlamaConfig {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new ConfigError(`${file}: expected a JSON object of model settings, got ${describe(json)}`);
  const r = hfConfig.safeParse(json);
  if (!r.success) throw new ConfigError(`${file}: ${plainIssue(r.error.issues[0], json)}`);
  const c = r.data;
  if (c.model_type && !SUPPORTED_TYPES.has(c.model_type)) {
    throw new ConfigError(
      `${file}: model_type '${c.model_type}' is not a LLaMA-family decoder (supported: ${[...SUPPORTED_TYPES].join(', ')})`,
    );
  }
  if (c.hidden_act !== 'silu')
    throw new ConfigError(`${file}: hidden_act '${c.hidden_act}' is not supported (LLaMA uses silu)`);
  const scaling = c.rope_parameters ?? c.rope_scaling ?? null;
  const ropeType = scaling?.rope_type ?? scaling?.type ?? 'default';
  if (ropeType !== 'default' && ropeType !== 'linear') {
    throw new ConfigError(
      `${file}: rope type '${ropeType}' is not supported yet (supported: default, linear)`,
    );
  }
  const numKvHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKvHeads !== 0) {
    throw new ConfigError(
      `${file}: num_attention_heads ${c.num_attention_heads} is not a multiple of num_key_value_heads ${numKvHeads}`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ConfigError(
      `${file}: head_dim ${headDim} must be an even integer (hidden_size / num_attention_heads)`,
    );
  }
  const dt = c.dtype ?? c.torch_dtype ?? 'float32';
  const torchDtype = dt === 'bfloat16' || dt === 'float16' ? dt : 'float32';
  return {
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKvHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: scaling?.rope_theta ?? c.rope_theta ?? 10000,
    ropeLinearFactor: ropeType === 'linear' ? (scaling?.factor ?? 1) : 1,
    tieWordEmbeddings: c.tie_word_embeddings,
    attentionBias: c.attention_bias,
    mlpBias: c.mlp_bias,
    maxPositionEmbeddings: c.max_position_embeddings,
    torchDtype,
    bosTokenId: firstId(c.bos_token_id),
    eosTokenId: firstId(c.eos_token_id),
    eosTokenIds:
      c.eos_token_id === null || c.eos_token_id === undefined ? undefined : [c.eos_token_id].flat(),
    padTokenId: c.pad_token_id ?? undefined,
  };
}

export function readLlamaConfig(dir: string): LlamaConfig {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new ConfigError(
      `${file}: cannot read the model config (is '${dir}' a Hugging Face model directory?)`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return parseLlamaConfig(json, file);
}

/** The safetensors storage dtype for a torch dtype name (`bfloat16` -> bf16, ...; default f32). */
export function storageDtype(torchDtype: string | null | undefined): 'f32' | 'f16' | 'bf16' {
  return torchDtype === 'bfloat16' ? 'bf16' : torchDtype === 'float16' ? 'f16' : 'f32';
}

/** The HF config.json (transformers 4 dialect) for a config, for writing merged models. */
export function toHfConfig(c: LlamaConfig): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeLinearFactor !== 1 ? { rope_type: 'linear', factor: c.ropeLinearFactor } : null,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    mlp_bias: c.mlpBias,
    hidden_act: 'silu',
    max_position_embeddings: c.maxPositionEmbeddings,
    torch_dtype: c.torchDtype,
    bos_token_id: c.bosTokenId ?? null,
    eos_token_id: c.eosTokenIds && c.eosTokenIds.length > 1 ? [...c.eosTokenIds] : (c.eosTokenId ?? null),
    pad_token_id: c.padTokenId ?? null,
  };
}
