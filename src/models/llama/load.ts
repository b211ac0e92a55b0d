// Loading a model for peftc: a built-in preset (random HF-style init) or an HF
// model directory (config.json + safetensors, single file or sharded).
import { existsSync, statSync } from 'node:fs';
import { FormatError } from '../../io/errors.ts';
import { openCheckpoint } from '../../io/safetensors/index.ts';
import type { Graph } from '../../ir/graph.ts';
import { formatShape, sameShape } from '../../ir/shape.ts';
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { MapWeightStore, type WeightStore } from '../../ir/weights.ts';
import { Rng } from '../../util/rng.ts';
import { buildLlama } from './build.ts';
import { type LlamaConfig, readLlamaConfig } from './config.ts';
import { PRESETS } from './presets.ts';

export interface LoadedModel {
  readonly config: LlamaConfig;
  readonly weights: WeightStore;
  /** The directory the model came from, or `preset:<name>`. */
  readonly source: string;
  /** The model directory (absent for presets). */
  readonly dir?: string;
  /**
   * Rewrites the plain LLaMA graph to how this checkpoint stores it (a bitsandbytes
   * 4-bit checkpoint: frozen linears as packed 4-bit + absmax); absent for plain ones.
   */
  readonly storage?: (g: Graph) => { graph: Graph; weights: WeightStore };
}

/** The forward graph for a shape as this model's checkpoint stores it, with its weights checked. */
export function modelGraph(
  m: LoadedModel,
  shape: { batch: number; seq: number },
  opts: Parameters<typeof buildLlama>[2] = {},
): { graph: Graph; weights: WeightStore } {
  const plain = buildLlama(m.config, shape, opts);
  const { graph, weights } = m.storage ? m.storage(plain) : { graph: plain, weights: m.weights };
  checkModelWeights(graph, weights, m.source);
  return { graph, weights };
}

/** `spec` is a preset name (see PRESETS) or an HF model directory. */
export function loadModel(spec: string, opts: { seed?: number } = {}): LoadedModel {
  if (existsSync(spec) && statSync(spec).isDirectory()) {
    const config = readLlamaConfig(spec);
    return { config, weights: new ComputeF32View(openCheckpoint(spec)), source: spec, dir: spec };
  }
  const preset = PRESETS[spec];
  if (!preset) {
    throw new FormatError(
      spec,
      `not a model directory and not a preset (presets: ${Object.keys(PRESETS).join(', ')})`,
    );
  }
  return { config: preset, weights: randomLlamaWeights(preset, opts.seed ?? 0), source: `preset:${spec}` };
}

/**
 * Checkpoint tensors as the f32 the graph computes in: f16/bf16 arrive decoded to f32
 * on the host already, so this only relabels them (DESIGN: compute in f32 whatever
 * the storage dtype; lower-precision compute is an explicit option).
 */
export class ComputeF32View implements WeightStore {
  constructor(readonly inner: WeightStore & { info?: (name: string) => { shape: readonly number[] } }) {}
  get(name: string): Tensor | undefined {
    const t = this.inner.get(name);
    return t && (t.dtype === 'bf16' || t.dtype === 'f16') ? { ...t, dtype: 'f32' } : t;
  }
  has(name: string): boolean {
    return this.inner.has(name);
  }
  names(): Iterable<string> {
    return this.inner.names();
  }
  info(name: string): { shape: readonly number[] } {
    return this.inner.info ? this.inner.info(name) : { shape: this.get(name)!.shape };
  }
}

/** HF LlamaPreTrainedModel._init_weights: normal(0, 0.02) for linears and embeddings, ones for norms. */
export function randomLlamaWeights(c: LlamaConfig, seed: number): MapWeightStore {
  const g = buildLlama(c, { batch: 1, seq: 2 });
  const rng = new Rng(seed);
  const store = new MapWeightStore();
  for (const p of g.params()) {
    const name = String(p.attrs.name);
    const t = tensor('f32', p.type.shape);
    if (name.endsWith('norm.weight')) t.data.fill(1);
    else if (!name.endsWith('.bias')) {
      const r = rng.fork(name);
      for (let i = 0; i < t.data.length; i++) t.data[i] = r.normal(0, 0.02);
    }
    store.set(name, t);
  }
  return store;
}

/**
 * Checks that every given (checkpoint) param of `graph` is in `weights` with the right
 * shape, naming the missing or mismatched tensors and where they were looked for.
 */
export function checkModelWeights(graph: Graph, weights: WeightStore, source: string): void {
  const missing: string[] = [];
  for (const p of graph.params()) {
    if ((p.attrs.init as { kind: string }).kind !== 'given') continue;
    const name = String(p.attrs.name);
    if (!weights.has(name)) {
      missing.push(`${name} ${formatShape(p.type.shape)}`);
      continue;
    }
    const info = (weights as { info?: (n: string) => { shape: readonly number[] } }).info?.(name);
    const shape = info ? info.shape : (weights.get(name) as Tensor).shape;
    if (!sameShape(shape, p.type.shape)) {
      throw new FormatError(
        source,
        `has shape ${formatShape(shape)} but config.json implies ${formatShape(p.type.shape)}`,
        name,
      );
    }
  }
  if (missing.length) {
    throw new FormatError(
      source,
      `missing ${missing.length} tensor(s) the config needs: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''}`,
    );
  }
}
