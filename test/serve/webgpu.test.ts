// The server on the WebGPU backend (lavapipe in CI): concurrent requests over several
// adapters, batched together through the WGSL sgmv kernel, each answering as that request
// decoded alone with its adapter on the same backend (greedy), streamed or not.
import { expect, it } from 'vitest';
import { gpuSuite } from '../backends/webgpu/gpu.ts';
import { alone, serve, tok } from './helpers.ts';

const REQUESTS = Array.from({ length: 8 }, (_, i) => ({
  adapter: i % 4,
  prompt: `Row ${i} says`,
  maxTokens: 3 + (i % 3),
  stream: i % 2 === 0,
}));

await gpuSuite('peftc serve on webgpu', ({ backend }) => {
  it('answers concurrent requests over 4 adapters as each alone', async () => {
    const s = await serve(backend, { maxBatch: 4, maxLen: 32, adapters: 4, prefillChunk: 16 });
    try {
      const answers = await Promise.all(
        REQUESTS.map(async (r) => {
          const body = { model: `a${r.adapter}`, prompt: r.prompt, max_tokens: r.maxTokens, temperature: 0 };
          if (!r.stream) return (await s.client.completions.create(body)).choices[0].text;
          let text = '';
          for await (const c of await s.client.completions.create({ ...body, stream: true }))
            text += c.choices[0]?.text ?? '';
          return text;
        }),
      );
      for (const [i, r] of REQUESTS.entries())
        expect(answers[i], `request ${i}`).toBe(
          (await alone(backend, r.adapter, tok.encode(r.prompt), r.maxTokens)).text,
        );
    } finally {
      await s.close();
    }
  }, 20_000);
});
