// Adapters PEFT 0.21 itself saved (test/fixtures/peft/<case>/, made by
// scripts/reference/peft_methods.py with torch 2.13, transformers 5.18, peft 0.21) give
// PEFT's logits in peftc: unmerged (`peftc logits --adapter`) and merged (`--merge`), on
// the bundled tiny-llama in f32. Tolerance 1e-4 absolute: both sides compute in f32 with
// different summation orders.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../../src/backends/cpu/index.ts';
import { tensor } from '../../src/ir/tensor.ts';
import { loadModel } from '../../src/models/llama/index.ts';
import { prepareModel } from '../../src/models/prepare.ts';

const ROOT = 'test/fixtures/peft';
const MODEL = 'examples/models/tiny-llama';

interface Logits {
  readonly shape: number[];
  readonly data: number[];
}

interface Expected {
  readonly input_ids: number[][];
  readonly base_logits: Logits;
  readonly logits?: Logits;
  readonly merged_logits?: Logits;
  readonly converted_logits?: Logits;
}

const read = (c: string): Expected => JSON.parse(readFileSync(join(ROOT, c, 'expected.json'), 'utf8'));

function logits(e: Expected, adapter: string | undefined, merge: boolean): Float32Array | Float64Array {
  const model = loadModel(MODEL);
  const batch = e.input_ids.length;
  const seq = e.input_ids[0].length;
  const { graph, weights } = prepareModel(
    model,
    { batch, seq },
    { adapters: adapter ? [adapter] : [], merge },
  );
  const ids = tensor('i32', [batch, seq], e.input_ids.flat());
  return runGraph(graph, { input_ids: ids }, weights).logits.data as Float32Array;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const TOL = 1e-4;

/** Cases and which of their adapters and logits they hold. */
const CASES: Array<{
  name: string;
  adapter: 'adapter' | 'converted';
  want: 'logits' | 'converted_logits';
  merged: boolean;
}> = [
  { name: 'lora', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'lora-rslora-pattern', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'dora', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'dora-embedding', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'pissa', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'pissa', adapter: 'converted', want: 'converted_logits', merged: false },
  { name: 'olora', adapter: 'adapter', want: 'logits', merged: true },
  { name: 'olora', adapter: 'converted', want: 'converted_logits', merged: false },
  { name: 'pissa-niter', adapter: 'converted', want: 'converted_logits', merged: false },
  // AdaLoRA after 4 AdamW steps with update_and_allocate: masks in rank_pattern, tensors cut
  // to the kept ranks (the q_proj modules at rank 0: zero-size tensors).
  { name: 'adalora', adapter: 'adapter', want: 'logits', merged: true },
];

describe('adapters saved by PEFT 0.21 give PEFT logits', () => {
  for (const c of CASES) {
    const dir = join(ROOT, c.name, c.adapter);
    it(`${c.name}/${c.adapter}: logits${c.merged ? ', and merged logits' : ''}`, () => {
      expect(existsSync(dir), `${dir} (run scripts/reference/peft_methods.py)`).toBe(true);
      const e = read(c.name);
      const base = logits(e, undefined, false);
      expect(maxAbsDiff(base, e.base_logits.data)).toBeLessThan(TOL);
      const want = e[c.want]!;
      const got = logits(e, dir, false);
      // The adapter must change the logits, or this test could not fail.
      expect(maxAbsDiff(want.data, e.base_logits.data)).toBeGreaterThan(1e-2);
      expect(maxAbsDiff(got, want.data)).toBeLessThan(TOL);
      if (c.merged) expect(maxAbsDiff(logits(e, dir, true), e.merged_logits!.data)).toBeLessThan(TOL);
    });
  }
});
