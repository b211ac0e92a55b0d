// Run by runtime.test.ts in a child process: uses the backend, disposes it, and
// must then exit by itself (a live Dawn device would keep the process alive).
import { WebGpuBackend } from '../../../src/backends/webgpu/index.ts';
import { GraphBuilder } from '../../../src/ir/builder.ts';
import { tensor } from '../../../src/ir/tensor.ts';
import { MapWeightStore } from '../../../src/ir/weights.ts';

const backend = new WebGpuBackend();
const b = new GraphBuilder();
const y = b.softmax(b.input('x', 'f32', [2, 3]));
const exe = await backend.compile(b.build({ y }), new MapWeightStore());
const out = await exe.run({ feeds: { x: tensor('f32', [2, 3], [1, 2, 3, 4, 5, 6]) } });
console.log(`ok ${out.y.data.length}`);
backend.dispose();
