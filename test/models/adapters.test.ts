import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { bindParams } from '../../src/ir/weights.ts';
import { injectLora, loraOptions, mergeLora } from '../../src/methods/lora/index.ts';
import { attachPeftAdapter, savePeftAdapter } from '../../src/models/adapters.ts';
import { buildLlama, presetConfig, randomLlamaWeights } from '../../src/models/llama/index.ts';

const c = presetConfig('tiny');
const ids = [256, 10, 20, 30, 40, 50];
const feeds = { input_ids: tensor('i32', [1, ids.length], ids) };

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('PEFT adapters on a LLaMA graph', () => {
  const base = randomLlamaWeights(c, 1);
  const g = buildLlama(c, { batch: 1, seq: ids.length });
  const opts = loraOptions.parse({
    r: 4,
    lora_alpha: 8,
    target_modules: ['q_proj', 'v_proj', 'down_proj'],
    init_lora_weights: false,
  });
  const injected = injectLora(g, opts, base);
  const trained = bindParams(injected.graph, injected.weights!, 5);
  const want = runGraph(injected.graph, feeds, trained).logits;

  it('save then attach reproduces the outputs exactly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-adapter-'));
    savePeftAdapter(dir, injected.graph, (n) => trained.get(n)!, opts, 'preset:tiny');
    const attached = attachPeftAdapter(g, base, dir);
    const got = runGraph(attached.graph, feeds, attached.weights).logits;
    expect(maxDiff(got.data, want.data)).toBe(0);
    // The adapter changes the model's output (the test would be vacuous otherwise).
    expect(maxDiff(runGraph(g, feeds, base).logits.data, want.data)).toBeGreaterThan(1e-4);
  });

  it('merged logits equal the unmerged adapter', () => {
    const merged = mergeLora(injected.graph, trained);
    const got = runGraph(merged.graph, feeds, merged.weights!).logits;
    expect(merged.graph.params().some((p) => String(p.attrs.name).includes('lora_'))).toBe(false);
    expect(maxDiff(got.data, want.data)).toBeLessThan(1e-4);
  });

  it('rejects adapters it cannot apply, naming the file and key', () => {
    const dir = mkdtempSync(join(tmpdir(), 'peftc-adapter-'));
    savePeftAdapter(dir, injected.graph, (n) => trained.get(n)!, opts, null);
    const cfg = join(dir, 'adapter_config.json');
    const json = JSON.parse(readFileSync(cfg, 'utf8'));
    // use_dora on a plain LoRA file: DoRA needs the magnitudes the file lacks.
    writeFileSync(cfg, JSON.stringify({ ...json, use_dora: true }));
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(
      /adapter_model\.safetensors: has no tensors for \d+ adapter weight\(s\) the config targets, e\.g\. .*\.lora_magnitude_vector\.default\.weight/,
    );
    writeFileSync(cfg, JSON.stringify({ ...json, target_modules: ['nonexistent_proj'] }));
    expect(() => attachPeftAdapter(g, base, dir)).toThrow(
      /adapter_config\.json: target modules \["nonexistent_proj"\] not found in the model/,
    );
  });
});
