// Adapters in a graph, as the methods that made them recognise them. A method that adds
// an adapter to a module registers its structure here: how to find one of its adapters
// by the node that outputs the adapted module (`at`), and how to fold it into the
// module's weight and back (`fold` / `unfold`). Merge, disable, set-active, save and the
// PEFT bridge ask these structures, never one branch shape; adapter params that no
// structure claims are an error naming their module (checkAdapters), never a silent skip.
import type { Graph, Node } from '../../ir/graph.ts';
import type { Tensor } from '../../ir/tensor.ts';
import { MethodError } from '../registry.ts';
import { isAdapterScope } from '../targets.ts';

/** What a structure's `at` finds: one adapter on one module. */
export interface SiteMatch {
  readonly module: string;
  readonly adapter: string;
  /** The module's op the adapter sits on. */
  readonly kind: 'linear' | 'embedding';
  /**
   * The module's output without this adapter (an ancestor of `out`, not necessarily its
   * input): `out` is replaced by it when the adapter goes.
   */
  readonly below: Node;
  /** Names of the params the adapter owns (trainable ones and any frozen buffers it made). */
  readonly params: readonly string[];
  /** Whatever the structure's fold needs (its A, B, scale, ...). */
  readonly data: unknown;
}

export interface AdapterSite extends SiteMatch {
  readonly structure: AdapterStructure;
  /** The node whose value is the module's output with this adapter. */
  readonly out: Node;
  /** The module's own op (linear / embedding), under every stacked adapter. */
  readonly base: Node;
}

export type Reader = (name: string) => Tensor;

export interface AdapterStructure {
  /** Names the structure in errors ('lora', 'dora', ...). */
  readonly name: string;
  /** The adapter whose output node is `n`, or undefined. */
  readonly at: (g: Graph, n: Node) => SiteMatch | undefined;
  /**
   * Folds the adapter into its module's weight, in place: W is [out, in] (linear) or
   * [vocab, dim] (embedding), in f64. Returns tensors unfold will need (stored beside the
   * merged weights), if any.
   */
  readonly fold: (site: AdapterSite, W: Float64Array, read: Reader) => Map<string, Tensor> | undefined;
  /** Undoes fold, in place (the adapter's own tensors and fold's extras come from `read`). */
  readonly unfold: (site: AdapterSite, W: Float64Array, read: Reader) => void;
  /**
   * After merge / disable removed these sites' outputs: drops whatever else of theirs the
   * graph still uses (AdaLoRA's orthogonality penalty in `loss`), so their params go too.
   */
  readonly release?: (g: Graph, removed: readonly AdapterSite[]) => Graph;
}

const structures: AdapterStructure[] = [];

export function registerStructure(s: AdapterStructure): void {
  if (structures.some((x) => x.name === s.name))
    throw new MethodError(`adapter structure '${s.name}' is already registered`);
  structures.push(s);
}

function matchAt(g: Graph, n: Node): [AdapterStructure, SiteMatch] | undefined {
  for (const s of structures) {
    const m = s.at(g, n);
    if (m) return [s, m];
  }
  return undefined;
}

/** The adapter whose output node is `n`, or undefined. */
export function siteAt(g: Graph, n: Node): AdapterSite | undefined {
  const hit = matchAt(g, n);
  if (!hit) return undefined;
  const [structure, m] = hit;
  let base = m.below;
  for (let h = matchAt(g, base); h; h = matchAt(g, base)) base = h[1].below;
  return { ...m, structure, out: n, base };
}

/** Every adapter in the graph, in graph order (a stack bottom-up). */
export function adapterSites(g: Graph): AdapterSite[] {
  const out: AdapterSite[] = [];
  for (const n of g.nodes) {
    const s = siteAt(g, n);
    if (s) out.push(s);
  }
  return out;
}

/** Adapter names present in the graph, in order of first appearance. */
export function adapterNames(g: Graph): string[] {
  return [...new Set(adapterSites(g).map((s) => s.adapter))];
}

/**
 * The shape most additive adapters share: `add(below, scale?(linear(linear(x, a), b)))`
 * (the scale gone when canonicalize folded s = 1). Returns below, the factor inputs a and b
 * (params, or whatever the method puts there: AdaLoRA's A * E, MaLoRA's masked factors)
 * and the scale; each structure then checks its own names.
 */
export function twoFactorBranch(
  g: Graph,
  n: Node,
): { below: Node; a: Node; b: Node; scale: number } | undefined {
  if (n.op !== 'add' || n.inputs.length !== 2) return undefined;
  let y = g.node(n.inputs[1]);
  let scale = 1;
  if (y.op === 'scale') {
    scale = Number(y.attrs.factor);
    y = g.node(y.inputs[0]);
  }
  if (y.op !== 'linear' || y.inputs.length !== 2) return undefined;
  const h = g.node(y.inputs[0]);
  if (h.op !== 'linear' || h.inputs.length !== 2) return undefined;
  return { below: g.node(n.inputs[0]), a: g.node(h.inputs[1]), b: g.node(y.inputs[1]), scale };
}

/** The param feeding a site's base module its weight (linear: input 1, embedding: the table). */
export function baseWeightNode(g: Graph, site: AdapterSite): Node {
  return g.node(site.kind === 'linear' ? site.base.inputs[1] : site.base.inputs[0]);
}

const LORA_PART = /\.lora_[A-Za-z_]+(\.|$)/;

/**
 * Every adapter param (a param in an adapter scope: `<m>.lora_*.<a>...`) must belong to
 * an adapter some registered structure recognises; `what` names the operation that would
 * otherwise skip it. Returns the sites.
 */
export function checkAdapters(g: Graph, what: string): AdapterSite[] {
  const sites = adapterSites(g);
  const claimed = new Set(sites.flatMap((s) => s.params));
  // modules_to_save copies are adapter-scoped too, but they replace a module: no structure.
  const stray = g
    .params()
    .filter((p) => isAdapterScope(p.scope) && LORA_PART.test(p.scope) && !claimed.has(String(p.attrs.name)));
  if (stray.length) {
    const name = String(stray[0].attrs.name);
    const module = stray[0].scope.replace(/\.(lora_[A-Za-z_]+)(\..*)?$/, '');
    throw new MethodError(
      `${what}: the adapter params of ${module} (e.g. ${name}) are in a structure no registered method recognises ` +
        `(known: ${structures.map((s) => s.name).join(', ')}); the method that made them must register its adapter structure`,
    );
  }
  return sites;
}

/** A modules_to_save copy's name: `<M>.modules_to_save.<adapter>.<leaf>`. */
const SAVED_COPY = /^(.*)\.modules_to_save\.[A-Za-z0-9_-]+\.(.*)$/;

/**
 * The checkpoint weight a modules_to_save copy stands for (`<M>.<leaf>`), or undefined for
 * any other name. Writing a merged model, the copy's (trained) value replaces that weight.
 */
export function savedCopyTarget(name: string): string | undefined {
  const m = SAVED_COPY.exec(name);
  return m ? `${m[1]}.${m[2]}` : undefined;
}
