// LongLoRA's context extension: linear RoPE position interpolation. The official
// fine-tune.py sets config.rope_scaling = {"type": "linear", "factor": ceil(model_max_length
// / max_position_embeddings)} when the target is longer, and the saved config carries it;
// here every rope node gets that factor, and the saved adapter_config.json carries the
// same rope_scaling (PEFT ignores the key with a warning; peftc's loader applies it).
import type { Graph } from '../../ir/graph.ts';
import { rewrite } from '../../passes/rewrite/engine.ts';

export interface RopeScaling {
  readonly type: 'linear';
  readonly factor: number;
}

/** The official factor, or undefined when the target fits the model's context. */
export function ropeFactor(modelMaxLength: number, maxPositionEmbeddings: number): number | undefined {
  return modelMaxLength > maxPositionEmbeddings
    ? Math.ceil(modelMaxLength / maxPositionEmbeddings)
    : undefined;
}

/** Every rope node with linear scaling `factor` (replacing any the model had, as the official code does). */
export function withRopeScaling(g: Graph, factor: number): Graph {
  return rewrite(
    g,
    [
      [
        { op: 'rope', where: (n) => n.attrs.scaling_factor !== factor },
        (m, b) => b.emit('rope', m.inputs, { ...m.node.attrs, scaling_factor: factor }, m.node.scope),
        'rope-linear-scaling',
      ],
    ],
    { once: true },
  ).graph;
}

/** The linear scaling of the graph's rope nodes (1 when none, or no rope). */
export function ropeScalingOf(g: Graph): number {
  const r = g.ofOp('rope')[0];
  return r ? Number(r.attrs.scaling_factor ?? 1) : 1;
}

/** A rope_scaling entry as a saved config holds it, when it is linear. */
export function parseRopeScaling(v: unknown): RopeScaling | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as { type?: unknown; rope_type?: unknown; factor?: unknown };
  const type = o.type ?? o.rope_type;
  return type === 'linear' && typeof o.factor === 'number' && o.factor > 0
    ? { type: 'linear', factor: o.factor }
    : undefined;
}
