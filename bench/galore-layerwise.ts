// Would GaLore's "layer-wise" update (each weight updated right after its gradient, the
// gradient freed) lower the step's peak memory here? Peak bytes of non-leaf values alive at
// once in the compiled GaLore train step (recipe: GaLore rank 8 on all 7 linears, no clipping,
// no accumulation), executing nodes in order, as the webgpu schedule pools them (a buffer is
// reused after its last reader; graph outputs live to the end):
//   A  the step as compiled (keepGrads: the refresh probe's grad:<w> outputs are in every step)
//   B  without the grad:<w> outputs (a step graph for non-refresh steps)
//   C  B with every optimizer node moved right after its last input (as early as possible)
//   D  C with each new weight written in place once its param's last reader has run
//      (today an assign: value is a graph output: it lives to the end of the step)
//   node bin/run-ts.js bench/galore-layerwise.ts [--model <dir|preset>] [--seq N]
import { parseArgs } from 'node:util';
import type { Graph, Node } from '../src/ir/graph.ts';
import { parseRecipe, recipePipeline } from '../src/methods/index.ts';
import { buildLlama, loadModel, PRESETS } from '../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../src/passes/index.ts';
import { isLeaf, valueBytes } from '../src/passes/liveness.ts';
import { trainSettings } from '../src/train/setup.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    seq: { type: 'string', default: '64' },
  },
});
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const recipe = parseRecipe({
  methods: [{ method: 'galore', target_modules: TARGETS, rank: 8, update_proj_gap: 200, scale: 0.25 }],
  optimizer: { type: 'adamw', lr: 1e-2, weight_decay: 0 },
  max_grad_norm: null,
});

function stepGraph(keepGrads: boolean): Graph {
  const config = PRESETS[a.model as keyof typeof PRESETS] ?? loadModel(a.model!).config;
  const g = buildLlama(config, { batch: 1, seq: Number(a.seq) }, { loss: true, logits: false });
  const applied = runPipeline(g, recipePipeline(recipe), { log: () => {} }).graph;
  const train = { ...trainSettings(recipe), keepGrads };
  return runPipeline(applied, phasePasses('train', { train }), { log: () => {} }).graph;
}

/**
 * The optimizer pass's nodes (from its first node on, the `lr` input: the optimizer scopes and
 * the top-level scalars it adds, such as the cast of `step`) as early as their inputs allow;
 * the forward and backward in graph order.
 */
function asap(g: Graph): Node[] {
  const first = g.nodes.findIndex((n) => n.op === 'input' && n.attrs.name === 'lr');
  const movable = (i: number) => i >= first;
  const anchor = new Map<number, number>();
  g.nodes.forEach((n, i) => {
    if (!movable(i)) anchor.set(n.id, i);
    else anchor.set(n.id, Math.max(-1, ...n.inputs.map((id) => anchor.get(id)!)));
  });
  const pos = new Map(g.nodes.map((n, i) => [n.id, i]));
  const order = [...g.nodes].sort(
    (x, y) =>
      anchor.get(x.id)! - anchor.get(y.id)! ||
      Number(movable(pos.get(x.id)!)) - Number(movable(pos.get(y.id)!)) ||
      pos.get(x.id)! - pos.get(y.id)!,
  );
  const done = new Set<number>();
  for (const n of order) {
    if (n.inputs.some((id) => !done.has(id))) throw new Error(`asap: %${n.id} before its inputs`);
    done.add(n.id);
  }
  return order;
}

/** Peak live non-leaf bytes executing `order`; inPlace: assign:<param> values die once written back. */
function peak(g: Graph, order: readonly Node[], inPlace: boolean): number {
  const at = new Map(order.map((n, i) => [n.id, i]));
  const last = new Map<number, number>();
  order.forEach((n, i) => {
    for (const id of n.inputs) last.set(id, Math.max(last.get(id) ?? -1, i));
  });
  const params = new Map(g.params().map((p) => [String(p.attrs.name), p.id]));
  for (const o of g.outputs) {
    const param = o.name.startsWith('assign:') ? params.get(o.name.slice(7)) : undefined;
    // Written into the param's buffer after the param's last reader and its own creation.
    const end =
      inPlace && param !== undefined ? Math.max(at.get(o.id)!, last.get(param) ?? -1) : order.length;
    last.set(o.id, Math.max(last.get(o.id) ?? -1, end));
  }
  const dying = new Map<number, number[]>();
  for (const [id, i] of last) dying.set(i, [...(dying.get(i) ?? []), id]);
  let live = 0;
  let top = 0;
  order.forEach((n, i) => {
    if (!isLeaf(n)) live += valueBytes(n);
    top = Math.max(top, live);
    for (const id of dying.get(i) ?? []) if (!isLeaf(g.node(id))) live -= valueBytes(g.node(id));
    if (!last.has(n.id) && !isLeaf(n)) live -= valueBytes(n);
  });
  return top;
}

const kept = stepGraph(true);
const plain = stepGraph(false);
const gradBytes = kept.outputs
  .filter((o) => o.name.startsWith('grad:'))
  .reduce((s, o) => s + valueBytes(kept.node(o.id)), 0);
const rows = [
  { variant: 'A as compiled (grad outputs kept)', bytes: peak(kept, kept.nodes, false) },
  { variant: 'B no grad outputs', bytes: peak(plain, plain.nodes, false) },
  { variant: 'C B + updates right after their gradient', bytes: peak(plain, asap(plain), false) },
  { variant: 'D C + in-place weight write-back', bytes: peak(plain, asap(plain), true) },
  { variant: 'D on the graph order (updates at the end)', bytes: peak(plain, plain.nodes, true) },
];
const mib = (x: number) => num(x / 2 ** 20, 1);
printTable<(typeof rows)[number]>(
  `GaLore step peak live bytes (${a.model}, batch 1, seq ${a.seq}; targeted weights' gradients ${mib(gradBytes)} MiB)`,
  [
    { header: 'variant', legend: 'order and liveness model', cell: (r) => r.variant },
    { header: 'peak MiB', legend: 'non-leaf values alive at once', cell: (r) => mib(r.bytes) },
  ],
  rows,
);
