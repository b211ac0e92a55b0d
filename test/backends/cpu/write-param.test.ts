import { describe, expect, it } from 'vitest';
import { CpuBackend } from '../../../src/backends/cpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';

describe('CpuExecutable.writeParam', () => {
  it('replaces a param used by later runs, and refuses a wrong shape', async () => {
    const b = new GraphBuilder();
    const w = b.param('w', 'f32', [2], 'trainable');
    const g = b.build({ y: b.scale(w, 2) });
    const exe = await new CpuBackend().compile(g, new MapWeightStore().set('w', tensor('f32', [2], [1, 2])));
    await exe.writeParam('w', tensor('f32', [2], [5, 6]));
    expect(Array.from((await exe.run({ feeds: {} })).y.data)).toEqual([10, 12]);
    await expect(exe.writeParam('w', tensor('f32', [3]))).rejects.toThrow(
      /cannot write 'w': it is f32\[2\], the value is f32\[3\]/,
    );
    await expect(exe.writeParam('nope', tensor('f32', [2]))).rejects.toThrow(/no parameter 'nope'/);
  });
});
