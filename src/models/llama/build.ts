// Builds the forward graph of an HF LlamaForCausalLM. Node scopes are HF module
// paths and param names HF state-dict keys, so PEFT-style target matching and
// checkpoint loading work on names users already know. Shapes only: no weights
// are touched here, so a 70B graph builds in milliseconds.
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

function attention(b: GraphBuilder, c: LlamaConfig, x: Value, positions: Value, shape: LlamaShape): Value {
  const { batch: B, seq: S } = shape;
  const D = c.headDim;
  const heads = (v: Value, n: number) => b.transpose(b.reshape(v, [B, S, n, D]), 1, 2);
  const q = heads(projection(b, x, 'q_proj', c.numHeads * D, c.hiddenSize, c.attentionBias), c.numHeads);
  const k = heads(projection(b, x, 'k_proj', c.numKvHeads * D, c.hiddenSize, c.attentionBias), c.numKvHeads);
  const v = heads(projection(b, x, 'v_proj', c.numKvHeads * D, c.hiddenSize, c.attentionBias), c.numKvHeads);
  const ropeAttrs = { theta: c.ropeTheta, scaling_factor: c.ropeLinearFactor };
  const [qr, kr] = b.withScope('rotary_emb', () => [
    b.rope(q, positions, ropeAttrs),
    b.rope(k, positions, ropeAttrs),
  ]);
  const o = b.attention(qr, kr, v, undefined, { causal: true });
  const merged = b.reshape(b.transpose(o, 1, 2), [B, S, c.numHeads * D]);
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
  const positions = b.const(
    Array.from({ length: S }, (_, i) => i),
    [S],
    'i32',
  );
  let embedW: Value | undefined;
  let h = b.withScope('model.embed_tokens', () => {
    embedW = b.param(`${b.scope}.weight`, 'f32', [c.vocabSize, c.hiddenSize]);
    return b.embedding(embedW, ids);
  });
  for (let i = 0; i < c.numLayers; i++) {
    h = b.withScope(`model.layers.${i}`, () => {
      const n1 = rmsnorm(b, h, 'input_layernorm', c.hiddenSize, c.rmsNormEps);
      const a = b.withScope('self_attn', () => attention(b, c, n1, positions, shape));
      const h1 = b.add(h, a);
      const n2 = rmsnorm(b, h1, 'post_attention_layernorm', c.hiddenSize, c.rmsNormEps);
      const m = b.withScope('mlp', () => mlp(b, c, n2));
      return b.add(h1, m);
    });
  }
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
  return b.build(outputs);
}

/** HF's causal-LM loss: predict token t+1 from position t; mean over labels != -100. */
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
    const l = b.reshape(b.slice(logits, 1, 0, S - 1), [B * (S - 1), V]);
    const t = b.reshape(b.slice(labels, 1, 1, S), [B * (S - 1)]);
    return b.crossEntropy(l, t, { ignore_index: -100, reduction: 'mean' });
  });
}
