import { describe, expect, it } from 'vitest';
import { runGraph } from '../../../src/backends/cpu/index.ts';
import { Graph } from '../../../src/ir/graph.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { verify } from '../../../src/ir/verify.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../../src/models/llama/index.ts';
import { autodiff } from '../../../src/passes/autodiff/index.ts';
import { checkpointActivations } from '../../../src/passes/checkpoint/index.ts';
import { peakLiveBytes } from '../../../src/passes/liveness.ts';

function trainGraph(layers: number, seq: number) {
  const c = { ...presetConfig('tiny'), numLayers: layers };
  const g0 = buildLlama(c, { batch: 1, seq }, { loss: true, logits: false });
  // Full fine-tuning of q and v: gradients flow through every layer (their grads stay alive as outputs).
  const g = new Graph(
    g0.nodes.map((n) =>
      n.op === 'param' && /(q_proj|v_proj)\.weight$/.test(String(n.attrs.name))
        ? { ...n, attrs: { ...n.attrs, role: 'trainable' } }
        : n,
    ),
    g0.outputs,
  );
  return { c, g: autodiff(g, { loss: 'loss' }) };
}

describe('checkpoint pass', () => {
  it('leaves gradients unchanged and lowers peak live activation memory', () => {
    const { c, g } = trainGraph(8, 24);
    const ck = verify(checkpointActivations(g, { loss: 'loss' }));
    const w = randomLlamaWeights(c, 3);
    const ids = Array.from({ length: 24 }, (_, i) => (i * 37) % 256);
    const feeds = { input_ids: tensor('i32', [1, 24], ids), labels: tensor('i32', [1, 24], ids) };
    const a = runGraph(g, feeds, w, { precision: 'f64' });
    const b = runGraph(ck, feeds, w, { precision: 'f64' });
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) {
      const x = a[k].data;
      const y = b[k].data;
      for (let i = 0; i < x.length; i++)
        expect(Math.abs(x[i] - y[i])).toBeLessThanOrEqual(1e-12 * (1 + Math.abs(x[i])));
    }
    const before = peakLiveBytes(g);
    const after = peakLiveBytes(ck);
    // 8 layers: only layer boundaries stay alive (measured ~0.4x)
    expect(after).toBeLessThan(before * 0.5);
  });

  it('is the identity on a graph without checkpointable segments', () => {
    const { g } = trainGraph(1, 4);
    const same = checkpointActivations(g, { loss: 'loss', segmentOf: () => undefined });
    expect(same).toBe(g);
  });
});
