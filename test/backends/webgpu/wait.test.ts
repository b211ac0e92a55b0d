// settle(): on software adapters the wait sleeps between turns of the event loop, and
// still gives the promise's value or its error; other adapters get the promise itself.
import { expect, it } from 'vitest';
import { SHORT_RUN_MS, settle } from '../../../src/backends/webgpu/wait.ts';

const later = <T>(ms: number, v: T, fail = false) =>
  new Promise<T>((ok, no) => setTimeout(() => (fail ? no(new Error(String(v))) : ok(v)), ms));

it('gives the value or the error of the work, software or not', async () => {
  await expect(settle({ software: false }, later(1, 7))).resolves.toBe(7);
  await expect(settle({ software: true }, later(5, 'mapped'))).resolves.toBe('mapped');
  await expect(settle({ software: true }, later(2, 'device lost', true))).rejects.toThrow('device lost');
  // A run expected to be short keeps Dawn's loop; a long one sleeps: the same value.
  await expect(settle({ software: true }, later(1, 'decoded'), SHORT_RUN_MS / 2)).resolves.toBe('decoded');
  await expect(settle({ software: true }, later(1, 'long'), SHORT_RUN_MS * 2)).resolves.toBe('long');
});

it('lets timers and other callbacks run while it waits', async () => {
  const seen: string[] = [];
  setImmediate(() => seen.push('immediate'));
  setTimeout(() => seen.push('timer'), 1);
  await settle({ software: true }, later(20, 0));
  expect(seen.sort()).toEqual(['immediate', 'timer']);
});
