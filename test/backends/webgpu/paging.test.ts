// Paged optimizer state on WebGPU: the plan (marker, pageStates, budget, refusal), and runs
// that keep states on the host give bit-identical params and states to resident runs while
// the device holds fewer bytes, on a toy update and on the tiny model's LoRA train step.
import { describe, expect, it } from 'vitest';
import { planPaging } from '../../../src/backends/webgpu/paging.ts';
import type { Graph } from '../../../src/ir/graph.ts';
import { type Tensor, tensor } from '../../../src/ir/tensor.ts';
import { parseRecipe } from '../../../src/methods/index.ts';
import { openModel } from '../../../src/models/open.ts';
import { adamw } from '../../../src/passes/optimizer/index.ts';
import { prepareRun } from '../../../src/train/setup.ts';
import { stepGraph, stepStore } from '../../passes/optimizer/helpers.ts';
import { gpuSuite } from './gpu.ts';

const stateBytes = (g: Graph) =>
  g
    .params()
    .filter((p) => p.attrs.role === 'state')
    .reduce(
      (s, p) =>
        s +
        Math.max(
          4,
          Math.ceil(((p.type.dtype === 'u8' ? 1 : 4) * p.type.shape.reduce((a, b) => a * b, 1)) / 4) * 4,
        ),
      0,
    );

describe('paging plan', () => {
  it('pages the states the graph marks, all states on request, or the largest under a budget', () => {
    const marked = stepGraph(5000, { paged: true });
    const plain = stepGraph(5000, {});
    const names = (g: Graph, ids: ReadonlySet<number>) =>
      [...ids].map((i) => String(g.node(i).attrs.name)).sort();
    expect(names(marked, planPaging(marked).paged)).toEqual([
      'optimizer.exp_avg.p',
      'optimizer.exp_avg_absmax.p',
      'optimizer.exp_avg_sq.p',
      'optimizer.exp_avg_sq_absmax.p',
    ]);
    expect(planPaging(plain).paged.size).toBe(0);
    expect(planPaging(plain, { pageStates: true }).paged.size).toBe(4);
    // p is 20000 bytes, each code array 5000, each absmax 80 (30160 in all): a 26000-byte budget
    // pages one code array.
    const plan = planPaging(plain, { deviceBudgetBytes: 26_000 });
    expect(plan.residentParamBytes).toBe(20_000 + 5000 + 160);
    expect(names(plain, plan.paged)).toHaveLength(1);
    expect(plan.pagedBytes).toBe(5000);
  });

  it('refuses a budget the non-state params alone exceed, with the numbers', () => {
    expect(() => planPaging(stepGraph(5000, {}), { deviceBudgetBytes: 1000 })).toThrow(
      /take 20000 bytes, over the device budget of 1000 bytes even with all 4 optimizer states paged/,
    );
    expect(() => planPaging(stepGraph(10, {}), { deviceBudgetBytes: -1 })).toThrow(/non-negative/);
  });
});

await gpuSuite('paged optimizer state on WebGPU', ({ backend }) => {
  async function steps(g: Graph, n: number, paging: boolean, k = 3) {
    const exe = await backend.compile(g, stepStore(g, n), { paging: { pageStates: paging } });
    const outs: Tensor[] = [];
    for (let t = 1; t <= k; t++) {
      const gr = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + t));
      const r = await exe.run({
        feeds: { g: tensor('f32', [n], gr), lr: tensor('f32', [], [1e-2]), step: tensor('f32', [], [t]) },
        outputs: ['out', 'assign:optimizer.exp_avg.p'],
      });
      outs.push(r['assign:optimizer.exp_avg.p']);
    }
    const params: Record<string, Tensor> = {};
    for (const p of g.params()) params[String(p.attrs.name)] = await exe.readParam(String(p.attrs.name));
    const mem = exe.memory;
    exe.dispose();
    return { params, mem, outs };
  }

  for (const [what, rule] of [
    ['adamw8bit', undefined],
    ['adamw', adamw({ betas: [0.9, 0.999], eps: 1e-8 })],
  ] as const) {
    it(`${what}: bit-identical params and states, the states kept on the host`, async () => {
      const n = 5000;
      const g = stepGraph(n, { weightDecay: 0.01, rule });
      const resident = await steps(g, n, false);
      const paged = await steps(g, n, true);
      for (const [name, t] of Object.entries(resident.params)) {
        expect([...paged.params[name].data], name).toEqual([...t.data]);
      }
      // An assign: output asked for by name comes from the host copy.
      paged.outs.forEach((o, i) => {
        expect([...o.data]).toEqual([...resident.outs[i].data]);
      });
      expect(paged.mem.pagedParams).toBe(g.params().length - 1);
      expect(paged.mem.pagedHostBytes).toBe(stateBytes(g));
      // One tensor's states are on the device while it is updated, in place in both runs:
      // paging saves nothing here beyond rounding (the bundled-model test below shows the
      // saving across tensors updated one after another).
      expect(paged.mem.deviceBytes).toBeLessThanOrEqual(resident.mem.deviceBytes + 1024);
    });
  }

  it('a device budget pages the largest states first, with identical results', async () => {
    const n = 5000;
    const g = stepGraph(n, { weightDecay: 0.01 });
    const resident = await steps(g, n, false);
    const exe = await backend.compile(g, stepStore(g, n), { paging: { deviceBudgetBytes: 21_000 } });
    try {
      expect(exe.memory.pagedParams).toBe(2); // 30160 B of params: both code arrays go, the absmax stay
      for (let t = 1; t <= 3; t++) {
        const gr = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + t));
        await exe.run({
          feeds: { g: tensor('f32', [n], gr), lr: tensor('f32', [], [1e-2]), step: tensor('f32', [], [t]) },
        });
      }
      for (const [name, t] of Object.entries(resident.params)) {
        expect([...(await exe.readParam(name)).data], name).toEqual([...t.data]);
      }
    } finally {
      exe.dispose();
    }
  });

  it('writeParam and readParam on a paged state go through the host copy', async () => {
    const n = 300;
    const g = stepGraph(n, { minEightBitSize: 256 });
    const exe = await backend.compile(g, stepStore(g, n), { paging: { pageStates: true } });
    try {
      const codes = tensor(
        'u8',
        [n],
        Uint8Array.from({ length: n }, (_, i) => i % 256),
      );
      await exe.writeParam('optimizer.exp_avg.p', codes);
      expect([...(await exe.readParam('optimizer.exp_avg.p')).data]).toEqual([...codes.data]);
    } finally {
      exe.dispose();
    }
  });

  it('tiny-llama LoRA train step (paged_adamw8bit, paged_adamw): identical to the resident run, device bytes drop by the states', async () => {
    const model = openModel('examples/models/tiny-llama', { seed: 0 });
    const recipe = (type: string) =>
      parseRecipe({
        methods: [
          {
            method: 'lora',
            r: 8,
            lora_alpha: 16,
            target_modules: ['q_proj', 'v_proj', 'up_proj', 'down_proj'],
          },
        ],
        optimizer: {
          type,
          lr: 1e-2,
          weight_decay: 0,
          ...(type.endsWith('8bit') ? { min_8bit_size: 0 } : {}),
        },
      });
    const shape = { batch: 2, seq: 16 };
    const run = async (type: string) => {
      const r = prepareRun(model, recipe(type), shape, { seed: 0 });
      const exe = await backend.compile(r.step, r.weights);
      const losses: number[] = [];
      for (let t = 1; t <= 3; t++) {
        const ids = Int32Array.from({ length: 32 }, (_, i) => (i * 7 + t) % 200);
        const res = await exe.run({
          feeds: {
            input_ids: tensor('i32', [2, 16], ids),
            labels: tensor('i32', [2, 16], ids),
            lr: tensor('f32', [], [1e-2]),
            step: tensor('i32', [], [t]),
          },
          outputs: ['loss'],
        });
        losses.push(res.loss.data[0]);
      }
      const params: Record<string, number[]> = {};
      for (const n of [...r.trainable, ...r.state]) params[n] = [...(await exe.readParam(n)).data];
      const mem = exe.memory;
      exe.dispose();
      return { losses, params, mem, states: stateBytes(r.step) };
    };
    for (const [plain, pagedType] of [
      ['adamw8bit', 'paged_adamw8bit'],
      ['adamw', 'paged_adamw'],
    ]) {
      const resident = await run(plain);
      const paged = await run(pagedType);
      expect(paged.losses).toEqual(resident.losses);
      expect(Object.keys(paged.params).sort()).toEqual(Object.keys(resident.params).sort());
      for (const [k, v] of Object.entries(resident.params)) expect(paged.params[k], k).toEqual(v);
      expect(paged.mem.pagedHostBytes).toBe(resident.states);
      const saved = resident.mem.deviceBytes - paged.mem.deviceBytes;
      console.log(
        `tiny-llama LoRA step, ${plain} states ${resident.states} B: device ${resident.mem.deviceBytes} B resident vs ${paged.mem.deviceBytes} B ${pagedType} (saved ${saved} B; pool ${resident.mem.pooledBytes} -> ${paged.mem.pooledBytes} B)`,
      );
      // Resident state buffers leave the device: at least the state bytes are saved.
      expect(saved).toBeGreaterThanOrEqual(resident.states);
    }
  });
});
