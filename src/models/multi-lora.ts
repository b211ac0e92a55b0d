// The multi-adapter runtime: one base model compiled once, up to `max_loras` PEFT LoRA
// adapters resident in slots, each batch row naming its own (or none) through the
// `adapter_index` input of a graph rewritten by addLoraSlots (methods/multi-lora). Loading
// an adapter reads its folder (every check `--adapter` makes), zero-pads its A/B to
// max_lora_rank and writes them with its scales into a free slot of every executable the
// slots feed (Executable.writeParam): no graph changes, no recompile. Unloading zeroes the
// slot. Modules an adapter does not target stay zero in its slot (the row then computes
// the base module there). The base may be 4-bit (the base linear stays linear_4bit).
//
// DoRA adapters load too: their magnitude m and the base weight give, once at load, the
// per-row factor m / ||W + s B A|| (W as the graph computes it: a 4-bit base decoded once
// on the host, in f64) that the slot's `mag` holds, so a DoRA row computes
// mag * (W x + s B A x) (+ bias), PEFT's DoRA output, on the shared base product.
// Refused at load, with the reason: other adapter structures (AdaLoRA, mixtures), adapters
// on embeddings, modules_to_save, RoPE scaling (LongLoRA), ranks above max_lora_rank,
// modules outside the configured targets.
import type { Backend, Executable } from '../backends/backend.ts';
import { runGraph } from '../backends/cpu/index.ts';
import { FormatError } from '../io/errors.ts';
import { readPeftConfig } from '../io/peft/index.ts';
import type { Graph } from '../ir/graph.ts';
import { type Tensor, tensor } from '../ir/tensor.ts';
import { LayeredWeightStore, MapWeightStore, type WeightStore } from '../ir/weights.ts';
import { type AdapterSite, adapterSites, baseWeightNode } from '../methods/index.ts';
import { addLowRank, type LoraData } from '../methods/lora/branch.ts';
import { type DoraData, rowNorms } from '../methods/lora/dora.ts';
import {
  ADAPTER_INDEX,
  addLoraSlots,
  type LoraSlotsLayout,
  type LoraSlotsOptions,
  type SlotModule,
} from '../methods/multi-lora/index.ts';
import { phasePasses, runPipeline } from '../passes/index.ts';
import { UserError } from '../util/errors.ts';
import type { LlamaBuildOptions, LlamaShape } from './llama/build.ts';
import type { LoadedModel } from './llama/load.ts';
import { withAdapters } from './prepare.ts';

export { ADAPTER_INDEX, type LoraSlotsOptions } from '../methods/multi-lora/index.ts';

/** What a slot-filling backend offers (an Executable). */
export interface ParamWriter {
  writeParam(name: string, value: Tensor): Promise<void>;
}

export interface LoadedAdapter {
  readonly name: string;
  readonly dir: string;
  readonly slot: number;
  readonly rank: number;
  /** Modules it adapts (a subset of the runtime's targets). */
  readonly modules: readonly string[];
}

/** One module's part of an adapter, ready to copy into a slot. */
interface ModulePart {
  readonly A: Tensor;
  readonly B: Tensor;
  readonly scale: number;
  /** DoRA's m / ||W + s B A|| per output feature (absent: LoRA, 1). */
  readonly mag?: Float64Array;
}

/**
 * The host side of the slots: the current values of every slot param (bound when an
 * executable is compiled) and the executables that hold them on a device (each written
 * on load and unload).
 */
export class AdapterSlots {
  readonly layout: LoraSlotsLayout;
  private readonly values: Map<string, Tensor>;
  private readonly byName = new Map<string, LoadedAdapter>();
  private readonly writers = new Set<ParamWriter>();
  private readonly model: LoadedModel;
  /** Adapters being written into their slots, by name. */
  private readonly pending = new Map<string, number>();
  /** Batch row -> adapter name, for runs through wrap() that do not feed adapter_index. */
  private readonly rows = new Map<number, string>();

  constructor(model: LoadedModel, layout: LoraSlotsLayout, initial: ReadonlyMap<string, Tensor>) {
    this.model = model;
    this.layout = layout;
    this.values = new Map([...initial].map(([k, v]) => [k, tensor(v.dtype, v.shape, v.data.slice())]));
  }

  get slots(): number {
    return this.layout.settings.max_loras;
  }

  /** The slot params' current values over `base` (for compiling a rewritten graph). */
  weights(base: WeightStore): WeightStore {
    return new LayeredWeightStore([new MapWeightStore(this.values), base]);
  }

  /** Keeps `exe` (compiled with `weights(...)`) in step with later loads and unloads. */
  attach(exe: ParamWriter): void {
    this.writers.add(exe);
  }

  detach(exe: ParamWriter): void {
    this.writers.delete(exe);
  }

  loaded(): LoadedAdapter[] {
    return [...this.byName.values()].sort((a, b) => a.slot - b.slot);
  }

  get(name: string): LoadedAdapter | undefined {
    return this.byName.get(name);
  }

  /** The `adapter_index` feed for batch rows naming adapters (null or undefined = base model). */
  index(rows: readonly (string | null | undefined)[]): Tensor {
    return tensor(
      'i32',
      [rows.length],
      rows.map((n, i) => {
        if (n == null) return -1;
        const a = this.byName.get(n);
        if (!a)
          throw new UserError(
            `row ${i} names adapter '${n}', which is not loaded (loaded: ${
              this.loaded()
                .map((x) => x.name)
                .join(', ') || 'none'
            })`,
          );
        return a.slot;
      }),
    );
  }

  /** Reads and checks the PEFT adapter in `dir` and writes it into a free slot; returns where it went. */
  async load(name: string, dir: string): Promise<LoadedAdapter> {
    if (this.byName.has(name))
      throw new UserError(
        `an adapter named '${name}' is already loaded (from ${this.byName.get(name)!.dir}); unload it first`,
      );
    if (this.pending.has(name)) throw new UserError(`an adapter named '${name}' is being loaded already`);
    const parts = readAdapterParts(this.model, dir, this.layout);
    // Slots of loaded adapters and of loads still writing (a concurrent load must not take them).
    const used = new Set([...this.byName.values()].map((a) => a.slot).concat([...this.pending.values()]));
    const slot = [...Array(this.slots).keys()].find((s) => !used.has(s));
    if (slot === undefined)
      throw new UserError(
        `cannot load '${name}': all ${this.slots} adapter slots are in use (${[...this.byName.keys(), ...this.pending.keys()].join(', ')}); unload one or raise max_loras`,
      );
    const rank = Math.max(0, ...[...parts.values()].map((p) => p.A.shape[0]));
    this.pending.set(name, slot);
    try {
      await this.fill(slot, parts);
    } catch (e) {
      await this.fill(slot, new Map(), [...parts.keys()]).catch(() => undefined);
      throw e;
    } finally {
      this.pending.delete(name);
    }
    // Only now may rows name it: every executable holds its weights.
    const entry = { name, dir, slot, rank, modules: [...parts.keys()] };
    this.byName.set(name, entry);
    return entry;
  }

  /**
   * Which adapter batch row `row` runs with (null: the base model) in executables from
   * wrap() whose runs do not feed adapter_index themselves (e.g. a decoding session's).
   */
  setRow(row: number, name: string | null): void {
    if (name === null) this.rows.delete(row);
    else {
      this.index([name]);
      this.rows.set(row, name);
    }
  }

  /**
   * `backend` whose executables hold these slots: each compiled one is attached (kept in
   * step with loads and unloads, detached on dispose), and a run that does not feed
   * adapter_index gets it from setRow. Code that compiles and runs graphs on its own (a
   * decoding session) then serves many adapters unchanged.
   */
  wrap(backend: Backend): Backend {
    // `share` names a wrapper; the backend knows only the executable inside it.
    const inner = new WeakMap<Executable, Executable>();
    return {
      name: backend.name,
      compile: async (graph, weights, opts) => {
        const share = opts?.share && (inner.get(opts.share) ?? opts.share);
        const exe = await backend.compile(graph, weights, share ? { ...opts, share } : opts);
        this.attach(exe);
        const input = graph.inputs().find((n) => n.attrs.name === ADAPTER_INDEX);
        const batch = input?.type.shape[0] ?? 0;
        const rowsFeed = () => this.index(Array.from({ length: batch }, (_, r) => this.rows.get(r) ?? null));
        const wrapped: Executable = {
          graph: exe.graph,
          run: (req) =>
            exe.run(
              input && !(ADAPTER_INDEX in req.feeds)
                ? { ...req, feeds: { ...req.feeds, [ADAPTER_INDEX]: rowsFeed() } }
                : req,
            ),
          readParam: (n) => exe.readParam(n),
          writeParam: (n, v) => exe.writeParam(n, v),
          copyParamRows: (from, n, rows) => exe.copyParamRows(inner.get(from) ?? from, n, rows),
          dispose: () => {
            this.detach(exe);
            exe.dispose();
          },
        };
        inner.set(wrapped, exe);
        return wrapped;
      },
      dispose: () => backend.dispose(),
    };
  }

  /** Frees `name`'s slot (zeroes it on every executable); rows set to it run the base model. */
  async unload(name: string): Promise<void> {
    const a = this.byName.get(name);
    if (!a)
      throw new UserError(
        `no adapter named '${name}' is loaded (loaded: ${
          this.loaded()
            .map((x) => x.name)
            .join(', ') || 'none'
        })`,
      );
    this.byName.delete(name);
    for (const [r, n] of this.rows) if (n === name) this.rows.delete(r);
    await this.fill(a.slot, new Map(), a.modules);
  }

  /** Writes `parts` into `slot` (zero elsewhere in the slot) for the modules touched. */
  private async fill(
    slot: number,
    parts: ReadonlyMap<string, ModulePart>,
    clear: readonly string[] = [],
  ): Promise<void> {
    const R = this.layout.settings.max_lora_rank;
    const touched = this.layout.modules.filter((m) => parts.has(m.module) || clear.includes(m.module));
    for (const m of touched) {
      const A = this.values.get(m.A)!.data;
      const B = this.values.get(m.B)!.data;
      const S = this.values.get(m.scale)!.data;
      const M = this.values.get(m.mag)!.data;
      A.fill(0, slot * R * m.inFeatures, (slot + 1) * R * m.inFeatures);
      B.fill(0, slot * m.outFeatures * R, (slot + 1) * m.outFeatures * R);
      S[slot] = 0;
      M.fill(1, slot * m.outFeatures, (slot + 1) * m.outFeatures);
      const p = parts.get(m.module);
      if (p) writePart(m, slot, R, p, A, B, S);
      if (p?.mag) M.set(p.mag, slot * m.outFeatures);
    }
    for (const w of this.writers)
      for (const m of touched)
        for (const n of [m.A, m.B, m.scale, m.mag]) {
          const t = this.values.get(n)!;
          await w.writeParam(n, tensor(t.dtype, t.shape, t.data.slice()));
        }
  }
}

function writePart(
  m: SlotModule,
  slot: number,
  R: number,
  p: ModulePart,
  A: Tensor['data'],
  B: Tensor['data'],
  S: Tensor['data'],
): void {
  const r = p.A.shape[0];
  A.set(p.A.data, slot * R * m.inFeatures);
  for (let o = 0; o < m.outFeatures; o++)
    for (let j = 0; j < r; j++) B[(slot * m.outFeatures + o) * R + j] = p.B.data[o * r + j];
  S[slot] = p.scale;
}

/**
 * The adapter in `dir` as per-module (A, B, scale), attached to the model exactly as
 * `--adapter` attaches it (same checks, same scales: rank/alpha patterns, rsLoRA), then
 * checked against what the slots can hold.
 */
function readAdapterParts(model: LoadedModel, dir: string, layout: LoraSlotsLayout): Map<string, ModulePart> {
  const { config, file } = readPeftConfig(dir, 'default');
  const c = config as Record<string, unknown>;
  const refuse = (why: string, key?: string) => {
    throw new FormatError(file, `the multi-adapter runtime cannot serve this adapter: ${why}`, key);
  };
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length)
    refuse(
      'modules_to_save replaces whole modules per adapter; slots hold low-rank branches only',
      'modules_to_save',
    );
  if (c.rope_scaling != null) refuse('RoPE scaling changes the base model per adapter', 'rope_scaling');
  const { graph, weights } = withAdapters(model, { batch: 1, seq: 1 }, [dir]);
  const targets = new Map(layout.modules.map((m) => [m.module, m]));
  const R = layout.settings.max_lora_rank;
  const parts = new Map<string, ModulePart>();
  const sites = adapterSites(graph);
  const dora = doraFactors(
    graph,
    weights,
    sites.filter((s) => s.structure.name === 'dora' && s.kind === 'linear'),
  );
  for (const site of sites) {
    if (site.structure.name !== 'lora' && site.structure.name !== 'dora')
      refuse(
        `its ${site.structure.name} branches are not plain LoRA (only LoRA adapters share slots)`,
        'peft_type',
      );
    if (site.kind !== 'linear')
      refuse(`it adapts the embedding ${site.module}; slots sit on linear modules only`);
    if (!targets.has(site.module))
      refuse(
        `it adapts ${site.module}, which is not among the runtime's target modules (${JSON.stringify(layout.settings.target_modules)}); start it with a target set that includes the module`,
        'target_modules',
      );
    const d = site.data as LoraData;
    const A = weights.get(String(d.A.attrs.name))!;
    const B = weights.get(String(d.B.attrs.name))!;
    if (A.shape[0] > R)
      refuse(
        `rank ${A.shape[0]} at ${site.module} is above max_lora_rank ${R}; start the runtime with a larger max_lora_rank`,
        'r',
      );
    parts.set(site.module, { A, B, scale: d.scale, mag: dora.get(site.module) });
  }
  return parts;
}

/**
 * DoRA's per-row factors m / ||W + s B A||_row of `sites`, in f64, with W evaluated as the
 * graph computes it (a 4-bit base dequantized here, once).
 */
function doraFactors(
  g: Graph,
  weights: WeightStore,
  sites: readonly AdapterSite[],
): Map<string, Float64Array> {
  const out = new Map<string, Float64Array>();
  if (!sites.length) return out;
  const probe = g.with(
    g.nodes,
    sites.map((s, i) => ({ name: `w${i}`, id: baseWeightNode(g, s).id })),
  );
  const values = runGraph(probe, {}, weights, { precision: 'f64' });
  const read = (n: string) => weights.get(n)!;
  sites.forEach((site, i) => {
    const W = values[`w${i}`];
    const [rows, cols] = W.shape;
    const V = Float64Array.from(W.data);
    const d = site.data as DoraData;
    addLowRank(site, V, read, d.scale);
    const norm = rowNorms(V, rows, cols);
    const m = read(d.magnitude).data;
    out.set(
      site.module,
      norm.map((v, o) => m[o] / v),
    );
  });
  return out;
}

/**
 * The model's inference graph for `shape` (serve phase, 4-bit bases fused) with slotted
 * multi-LoRA branches, its weights (slot params from `slots`, all zero until a load), and
 * the slots. Pass `slots` to build another shape (a decode graph) over the same adapters.
 */
export function prepareMultiLora(
  model: LoadedModel,
  shape: LlamaShape,
  options: LoraSlotsOptions,
  opts: LlamaBuildOptions & { slots?: AdapterSlots } = {},
): { graph: Graph; weights: WeightStore; slots: AdapterSlots } {
  // Slots go on the graph as the checkpoint stores it (its linears unfused), then the serve
  // phase fuses the whole (4-bit dequantization, elementwise trees, matmul epilogues).
  const base = withAdapters(model, shape, [], opts);
  const {
    graph: slotted,
    layout,
    initial,
  } = addLoraSlots(base.graph, opts.slots?.layout.settings ?? options);
  const slots = opts.slots ?? new AdapterSlots(model, layout, initial);
  const key = (l: LoraSlotsLayout) => JSON.stringify(l.modules);
  if (key(slots.layout) !== key(layout))
    throw new UserError('these adapter slots were made for another model (its targeted modules differ)');
  const weights = slots.weights(base.weights);
  const graph = runPipeline(slotted, phasePasses('serve'), { weights }).graph;
  return { graph, weights, slots };
}
