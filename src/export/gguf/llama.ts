// llama.cpp's view of a LLaMA checkpoint: its tensor names (llama.cpp's LLM_TENSOR_NAMES,
// as convert_hf_to_gguf.py maps Hugging Face names), its hyperparameter keys (gguf-py
// constants.py Keys.LLM / Keys.Attention / Keys.Rope) and the RoPE row order of q and k.
import type { GgufValue } from '../../io/gguf/index.ts';
import type { LlamaConfig } from '../../models/llama/config.ts';

const MODULES: Record<string, string> = {
  'self_attn.q_proj': 'attn_q',
  'self_attn.k_proj': 'attn_k',
  'self_attn.v_proj': 'attn_v',
  'self_attn.o_proj': 'attn_output',
  'mlp.gate_proj': 'ffn_gate',
  'mlp.up_proj': 'ffn_up',
  'mlp.down_proj': 'ffn_down',
  input_layernorm: 'attn_norm',
  post_attention_layernorm: 'ffn_norm',
};
const TOP: Record<string, string> = {
  'model.embed_tokens': 'token_embd',
  'model.norm': 'output_norm',
  lm_head: 'output',
};
const LAYER = /^model\.layers\.(\d+)\.(.+)$/;

/** llama.cpp's name of a Hugging Face module (`model.layers.3.self_attn.q_proj` -> `blk.3.attn_q`). */
export function ggufModuleName(module: string): string | undefined {
  if (TOP[module]) return TOP[module];
  const m = LAYER.exec(module);
  const leaf = m && MODULES[m[2]];
  return leaf ? `blk.${m[1]}.${leaf}` : undefined;
}

/** The tensors of a LLaMA checkpoint that llama.cpp reads: HF name -> GGUF name, in llama.cpp's order. */
export function llamaTensorNames(c: LlamaConfig): [hf: string, gguf: string][] {
  const out: [string, string][] = [['model.embed_tokens.weight', 'token_embd.weight']];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    const add = (module: string, leaf: 'weight' | 'bias') =>
      out.push([`${p}.${module}.${leaf}`, `blk.${l}.${MODULES[module]}.${leaf}`]);
    add('input_layernorm', 'weight');
    for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) {
      add(`self_attn.${m}`, 'weight');
      if (c.attentionBias) add(`self_attn.${m}`, 'bias');
    }
    add('post_attention_layernorm', 'weight');
    for (const m of ['gate_proj', 'up_proj', 'down_proj']) {
      add(`mlp.${m}`, 'weight');
      if (c.mlpBias) add(`mlp.${m}`, 'bias');
    }
  }
  out.push(['model.norm.weight', 'output_norm.weight']);
  // A tied head has no tensor of its own: llama.cpp then uses token_embd for the output.
  if (!c.tieWordEmbeddings) out.push(['lm_head.weight', 'output.weight']);
  return out;
}

/**
 * The heads whose rows a q or k tensor (weight, bias or LoRA B) is permuted over, or 0 when it
 * is not one. llama.cpp's llama rotates adjacent pairs (x[2i], x[2i+1]); Hugging Face's
 * rotate_half pairs x[i] with x[i + d/2]: convert_hf_to_gguf.py's LlamaModel.permute
 * reorders each head's rows so that llama.cpp's pairs are Hugging Face's.
 */
export function ropeHeads(ggufName: string, c: LlamaConfig): number {
  const m = /^blk\.\d+\.attn_([qk])(\.|$)/.exec(ggufName);
  return !m ? 0 : m[1] === 'q' ? c.numHeads : c.numKvHeads;
}

/**
 * Rows of a row-major [rows, cols] reordered per head: within each head of d rows, new row
 * 2j + c is old row c * d/2 + j (torch: reshape(h, 2, d/2, cols).swapaxes(1, 2)).
 */
export function permuteRopeRows(
  data: ArrayLike<number>,
  rows: number,
  cols: number,
  heads: number,
): Float32Array {
  const d = rows / heads;
  if (!Number.isInteger(d) || d % 2 !== 0)
    throw new Error(`cannot permute ${rows} rows for RoPE over ${heads} heads (head size must be even)`);
  const out = new Float32Array(rows * cols);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < d / 2; j++)
      for (let c = 0; c < 2; c++) {
        const from = (h * d + c * (d / 2) + j) * cols;
        const to = (h * d + 2 * j + c) * cols;
        for (let k = 0; k < cols; k++) out[to + k] = data[from + k];
      }
  return out;
}

const u32 = (value: number): GgufValue => ({ type: 'u32', value });
const f32 = (value: number): GgufValue => ({ type: 'f32', value });
const str = (value: string): GgufValue => ({ type: 'string', value });

/** general.* and llama.* hyperparameters (what convert_hf_to_gguf.py writes for LlamaForCausalLM). */
export function llamaMetadata(
  c: LlamaConfig,
  o: { name: string; fileType?: number; ropeLinearFactor?: number },
): [string, GgufValue][] {
  const factor = o.ropeLinearFactor ?? c.ropeLinearFactor;
  const kv: [string, GgufValue][] = [
    ['general.architecture', str('llama')],
    ['general.type', str('model')],
    ['general.name', str(o.name)],
    ['llama.vocab_size', u32(c.vocabSize)],
    ['llama.context_length', u32(c.maxPositionEmbeddings)],
    ['llama.embedding_length', u32(c.hiddenSize)],
    ['llama.block_count', u32(c.numLayers)],
    ['llama.feed_forward_length', u32(c.intermediateSize)],
    ['llama.attention.head_count', u32(c.numHeads)],
    ['llama.attention.head_count_kv', u32(c.numKvHeads)],
    ['llama.attention.key_length', u32(c.headDim)],
    ['llama.attention.value_length', u32(c.headDim)],
    ['llama.attention.layer_norm_rms_epsilon', f32(c.rmsNormEps)],
    ['llama.rope.freq_base', f32(c.ropeTheta)],
    ['llama.rope.dimension_count', u32(c.headDim)],
  ];
  if (factor !== 1)
    kv.push(['llama.rope.scaling.type', str('linear')], ['llama.rope.scaling.factor', f32(factor)]);
  if (o.fileType !== undefined) kv.push(['general.file_type', u32(o.fileType)]);
  return kv;
}
