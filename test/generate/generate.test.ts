// The decoding loop: more prompts than rows take rows as others finish (continuous
// batching), and every prompt's result is what it gets decoded alone, greedy or seeded.
import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import {
  DecodeSession,
  type GenerateOptions,
  generate,
  heldBack,
  kvFeeds,
  MASKED,
} from '../../src/generate/index.ts';
import { loadModel } from '../../src/models/llama/index.ts';

const model = loadModel('examples/models/tiny-llama');
const cpu = new CpuBackend();
const prompts = [
  [256, 84, 104, 101],
  [256, 79, 110, 99, 101, 32, 117, 112, 111, 110],
  [256, 65],
  [256, 84, 111, 109, 32, 104, 97, 100],
  [256, 83, 104, 101, 32, 115, 97, 119],
];

async function run(batch: number, ps: number[][], o: GenerateOptions) {
  const s = await DecodeSession.create(cpu, model, { batch, maxLen: 24, prefillChunk: 4 });
  try {
    return await generate(s, ps, o);
  } finally {
    s.dispose();
  }
}

describe('generate', () => {
  it('5 prompts on 2 rows give what each gives alone (greedy and seeded), limits per prompt', async () => {
    for (const sampling of [{}, { temperature: 0.9, topP: 0.9, seed: 3 }]) {
      const o: GenerateOptions = { maxNewTokens: 6, sampling, eos: [prompts[0][3]] };
      const batched = await run(2, prompts, o);
      for (const [i, p] of prompts.entries()) {
        const [alone] = await run(1, [p], o);
        // Alone, a prompt draws from stream 0; in the batch from stream i: compare greedy only.
        if (!('seed' in sampling)) expect(batched[i]).toEqual(alone);
        expect(batched[i].outputIds.length).toBeLessThanOrEqual(6);
        expect(batched[i].finishReason).toBe(batched[i].outputIds.length < 6 ? 'stop' : 'length');
      }
      expect(await run(3, prompts, o)).toEqual(batched);
    }
  });

  it('a row stops when its cache is full (finish_reason length)', async () => {
    const [r] = await run(1, [prompts[1]], { maxNewTokens: 100 });
    expect(r.finishReason).toBe('length');
    expect(prompts[1].length + r.outputIds.length).toBe(24 + 1); // the last token needs no slot
  });

  it('streams text that never ends inside a stop string', async () => {
    const decode = (ids: readonly number[]) => String.fromCharCode(...ids.filter((x) => x < 256));
    const [free] = await run(1, [prompts[1]], { maxNewTokens: 8, decode });
    const stop = (free.text as string).slice(4, 6);
    const pieces: string[] = [];
    const [r] = await run(1, [prompts[1]], {
      maxNewTokens: 8,
      decode,
      stop: [stop],
      onText: (_, t) => pieces.push(t),
    });
    expect(pieces.join('')).toBe(r.text);
    expect(r.text).toBe((free.text as string).slice(0, (free.text as string).indexOf(stop)));
    expect(heldBack('abcx', ['xyz', 'cx!'])).toBe(2);
  });

  it('extraFeeds learns which session row each batch row serves', async () => {
    const calls: (number | undefined)[][] = [];
    const s = await DecodeSession.create(cpu, model, {
      batch: 3,
      maxLen: 8,
      extraFeeds: (rows) => {
        calls.push([...rows]);
        return {};
      },
    });
    await s.prefill([
      { row: 2, tokens: [256, 1] },
      { row: 0, tokens: [256] },
    ]);
    await s.step([{ row: 2, token: 5 }]);
    s.dispose();
    expect(calls).toEqual([
      [2, 0],
      [undefined, undefined, 2],
    ]);
  });

  it('feeds: a row sees its own slots only, idle rows write nothing', () => {
    const f = kvFeeds(
      [
        { start: 2, tokens: [7] },
        { start: 0, tokens: [] },
      ],
      1,
      4,
    );
    expect(Array.from(f.kv_keep.data)).toEqual([1, 1, 0, 1, 1, 1, 1, 1]);
    expect(Array.from(f.kv_write.data)).toEqual([0, 0, 1, 0, 0, 0, 0, 0]);
    expect(Array.from(f.attn_bias.data.slice(0, 4))).toEqual([0, 0, 0, Math.fround(MASKED)]);
    expect(Array.from(f.positions.data)).toEqual([2, 0]);
  });
});
