// The data an exported package runs: one plan per (kernel target, padded length), written by
// `peftc export --format webgpu-ts` from the WebGPU backend's own memory plan and kernel
// list. The runner only follows it: buffers, what fills them, and the dispatches in order.

/** One device buffer: a source filled from weights.safetensors, state, or a pooled intermediate. */
export interface PlanBuffer {
  readonly bytes: number;
  /** Key in weights.safetensors holding its initial bytes (params, constants); shared across plans. */
  readonly init?: string;
  /**
   * State written by the run itself (a KV cache `kv.<layer>.k|v`): one zeroed buffer per key,
   * shared by every plan that names it (the prefill plans and the decode plan).
   */
  readonly state?: string;
}

/** A value's place in the plan's buffers: several values share a buffer at different offsets. */
export interface PlanRegion {
  readonly buffer: number;
  /** Byte offset (a multiple of 256). */
  readonly offset: number;
}

/** A storage binding: a buffer range. */
export interface PlanBinding extends PlanRegion {
  readonly size: number;
}

export interface PlanDispatch {
  /** Index into `ModelManifest.kernels`. */
  readonly kernel: number;
  /** The range of each storage binding (binding 1, 2, ...); binding 0 is the uniforms. */
  readonly bindings: readonly PlanBinding[];
  /** Whether each storage binding is written (read_write) or read-only. */
  readonly writes: readonly boolean[];
  /** The uniform words (vec4<u32> slots) of binding 0. */
  readonly uniforms: readonly number[];
  /** Workgroups in x, y, z. */
  readonly size: readonly [number, number, number];
  /** The IR node it computes, for error messages (`%12 = matmul f32[1, 8, 64] in model.layers.0...`). */
  readonly node: string;
}

/**
 * A copy between dispatches: the new value of a state buffer written into it in place
 * (the graph's `assign:` outputs), before dispatch `at` (`at` = dispatches.length: after the last).
 */
export interface PlanCopy {
  readonly at: number;
  readonly from: PlanRegion;
  readonly to: PlanRegion;
  readonly bytes: number;
}

export interface Plan {
  /** Tokens the graph was compiled for; shorter inputs are padded at the end. */
  readonly seq: number;
  readonly buffers: readonly PlanBuffer[];
  /** Where the input_ids (i32 [1, seq]) go. */
  readonly input: PlanRegion;
  /** Where the logits are: f32 [1, seq, vocab], or [1, 1, vocab] (the last token's) in a KV-cache plan. */
  readonly output: PlanRegion;
  /** A KV-cache plan's other inputs by name (positions, kv_write, kv_keep, attn_bias, last_token). */
  readonly feeds?: Readonly<Record<string, PlanRegion>>;
  /** A KV-cache plan's in-place cache writes, in order. */
  readonly copies?: readonly PlanCopy[];
  readonly dispatches: readonly PlanDispatch[];
}

/** Which kernel variants a plan was made for: GPUs, or CPU adapters such as lavapipe. */
export type PlanTarget = 'gpu' | 'software';

export interface ModelManifest {
  /** The model the package was exported from (`--model`). */
  readonly model: string;
  readonly vocabSize: number;
  /** Token id used to pad inputs up to a compiled length (any id: the mask is causal). */
  readonly padId: number;
  /** The compiled lengths, ascending; the longest is the most tokens `logits` takes. */
  readonly lengths: readonly number[];
  /** WGSL files (relative to the package's model/ folder), by kernel index. */
  readonly kernels: readonly string[];
  /** Plan files (relative to model/) by target, then by length (as in `lengths`). */
  readonly plans: Readonly<Record<PlanTarget, readonly string[]>>;
  /** The adapters in the graph (PEFT folders as given), and whether they were merged. */
  readonly adapters: readonly string[];
  readonly merged: boolean;
  /** Weights as stored ('none') or packed NF4 ('nf4'). */
  readonly quant: 'none' | 'nf4';
  /** The adapter limits the device is requested with, as peftc requests them (its plans assume them). */
  readonly limits: readonly string[];
  /** Dispatches per run of the longest plan, fused as peftc fuses them; and the unfused graph's. */
  readonly dispatches: { readonly fused: number; readonly unfused: number };
  /** The KV-cache plans `generate` runs (batch 1); absent in a package without them. */
  readonly generation?: GenerationManifest;
}

/**
 * Generation as peftc's DecodeSession runs it, for one row: the prompt in chunks of the
 * prefill plans' lengths, then one decode run per token, over a cache of `maxLen` slots.
 */
export interface GenerationManifest {
  /** Cache slots: prompt plus generated tokens never exceed this. */
  readonly maxLen: number;
  /** Prefill chunk lengths, ascending (powers of two up to the longest chunk); 1 is the decode plan. */
  readonly lengths: readonly number[];
  /** Plan files (relative to model/) by target, then by length (as in `lengths`). */
  readonly plans: Readonly<Record<PlanTarget, readonly string[]>>;
  /** End-of-sequence token ids (the model's config and tokenizer), the default `eos`. */
  readonly eos: readonly number[];
}
