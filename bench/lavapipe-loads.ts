// What bounds matmuls on lavapipe (issue 21, docs/DECISIONS.md "Large matmuls on lavapipe
// read textures"): one 512^3 kernel (a workgroup of 8 lanes shares 8 rows of A, each lane
// owns 4 columns of B), timed with its operands read from storage buffers, with A's loads
// (uniform addresses), B's (per lane) or all loads replaced by arithmetic, and with both
// operands read from rgba32float textures instead; then the same with 16 columns per lane
// (the texture matmul's tile). Not part of `npm run bench`: the experiment behind a design
// decision, kept runnable.
//   node bin/run-ts.js bench/lavapipe-loads.ts [--reps N]
import { parseArgs } from 'node:util';
import { acquireDevice } from '../src/backends/webgpu/device.ts';
import { num, printTable } from './table.ts';

const { values } = parseArgs({ options: { reps: { type: 'string', default: '15' } } });
const reps = Number(values.reps);
const N = 512;
const RM = 8;
const WG = 8;

type Source = 'buffer' | 'arith' | 'texture';

function kernel(a: Source, b: Source, cols: number): string {
  const decl = (name: string, s: Source, binding: number) =>
    s === 'texture'
      ? `@group(0) @binding(${binding}) var T${name}: texture_2d<f32>;\n`
      : `@group(0) @binding(${binding}) var<storage, read> ${name}: array<vec4<f32>>;\n`;
  const loadA = (i: number) =>
    a === 'buffer'
      ? `A[(m0 + ${i}u) * ${N / 4}u + k / 4u]`
      : a === 'texture'
        ? `textureLoad(TA, vec2<u32>(k / 4u, m0 + ${i}u), 0)`
        : `vec4<f32>(f32(k + ${i}u))`;
  // Lane l's h-th vec4 column: cv + h * WG (neighbouring lanes, neighbouring columns).
  const loadB = (kk: number, h: number) =>
    b === 'buffer'
      ? `B[(k + ${kk}u) * ${N / 4}u + cv + ${h * WG}u]`
      : b === 'texture'
        ? `textureLoad(TB, vec2<u32>(cv + ${h * WG}u, k + ${kk}u), 0)`
        : `vec4<f32>(f32(cv + k + ${kk + h}u))`;
  const rows = [...Array(RM).keys()];
  const hs = [...Array(cols / 4).keys()];
  const acc = (i: number, h: number) => `c${i}_${h}`;
  let body = rows.map((i) => `    let a${i} = ${loadA(i)};\n`).join('');
  for (let kk = 0; kk < 4; kk++)
    for (const h of hs) {
      body += `    let b${kk}_${h} = ${loadB(kk, h)};\n`;
      body += rows
        .map((i) => `    ${acc(i, h)} = fma(vec4<f32>(a${i}[${kk}]), b${kk}_${h}, ${acc(i, h)});\n`)
        .join('');
    }
  return `${decl('A', a, 1)}${decl('B', b, 2)}@group(0) @binding(3) var<storage, read_write> C: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wg: vec3<u32>) {
  let m0 = (wg.x / ${N / cols / WG}u) * ${RM}u;
  let cv = (wg.x % ${N / cols / WG}u) * ${(cols / 4) * WG}u + lid;
${rows.map((i) => hs.map((h) => `  var ${acc(i, h)} = vec4<f32>(0.0);\n`).join('')).join('')}  for (var k = 0u; k < ${N}u; k = k + 4u) {
${body}  }
${rows.map((i) => hs.map((h) => `  C[(m0 + ${i}u) * ${N / 4}u + cv + ${h * WG}u] = ${acc(i, h)};\n`).join('')).join('')}}
`;
}

const gpu = await acquireDevice({ timestamps: false });
const { device } = gpu;
const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
const buffer = () => {
  const buf = device.createBuffer({ size: N * N * 4, usage });
  device.queue.writeBuffer(
    buf,
    0,
    new Float32Array(N * N).map(() => Math.random() - 0.5),
  );
  return buf;
};
const texture = () =>
  device.createTexture({
    size: [N / 4, N],
    format: 'rgba32float',
    usage: GPUTextureUsage.TEXTURE_BINDING | GPUTextureUsage.COPY_DST,
  });
const out = device.createBuffer({ size: N * N * 4, usage: GPUBufferUsage.STORAGE });
const variants: [string, Source, Source, number][] = [
  ['A and B from buffers', 'buffer', 'buffer', 4],
  ["A's loads only (uniform)", 'buffer', 'arith', 4],
  ["B's loads only (per lane)", 'arith', 'buffer', 4],
  ['no loads', 'arith', 'arith', 4],
  ['A and B from textures', 'texture', 'texture', 4],
  ['buffers, 8 x 16 tile', 'buffer', 'buffer', 16],
  ['textures, 8 x 16 tile', 'texture', 'texture', 16],
];
const rows = [];
for (const [name, a, b, cols] of variants) {
  const layout = device.createBindGroupLayout({
    entries: [
      ...[a, b].map((s, i) => ({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        ...(s === 'texture'
          ? { texture: { sampleType: 'unfilterable-float' as const } }
          : { buffer: { type: 'read-only-storage' as const } }),
      })),
      { binding: 3, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'storage' as const } },
    ],
  });
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module: device.createShaderModule({ code: kernel(a, b, cols) }), entryPoint: 'main' },
  });
  const resource = (s: Source) => (s === 'texture' ? texture().createView() : { buffer: buffer() });
  const bindGroup = device.createBindGroup({
    layout,
    entries: [
      { binding: 1, resource: resource(a) },
      { binding: 2, resource: resource(b) },
      { binding: 3, resource: { buffer: out } },
    ],
  });
  const once = async () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups((N / RM) * (N / cols / WG));
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  };
  await once();
  const ms: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await once();
    ms.push(performance.now() - t0);
  }
  ms.sort((x, y) => x - y);
  const median = ms[Math.floor(ms.length / 2)];
  rows.push({ name, median, gflops: (2 * N ** 3) / (median * 1e6) });
}
printTable(
  `one 512^3 matmul kernel on ${gpu.adapterInfo} (8 rows x 4 columns per lane unless said), median of ${reps}`,
  [
    { header: 'operands', legend: 'where the kernel reads A and B', cell: (r) => r.name },
    { header: 'ms', legend: 'wall time of a dispatch (submit to done)', cell: (r) => num(r.median, 2) },
    {
      header: 'GFLOP/s',
      legend: '2 * 512^3 / time (meaningless where loads are replaced)',
      cell: (r) => num(r.gflops, 1),
    },
  ],
  rows,
);
device.destroy();
process.exit(0);
