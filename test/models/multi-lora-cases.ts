// Shared pieces of the multi-LoRA runtime tests: random PEFT adapters for the bundled
// tiny-llama, and one mixed batch checked row by row against the ordinary path
// (prepareModel with that row's adapter alone, batch 1, the row's own length).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Backend, Executable } from '../../src/backends/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { buildLlama, loadModel } from '../../src/models/llama/index.ts';
import type { LoadedModel } from '../../src/models/llama/load.ts';
import { ADAPTER_INDEX, type AdapterSlots } from '../../src/models/multi-lora.ts';
import { prepareModel } from '../../src/models/prepare.ts';
import { writeRandomAdapter } from '../cli/fixtures.ts';

export const MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

export interface AdapterSpec {
  readonly r: number;
  readonly targets: readonly string[];
  readonly alpha: number;
  readonly seed: number;
  readonly dora?: boolean;
}

export interface Row {
  /** Index into the case's adapters, or -1 for the base model. */
  readonly adapter: number;
  readonly len: number;
  readonly seed: number;
}

export interface MixedCase {
  readonly adapters: readonly AdapterSpec[];
  readonly rows: readonly Row[];
}

export const adapterArb = (maxRank: number) =>
  fc.record({
    r: fc.integer({ min: 1, max: maxRank }),
    targets: fc.subarray(MODULES, { minLength: 1 }),
    alpha: fc.constantFrom(1, 8, 16),
    seed: fc.nat(1000),
    dora: fc.boolean(),
  });

export const caseArb = (o: { maxRank: number; maxAdapters: number; batch: number; seq: number }) =>
  fc.array(adapterArb(o.maxRank), { minLength: 1, maxLength: o.maxAdapters }).chain((adapters) =>
    fc.record({
      adapters: fc.constant(adapters),
      rows: fc.array(
        fc.record({
          adapter: fc.integer({ min: -1, max: adapters.length - 1 }),
          len: fc.integer({ min: 1, max: o.seq }),
          seed: fc.nat(1000),
        }),
        { minLength: 1, maxLength: o.batch },
      ),
    }),
  );

const plain = loadModel('examples/models/tiny-llama');
const root = mkdtempSync(join(tmpdir(), 'peftc-multi-lora-'));
let made = 0;

/** Saves a random PEFT adapter for `model` (B scaled so it visibly moves the logits); returns its folder. */
export function makeAdapter(model: LoadedModel, a: AdapterSpec): string {
  const dir = join(root, `a${made++}`);
  // Made for the full-precision model (a 4-bit checkpoint's weights are its packed storage).
  writeRandomAdapter(
    dir,
    buildLlama(model.config, { batch: 1, seq: 4 }),
    plain.weights,
    { r: a.r, lora_alpha: a.alpha, target_modules: a.targets, seed: a.seed, scaleB: 5, use_dora: a.dora },
    model.source,
  );
  return dir;
}

function rowIds(row: Row, vocab: number): number[] {
  return Array.from({ length: row.len }, (_, i) => (row.seed * 31 + i * 17) % vocab);
}

/**
 * Loads the case's adapters into `slots`, runs one batch [batch, seq] (rows beyond the
 * case's are base rows of zeros), compares each row with its run alone, then unloads
 * them again. Returns the largest difference.
 */
export async function checkMixedBatch(
  backend: Backend,
  model: LoadedModel,
  exe: Executable,
  slots: AdapterSlots,
  c: MixedCase,
  shape: { batch: number; seq: number },
  tol = 1e-4,
): Promise<number> {
  const V = model.config.vocabSize;
  const dirs = c.adapters.map((a) => makeAdapter(model, a));
  const names = dirs.map((_, i) => `ad${i}`);
  for (const [i, d] of dirs.entries()) await slots.load(names[i], d);
  let worst = 0;
  try {
    const ids = new Int32Array(shape.batch * shape.seq);
    const rows: (string | null)[] = Array(shape.batch).fill(null);
    c.rows.forEach((r, b) => {
      ids.set(rowIds(r, V), b * shape.seq);
      rows[b] = r.adapter < 0 ? null : names[r.adapter];
    });
    const { logits } = await exe.run({
      feeds: { input_ids: tensor('i32', [shape.batch, shape.seq], ids), [ADAPTER_INDEX]: slots.index(rows) },
      outputs: ['logits'],
    });
    for (const [b, r] of c.rows.entries()) {
      const alone = await runAlone(backend, model, r.adapter < 0 ? [] : [dirs[r.adapter]], rowIds(r, V));
      for (let i = 0; i < r.len * V; i++) {
        const d = Math.abs(logits.data[b * shape.seq * V + i] - alone[i]);
        worst = Math.max(worst, d);
      }
    }
  } finally {
    for (const n of names) await slots.unload(n);
  }
  expect(worst, `mixed batch ${JSON.stringify(c)}`).toBeLessThan(tol);
  return worst;
}

/** Logits of one sequence through the ordinary path (prepareModel({adapters})). */
export async function runAlone(
  backend: Backend,
  model: LoadedModel,
  adapters: string[],
  ids: number[],
): Promise<Float32Array> {
  const { graph, weights } = prepareModel(model, { batch: 1, seq: ids.length }, { adapters });
  const exe = await backend.compile(graph, bindParams(graph, weights));
  try {
    const { logits } = await exe.run({ feeds: { input_ids: tensor('i32', [1, ids.length], ids) } });
    return Float32Array.from(logits.data);
  } finally {
    exe.dispose();
  }
}
