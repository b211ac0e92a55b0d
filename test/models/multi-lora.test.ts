// The multi-adapter runtime on the CPU: a batch that mixes adapters (different ranks and
// targets, LoRA and DoRA, base rows, different lengths) equals each row run alone with its adapter
// through the ordinary path; adapters load and unload into one compiled Executable; what
// it refuses (a rank above max_lora_rank, a module outside the targets, full slots).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { ADAPTER_INDEX, prepareMultiLora } from '../../src/models/multi-lora.ts';
import { openModel } from '../../src/models/open.ts';
import { caseArb, checkMixedBatch, MODULES, makeAdapter, runAlone } from './multi-lora-cases.ts';

const model = openModel('examples/models/tiny-llama');
const shape = { batch: 4, seq: 5 };
const options = { target_modules: MODULES, max_loras: 3, max_lora_rank: 8 };

describe('multi-LoRA runtime (cpu)', () => {
  const backend = new CpuBackend();
  const built = prepareMultiLora(model, shape, options);

  it('gives every targeted linear one sgmv branch and an adapter_index input', () => {
    const g = built.graph;
    expect(g.ofOp('sgmv')).toHaveLength(2 * MODULES.length);
    expect(g.inputs().map((n) => n.attrs.name)).toContain(ADAPTER_INDEX);
    expect(built.slots.layout.modules[0]).toMatchObject({
      module: 'model.layers.0.self_attn.q_proj',
      inFeatures: 64,
    });
  });

  it('each row of a mixed batch equals that request run alone with its adapter (ranks, mixes, lengths)', async () => {
    const exe = await backend.compile(built.graph, bindParams(built.graph, built.weights));
    built.slots.attach(exe);
    await fc.assert(
      fc.asyncProperty(
        caseArb({ maxRank: 8, maxAdapters: 3, batch: shape.batch, seq: shape.seq }),
        async (c) => {
          await checkMixedBatch(backend, model, exe, built.slots, c, shape);
        },
      ),
      { numRuns: 15 },
    );
    built.slots.detach(exe);
    exe.dispose();
  }, 20_000);

  it('loads and unloads adapters into the same Executable (no recompile)', async () => {
    const { graph, weights, slots } = prepareMultiLora(model, { batch: 2, seq: 3 }, options);
    const exe = await backend.compile(graph, bindParams(graph, weights));
    slots.attach(exe);
    const ids = [5, 9, 200];
    const feeds = (rows: (string | null)[]) => ({
      input_ids: tensor('i32', [2, 3], [...ids, ...ids]),
      [ADAPTER_INDEX]: slots.index(rows),
    });
    const a = makeAdapter(model, { r: 2, targets: ['q_proj', 'down_proj'], alpha: 8, seed: 1 });
    const b = makeAdapter(model, { r: 6, targets: ['v_proj'], alpha: 16, seed: 2 });
    const [base, wantA, wantB] = await Promise.all([
      runAlone(backend, model, [], ids),
      runAlone(backend, model, [a], ids),
      runAlone(backend, model, [b], ids),
    ]);
    const close = (got: ArrayLike<number>, want: Float32Array, off: number) => {
      let m = 0;
      for (let i = 0; i < want.length; i++) m = Math.max(m, Math.abs(got[off + i] - want[i]));
      expect(m).toBeLessThan(1e-4);
    };
    const V = model.config.vocabSize;
    // The adapters visibly move the logits (else equality would prove nothing).
    expect(Math.max(...wantA.map((v, i) => Math.abs(v - base[i])))).toBeGreaterThan(1e-2);
    expect(Math.max(...wantB.map((v, i) => Math.abs(v - base[i])))).toBeGreaterThan(1e-2);
    expect((await slots.load('a', a)).slot).toBe(0);
    let out = (await exe.run({ feeds: feeds(['a', null]) })).logits.data;
    close(out, wantA, 0);
    close(out, base, 3 * V);
    await slots.unload('a');
    expect(slots.loaded()).toEqual([]);
    // The freed slot 0 now holds b; the old index of a computes b.
    expect((await slots.load('b', b)).slot).toBe(0);
    out = (await exe.run({ feeds: { ...feeds([null, null]), [ADAPTER_INDEX]: tensor('i32', [2], [0, -1]) } }))
      .logits.data;
    close(out, wantB, 0);
    close(out, base, 3 * V);
    expect(() => slots.index(['a'])).toThrow(/'a', which is not loaded \(loaded: b\)/);
    exe.dispose();
  }, 20_000);

  it('a DoRA adapter: its slot holds m / ||W + s B A|| per row, and its rows equal it run alone', async () => {
    const { graph, weights, slots } = prepareMultiLora(model, { batch: 2, seq: 3 }, options);
    const exe = await backend.compile(graph, bindParams(graph, weights));
    slots.attach(exe);
    const ids = [7, 3, 100];
    const d = makeAdapter(model, { r: 4, targets: ['o_proj', 'up_proj'], alpha: 8, seed: 9, dora: true });
    const [base, want] = await Promise.all([
      runAlone(backend, model, [], ids),
      runAlone(backend, model, [d], ids),
    ]);
    await slots.load('d', d);
    const mag = (await exe.readParam('model.layers.1.mlp.up_proj.lora_slots.mag')).data;
    const V = model.config.vocabSize;
    const row0 = Array.from(mag.slice(0, model.config.intermediateSize));
    expect(Math.max(...row0.map((v) => Math.abs(v - 1)))).toBeGreaterThan(1e-2);
    expect(mag[model.config.intermediateSize]).toBe(1); // slot 1: empty
    const out = (
      await exe.run({
        feeds: {
          input_ids: tensor('i32', [2, 3], [...ids, ...ids]),
          [ADAPTER_INDEX]: slots.index(['d', null]),
        },
      })
    ).logits.data;
    let m = 0;
    let moved = 0;
    for (let i = 0; i < 3 * V; i++) {
      m = Math.max(m, Math.abs(out[i] - want[i]), Math.abs(out[3 * V + i] - base[i]));
      moved = Math.max(moved, Math.abs(want[i] - base[i]));
    }
    expect(m).toBeLessThan(1e-4);
    expect(moved).toBeGreaterThan(1e-2);
    await slots.unload('d');
    expect(
      (await exe.readParam('model.layers.1.mlp.up_proj.lora_slots.mag')).data.every((v) => v === 1),
    ).toBe(true);
    exe.dispose();
  });

  it('wrap(backend): compiled executables follow loads, and runs get adapter_index from setRow', async () => {
    const { graph, weights, slots } = prepareMultiLora(model, { batch: 2, seq: 3 }, options);
    const wrapped = slots.wrap(backend);
    const exe = await wrapped.compile(graph, bindParams(graph, weights));
    const ids = [4, 8, 15];
    const a = makeAdapter(model, { r: 3, targets: ['k_proj', 'gate_proj'], alpha: 8, seed: 11 });
    const [base, want] = await Promise.all([
      runAlone(backend, model, [], ids),
      runAlone(backend, model, [a], ids),
    ]);
    await slots.load('a', a); // after compiling: the wrapped executable is written
    slots.setRow(1, 'a');
    const V = model.config.vocabSize;
    const run = async () =>
      (await exe.run({ feeds: { input_ids: tensor('i32', [2, 3], [...ids, ...ids]) } })).logits.data;
    const diff = (out: ArrayLike<number>, off: number, w: Float32Array) =>
      Math.max(...Array.from(w, (v, i) => Math.abs(out[off + i] - v)));
    let out = await run();
    expect(diff(out, 0, base)).toBeLessThan(1e-4);
    expect(diff(out, 3 * V, want)).toBeLessThan(1e-4);
    expect(() => slots.setRow(0, 'nope')).toThrow(/not loaded/);
    await slots.unload('a'); // row 1 falls back to the base model
    out = await run();
    expect(diff(out, 3 * V, base)).toBeLessThan(1e-4);
    exe.dispose();
  });

  it('refuses, with the reason, what the slots cannot hold', async () => {
    const { slots } = prepareMultiLora(
      model,
      { batch: 1, seq: 2 },
      { ...options, target_modules: ['q_proj', 'v_proj'], max_lora_rank: 4 },
    );
    const big = makeAdapter(model, { r: 8, targets: ['q_proj'], alpha: 8, seed: 3 });
    await expect(slots.load('big', big)).rejects.toThrow(
      /rank 8 at model.layers.0.self_attn.q_proj is above max_lora_rank 4/,
    );
    const off = makeAdapter(model, { r: 2, targets: ['up_proj'], alpha: 8, seed: 4 });
    await expect(slots.load('off', off)).rejects.toThrow(
      /adapts model.layers.0.mlp.up_proj, which is not among the runtime's target modules/,
    );
    const ok = makeAdapter(model, { r: 2, targets: ['q_proj'], alpha: 8, seed: 6 });
    // Concurrent loads take different slots.
    const got = await Promise.all(['x', 'y', 'z'].map((n) => slots.load(n, ok)));
    expect(got.map((a) => a.slot).sort()).toEqual([0, 1, 2]);
    await expect(slots.load('w', ok)).rejects.toThrow(/all 3 adapter slots are in use \(x, y, z\)/);
    await expect(slots.load('x', ok)).rejects.toThrow(/already loaded/);
    await expect(slots.unload('nope')).rejects.toThrow(/no adapter named 'nope' is loaded/);
  });
});
