// The memory plan's offline packing (memory-plan.ts packSlots): pooled values share a buffer
// only when their lifetimes are disjoint, every buffer holds its largest tenant, owned slots
// keep a buffer each, and the pool never needs more than the online pool it replaced.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { packSlots, type Slot } from '../../../src/backends/webgpu/memory-plan.ts';

const slotArb: fc.Arbitrary<Slot> = fc
  .record({
    bytes: fc.integer({ min: 1, max: 64 }).map((k) => k * 256),
    pooled: fc.boolean(),
    start: fc.integer({ min: 0, max: 40 }),
    len: fc.option(fc.integer({ min: 0, max: 12 }), { nil: undefined }),
  })
  .map(({ bytes, pooled, start, len }) => ({
    bytes,
    label: 'v',
    pooled,
    kind: pooled ? 'activations' : 'frozen',
    start: pooled ? start : 0,
    end: pooled && len !== undefined ? start + len : Infinity,
  }));

/** What an online pool (each value, by start, takes the smallest idle buffer that fits, else grows) allocates. */
function onlinePool(slots: readonly Slot[]): number {
  const sizes: number[] = [];
  const busyUntil: number[] = [];
  const order = slots.map((_, i) => i).filter((i) => slots[i].pooled);
  for (const i of order.sort((a, b) => slots[a].start - slots[b].start || a - b)) {
    const s = slots[i];
    let best = -1;
    for (let b = 0; b < sizes.length; b++)
      if (sizes[b] >= s.bytes && busyUntil[b] < s.start && (best < 0 || sizes[b] < sizes[best])) best = b;
    if (best < 0) {
      sizes.push(s.bytes);
      busyUntil.push(s.end);
    } else busyUntil[best] = s.end;
  }
  return sizes.reduce((a, b) => a + b, 0);
}

describe('memory plan packing', () => {
  it('shares a buffer only between disjoint lifetimes; each buffer holds its tenants', () => {
    fc.assert(
      fc.property(fc.array(slotArb, { maxLength: 40 }), (slots) => {
        const { buffers, bufferOf, byKind } = packSlots(slots, 0);
        const owners = new Map<number, number[]>();
        slots.forEach((s, i) => {
          const b = bufferOf[i];
          expect(buffers[b].pooled).toBe(s.pooled);
          expect(buffers[b].bytes).toBeGreaterThanOrEqual(s.bytes);
          owners.set(b, [...(owners.get(b) ?? []), i]);
        });
        for (const [b, list] of owners) {
          if (!buffers[b].pooled) expect(list).toHaveLength(1);
          for (const x of list)
            for (const y of list)
              if (x < y) expect(slots[x].end < slots[y].start || slots[y].end < slots[x].start).toBe(true);
        }
        // Every buffer is someone's, and the kinds add up to the bytes.
        expect(owners.size).toBe(buffers.length);
        const total = buffers.reduce((a, b) => a + b.bytes, 0);
        expect(Object.values(byKind).reduce((a, b) => a + b, 0)).toBe(total);
        // At least the live bytes at any position, pooled.
        const pooled = buffers.filter((b) => b.pooled).reduce((a, b) => a + b.bytes, 0);
        for (let t = 0; t <= 52; t++) {
          const live = slots
            .filter((s) => s.pooled && s.start <= t && t <= s.end)
            .reduce((a, s) => a + s.bytes, 0);
          expect(pooled).toBeGreaterThanOrEqual(live);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('needs no more than an online pool', () => {
    fc.assert(
      fc.property(fc.array(slotArb, { maxLength: 40 }), (slots) => {
        const { buffers } = packSlots(slots, 0);
        const pooled = buffers.filter((b) => b.pooled).reduce((a, b) => a + b.bytes, 0);
        expect(pooled).toBeLessThanOrEqual(onlinePool(slots));
      }),
      { numRuns: 300 },
    );
  });
});
