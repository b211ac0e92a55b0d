// Builds the forward graph of an HF LlamaForCausalLM. Node scopes are HF module
// paths and param names HF state-dict keys, so PEFT-style target matching and
// checkpoint loading work on names users already know. Shapes only: no weights
// are touched here, so a 70B graph builds in milliseconds.
import { ASSIGN_PREFIX } from '../../backends/backend.ts';
import { GraphBuilder, type Value } from '../../ir/builder.ts';
import type { Graph } from '../../ir/graph.ts';
import type { LlamaConfig } from './config.ts';

export interface LlamaShape {
  readonly batch: number;
  readonly seq: number;
}

export interface LlamaBuildOptions {
  /**
   * Add a `labels` input (i32 [B,S], -100 = ignore) and a `loss` output (HF causal-LM
   * loss), and a scalar i32 `step` input (1-based training step) that dropout masks
   * and the optimizer read.
   */
  readonly loss?: boolean;
  /** Keep the `logits` output (default true). */
  readonly logits?: boolean;
  /**
   * Decode with a KV cache (src/generate): the graph takes `seq` new tokens per row and
   * keeps keys/values of up to `maxLen` positions per row in params `kv.<layer>.k|v`
   * (state, f32 [batch, kv_heads, maxLen, head_dim]), written back through `assign:`
   * outputs, so one compiled graph appends to the cache in place run after run. Every
   * row has its own positions and length, set by these inputs (src/generate/feeds.ts):
   * - `positions` i32 [B,S]: rope position of each new token;
   * - `kv_write` f32 [B,1,maxLen,S]: one-hot, slot t of row b takes new token s;
   * - `kv_keep` f32 [B,1,maxLen,1]: 1 where the old cache entry stays, 0 where written;
   * - `attn_bias` f32 [B,1,S,maxLen]: additive mask, 0 where new token s sees slot t;
   * - `last_token` f32 [B,1,S] (only when S > 1): one-hot, the position whose logits to return.
   * Outputs `logits` [B,1,V] (the next-token logits of each row) and the assigns.
   */
  readonly kvCache?: { readonly maxLen: number };
}

/** The inputs of a KV-cache graph (LlamaBuildOptions.kvCache), shared by the attention of every layer. */
interface KvInputs {
  readonly maxLen: number;
  readonly write: Value;
  readonly keep: Value;
  readonly bias: Value;
  /** Cache values to write back: [param name, new value]. */
  readonly assigns: [string, Value][];
}

/** Name of the KV-cache param of a layer: `kv.<layer>.k` or `kv.<layer>.v`. */
export function kvParamName(layer: number, which: 'k' | 'v'): string {
  return `kv.${layer}.${which}`;
}

/** True for the name of a KV-cache param. */
export function isKvParam(name: string): boolean {
  return /^kv\.\d+\.[kv]$/.test(name);
}

function projection(b: GraphBuilder, x: Value, name: string, out: number, inF: number, bias: boolean): Value {
  return b.withScope(name, () => {
    const w = b.param(`${b.scope}.weight`, 'f32', [out, inF]);
    const bb = bias ? b.param(`${b.scope}.bias`, 'f32', [out]) : undefined;
    return b.linear(x, w, bb);
  });
}

function rmsnorm(b: GraphBuilder, x: Value, name: string, dim: number, eps: number): Value {
  return b.withScope(name, () => b.rmsnorm(x, b.param(`${b.scope}.weight`, 'f32', [dim]), eps));
}

function attention(
  b: GraphBuilder,
  c: LlamaConfig,
  x: Value,
  positions: Value,
  shape: LlamaShape,
  layer: number,
  kv?: KvInputs,
): Value {
  const { batch: B, seq: S } = shape;
  const D = c.headDim;
  // A decode step (one new token per row) moves no data between [B,S,n,D] and [B,n,S,D]:
  // a reshape (a view) instead of a transpose kernel.
  const view = !!kv && S === 1;
  const heads = (v: Value, n: number) =>
    view ? b.reshape(v, [B, n, S, D]) : b.transpose(b.reshape(v, [B, S, n, D]), 1, 2);
  const q = heads(projection(b, x, 'q_proj', c.numHeads * D, c.hiddenSize, c.attentionBias), c.numHeads);
  const k = heads(projection(b, x, 'k_proj', c.numKvHeads * D, c.hiddenSize, c.attentionBias), c.numKvHeads);
  const v = heads(projection(b, x, 'v_proj', c.numKvHeads * D, c.hiddenSize, c.attentionBias), c.numKvHeads);
  const ropeAttrs = { theta: c.ropeTheta, scaling_factor: c.ropeLinearFactor };
  const [qr, kr] = b.withScope('rotary_emb', () => [
    b.rope(q, positions, ropeAttrs),
    b.rope(k, positions, ropeAttrs),
  ]);
  let o: Value;
  if (kv) {
    // cache' = cache * keep + write @ new: scatters the new keys/values into their slots.
    const cached = (which: 'k' | 'v', fresh: Value) => {
      const name = kvParamName(layer, which);
      const cache = b.param(name, 'f32', [B, c.numKvHeads, kv.maxLen, D], 'state', { kind: 'zeros' });
      // With one new token the scatter is a broadcast product, which fuses with the rest.
      const scattered = S === 1 ? b.mul(kv.write, fresh) : b.matmul(kv.write, fresh);
      const next = b.add(b.mul(cache, kv.keep), scattered);
      kv.assigns.push([name, next]);
      return next;
    };
    o = b.attention(qr, cached('k', kr), cached('v', v), kv.bias, { causal: false });
  } else o = b.attention(qr, kr, v, undefined, { causal: true });
  const merged = b.reshape(view ? o : b.transpose(o, 1, 2), [B, S, c.numHeads * D]);
  return projection(b, merged, 'o_proj', c.hiddenSize, c.numHeads * D, c.attentionBias);
}

function mlp(b: GraphBuilder, c: LlamaConfig, x: Value): Value {
  const gate = projection(b, x, 'gate_proj', c.intermediateSize, c.hiddenSize, c.mlpBias);
  const up = projection(b, x, 'up_proj', c.intermediateSize, c.hiddenSize, c.mlpBias);
  const act = b.withScope('act_fn', () => b.silu(gate));
  return projection(b, b.mul(act, up), 'down_proj', c.hiddenSize, c.intermediateSize, c.mlpBias);
}

/** The forward graph: input `input_ids` i32 [B,S]; outputs `logits` [B,S,V] and optionally `loss`. */
export function buildLlama(c: LlamaConfig, shape: LlamaShape, opts: LlamaBuildOptions = {}): Graph {
  const { batch: B, seq: S } = shape;
  const b = new GraphBuilder();
  const ids = b.input('input_ids', 'i32', [B, S]);
  const labels = opts.loss ? b.input('labels', 'i32', [B, S]) : undefined;
  if (opts.loss) b.input('step', 'i32', []);
  const maxLen = opts.kvCache?.maxLen;
  const positions =
    maxLen === undefined
      ? b.const(
          Array.from({ length: S }, (_, i) => i),
          [S],
          'i32',
        )
      : b.input('positions', 'i32', [B, S]);
  const kv: KvInputs | undefined =
    maxLen === undefined
      ? undefined
      : {
          maxLen,
          write: b.input('kv_write', 'f32', [B, 1, maxLen, S]),
          keep: b.input('kv_keep', 'f32', [B, 1, maxLen, 1]),
          bias: b.input('attn_bias', 'f32', [B, 1, S, maxLen]),
          assigns: [],
        };
  const last = kv && S > 1 ? b.input('last_token', 'f32', [B, 1, S]) : undefined;
  let embedW: Value | undefined;
  let h = b.withScope('model.embed_tokens', () => {
    embedW = b.param(`${b.scope}.weight`, 'f32', [c.vocabSize, c.hiddenSize]);
    return b.embedding(embedW, ids);
  });
  for (let i = 0; i < c.numLayers; i++) {
    h = b.withScope(`model.layers.${i}`, () => {
      const n1 = rmsnorm(b, h, 'input_layernorm', c.hiddenSize, c.rmsNormEps);
      const a = b.withScope('self_attn', () => attention(b, c, n1, positions, shape, i, kv));
      const h1 = b.add(h, a);
      const n2 = rmsnorm(b, h1, 'post_attention_layernorm', c.hiddenSize, c.rmsNormEps);
      const m = b.withScope('mlp', () => mlp(b, c, n2));
      return b.add(h1, m);
    });
  }
  // With a cache only the next-token logits of each row are wanted: pick that position first.
  if (last) h = b.matmul(last, h);
  const normed = rmsnorm(b, h, 'model.norm', c.hiddenSize, c.rmsNormEps);
  const logits = b.withScope('lm_head', () =>
    b.linear(
      normed,
      c.tieWordEmbeddings ? embedW! : b.param('lm_head.weight', 'f32', [c.vocabSize, c.hiddenSize]),
    ),
  );
  const outputs: [string, Value][] = [];
  if (opts.logits !== false) outputs.push(['logits', logits]);
  if (labels) outputs.push(['loss', causalLmLoss(b, logits, labels, B, S, c.vocabSize)]);
  for (const [name, v] of kv?.assigns ?? []) outputs.push([`${ASSIGN_PREFIX}${name}`, v]);
  return b.build(outputs);
}

/**
 * HF's causal-LM loss: predict token t+1 from position t; mean over labels != -100. As
 * transformers' ForCausalLMLoss does, the labels shift (padded with -100 at the end),
 * not the logits: the same terms, without copying [B, S-1, V] logits forward and padding
 * their gradient back.
 */
export function causalLmLoss(
  b: GraphBuilder,
  logits: Value,
  labels: Value,
  B: number,
  S: number,
  V: number,
): Value {
  return b.withScope('loss', () => {
    if (S < 2) throw new Error('causal-LM loss needs seq >= 2');
    const next = b.concat([b.slice(labels, 1, 1, S), b.const(-100, [B, 1], 'i32')], 1);
    const l = b.reshape(logits, [B * S, V]);
    return b.crossEntropy(l, b.reshape(next, [B * S]), { ignore_index: -100, reduction: 'mean' });
  });
}
