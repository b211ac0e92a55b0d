// The memory plan's offline packing (memory-plan.ts packSlots): pooled values share bytes
// only when their lifetimes are disjoint, never share a buffer with a value the same dispatch
// binds (WebGPU refuses a read and a write of one buffer there), every region lies inside its
// buffer, owned slots keep a buffer each, and the pool never needs more than an online pool.
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

const caseArb = fc
  .array(slotArb, { maxLength: 40 })
  .chain((slots) =>
    fc.record({
      slots: fc.constant(slots),
      pairs: fc.array(
        fc.tuple(fc.nat(Math.max(0, slots.length - 1)), fc.nat(Math.max(0, slots.length - 1))),
        {
          maxLength: 30,
        },
      ),
    }),
  )
  .map(({ slots, pairs }) => {
    // A conflict (read and written by one dispatch) is between values live at the same time.
    const conflicts = new Map<number, Set<number>>();
    for (const [a, b] of pairs) {
      const x = slots[a];
      const y = slots[b];
      if (a === b || !x?.pooled || !y?.pooled || !(x.start <= y.end && y.start <= x.end)) continue;
      for (const [p, q] of [
        [a, b],
        [b, a],
      ]) {
        const set = conflicts.get(p) ?? new Set<number>();
        set.add(q);
        conflicts.set(p, set);
      }
    }
    return { slots, conflicts };
  });

describe('memory plan packing', () => {
  it('values share bytes only when disjoint in time, and never a buffer with a value of the same dispatch', () => {
    fc.assert(
      fc.property(caseArb, ({ slots, conflicts }) => {
        const { buffers, regionOf, byKind } = packSlots(slots, 0, conflicts);
        const owners = new Map<number, number[]>();
        slots.forEach((s, i) => {
          const { buffer, offset } = regionOf[i];
          expect(buffers[buffer].pooled).toBe(s.pooled);
          expect(offset % 256).toBe(0);
          expect(offset + s.bytes).toBeLessThanOrEqual(buffers[buffer].bytes);
          owners.set(buffer, [...(owners.get(buffer) ?? []), i]);
        });
        for (const [b, list] of owners) {
          if (!buffers[b].pooled) expect(list).toHaveLength(1);
          for (const x of list)
            for (const y of list) {
              if (x >= y) continue;
              expect(conflicts.get(x)?.has(y) ?? false).toBe(false);
              const apart = slots[x].end < slots[y].start || slots[y].end < slots[x].start;
              const [ox, oy] = [regionOf[x].offset, regionOf[y].offset];
              const disjoint = ox + slots[x].bytes <= oy || oy + slots[y].bytes <= ox;
              expect(apart || disjoint).toBe(true);
            }
        }
        // Every buffer is someone's, and the kinds add up to the bytes.
        expect(owners.size).toBe(buffers.length);
        const total = buffers.reduce((a, b) => a + b.bytes, 0);
        expect(Object.values(byKind).reduce((a, b) => a + b, 0)).toBe(total);
        expect(byKind.workspace).toBeGreaterThanOrEqual(0);
      }),
      { numRuns: 300 },
    );
  });

  it('needs no more than an online pool', () => {
    fc.assert(
      fc.property(caseArb, ({ slots, conflicts }) => {
        const { buffers } = packSlots(slots, 0, conflicts);
        const pooled = buffers.filter((b) => b.pooled).reduce((a, b) => a + b.bytes, 0);
        expect(pooled).toBeLessThanOrEqual(onlinePool(slots));
      }),
      { numRuns: 300 },
    );
  });
});
