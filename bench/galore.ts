// GaLore's optimizer-state memory against AdamW on the same trainable weights, from the
// compiled train-step graphs (nothing allocated, nothing run):
//   node bin/run-ts.js bench/galore.ts [--model <dir|preset>] [--rank N]
// Stated config: GaLore on all 7 linears of every layer (q,k,v,o,gate,up,down), rank 128,
// proj_type std, for the bundled tiny-llama (rank capped at each weight's smaller side)
// and for LLaMA-2-7B shapes; AdamW = the same weights trained with the recipe's plain
// AdamW (2 f32 moments each); 8-bit = GaLore-8bit vs AdamW8bit (u8 codes + f32 absmax per
// 256). State counted: every param of role 'state' in the step graph (moments, projectors P,
// GaLore's 4-byte hold flag). Embeddings, norms and lm_head stay frozen in both, so this is
// the targeted weights' optimizer state only (the paper's 65.5% counts the whole model's).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { byteSize } from '../src/ir/dtype.ts';
import type { Graph } from '../src/ir/graph.ts';
import { numel } from '../src/ir/shape.ts';
import { parseRecipe, type Recipe, recipePipeline } from '../src/methods/index.ts';
import { buildLlama, type LlamaConfig, loadModel, PRESETS } from '../src/models/llama/index.ts';
import { phasePasses, runPipeline } from '../src/passes/index.ts';
import { trainSettings } from '../src/train/setup.ts';
import { num, printTable } from './table.ts';

const { values: a } = parseArgs({
  options: {
    model: { type: 'string', default: 'examples/models/tiny-llama' },
    rank: { type: 'string', default: '128' },
  },
});
const rank = Number(a.rank);
const TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
const recipe = (type: 'adamw' | 'adamw8bit'): Recipe =>
  parseRecipe({
    methods: [{ method: 'galore', target_modules: TARGETS, rank, update_proj_gap: 200, scale: 0.25 }],
    optimizer: { type, lr: 1e-2, weight_decay: 0 },
  });

function stateBytes(g: Graph): { state: number; trainable: number } {
  let state = 0;
  let trainable = 0;
  for (const p of g.params()) {
    const bytes = byteSize(p.type.dtype, numel(p.type.shape));
    if (p.attrs.role === 'state') state += bytes;
    if (p.attrs.role === 'trainable') trainable += numel(p.type.shape);
  }
  return { state, trainable };
}

/** State bytes of the GaLore step and of the same weights under the plain optimizer. */
function measure(config: LlamaConfig, type: 'adamw' | 'adamw8bit') {
  const r = recipe(type);
  const g = buildLlama(config, { batch: 1, seq: 8 }, { loss: true, logits: false });
  const applied = runPipeline(g, recipePipeline(r), { log: () => {} }).graph;
  const quiet = { log: () => {} };
  const settings = trainSettings(r);
  const galore = runPipeline(applied, phasePasses('train', { train: settings }), quiet).graph;
  // The same trainable weights with the recipe optimizer's own rule (no GaLore group).
  const plain = runPipeline(
    applied,
    phasePasses('train', { train: { ...settings, groups: undefined } }),
    quiet,
  ).graph;
  const gs = stateBytes(galore);
  const ps = stateBytes(plain);
  return {
    trainable_params: gs.trainable,
    galore_state_bytes: gs.state,
    plain_state_bytes: ps.state,
    saving: 1 - gs.state / ps.state,
  };
}

const bundled = loadModel(a.model!).config;
const rows = [
  { model: a.model!, type: 'adamw' as const, ...measure(bundled, 'adamw') },
  { model: a.model!, type: 'adamw8bit' as const, ...measure(bundled, 'adamw8bit') },
  { model: 'llama-2-7b', type: 'adamw' as const, ...measure(PRESETS['llama-2-7b'], 'adamw') },
  { model: 'llama-2-7b', type: 'adamw8bit' as const, ...measure(PRESETS['llama-2-7b'], 'adamw8bit') },
];
const mib = (x: number) => num(x / 2 ** 20, 2);
type Row = (typeof rows)[number];
printTable<Row>(
  `GaLore rank ${rank} optimizer state (7 linears per layer; from the compiled step graphs)`,
  [
    { header: 'model', legend: 'bundled model or LLaMA-2-7B shapes', cell: (r) => r.model },
    {
      header: 'optimizer',
      legend: 'GaLore (32-bit moments) vs AdamW, or GaLore-8bit vs AdamW8bit',
      cell: (r) => (r.type === 'adamw' ? 'GaLore vs AdamW' : 'GaLore-8bit vs AdamW8bit'),
    },
    {
      header: 'trained params',
      legend: 'elements of the targeted weights',
      cell: (r) => String(r.trainable_params),
    },
    {
      header: 'GaLore MiB',
      legend: 'state params of the GaLore step (moments, P, hold flag)',
      cell: (r) => mib(r.galore_state_bytes),
    },
    {
      header: 'plain MiB',
      legend: 'state params of the same weights with the plain optimizer',
      cell: (r) => mib(r.plain_state_bytes),
    },
    { header: 'saving', legend: '1 - GaLore / plain', cell: (r) => `${num(100 * r.saving, 1)}%` },
  ],
  rows,
);
mkdirSync(join('bench', 'results'), { recursive: true });
writeFileSync(
  join('bench', 'results', 'galore.json'),
  `${JSON.stringify({ config: { rank, targets: TARGETS, proj_type: 'std' }, rows }, null, 2)}\n`,
);
