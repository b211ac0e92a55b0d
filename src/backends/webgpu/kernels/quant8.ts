// WGSL kernels of the 8-bit optimizer-state ops (registered in src/passes/optimizer/ops8bit.ts), all map
// kernels: block_absmax (one invocation per block walks its values), quantize_blockwise8
// (one per code, four codes packed per u32 word), dequantize_blockwise8 (one per value).
// The 256-entry dynamic map travels in the uniforms as f32 bit patterns, so signed and
// unsigned share one pipeline and the values are exact. Same arithmetic as the CPU kernels:
// x * (1 / absmax), the seven-step search of encodeDynamic, the sign fix-up on the f32 sign bit.
import { numel } from '../../../ir/shape.ts';
import {
  type BlockAbsmaxAttrs,
  type Dequantize8Attrs,
  dynamicMap,
  type Quantize8Attrs,
} from '../../../quant/blockwise8-attrs.ts';
import type { Kernel, Uniforms } from '../program.ts';
import { getKernel, registerKernel } from './index.ts';
import { mapKernel } from './map.ts';

/** `fn qm(j)`: map entry j, read from the uniforms. */
function mapFn(u: Uniforms, name: 'signed' | 'unsigned'): string {
  const bits = new Uint32Array(dynamicMap(name).buffer);
  const table = u.u32Table([...bits]);
  return `fn qm(j: u32) -> f32 { return bitcast<f32>(${table('j')}); }\n`;
}

const ENCODE = `fn sbit(v: f32) -> u32 { return bitcast<u32>(v) >> 31u; }
fn encode(x: f32) -> u32 {
  var pivot = 127u; var up = 255u; var lo = 0u;
  var lower = -1.0; var upper = 1.0;
  var val = qm(127u);
  for (var s = 64u; s > 0u; s = s >> 1u) {
    if (x > val) { lo = pivot; lower = val; pivot = pivot + s; } else { up = pivot; upper = val; pivot = pivot - s; }
    val = qm(pivot);
  }
  if (up == 255u) { upper = qm(255u); }
  if (lo == 0u) { lower = qm(0u); }
  if (x > val) { return select(pivot, up, x > (upper + val) * 0.5); }
  return select(pivot, lo, x < (lower + val) * 0.5);
}
`;

const blockAbsmax: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as BlockAbsmaxAttrs;
  return mapKernel({
    ctx,
    desc: { blocksize: a.blocksize },
    body: (u) => {
      const n = u.u32(numel(ctx.inputs[0].shape));
      return `  let s = i * ${a.blocksize}u;
  let e = min(s + ${a.blocksize}u, ${n});
  var m = 0.0;
  for (var j = s; j < e; j = j + 1u) { m = max(m, abs(ld_in0(j))); }
  return m;`;
    },
  });
};

const quantize8: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as Quantize8Attrs;
  let helpers = '';
  return mapKernel({
    ctx,
    desc: { blocksize: a.blocksize, keep_sign: a.keep_sign },
    get helpers() {
      return helpers;
    },
    body: (u) => {
      helpers = mapFn(u, a.map) + ENCODE;
      const fix = a.keep_sign
        ? `  if (sbit(qm(c)) != sbit(x)) { c = (c + select(255u, 1u, x > 0.0)) & 255u; }\n`
        : '';
      // absmax 0 encodes like NaN (code 0), as on CUDA; see ops8bit.ts.
      return `  let x = ld_in0(i);
  let am = ld_in1(i / ${a.blocksize}u);
  var c = 0u;
  if (am != 0.0) { c = encode(x * (1.0 / am)); }
${fix}  return c;`;
    },
  });
};

const dequantize8: Kernel = (ctx) => {
  const a = ctx.node.attrs as unknown as Dequantize8Attrs;
  let helpers = '';
  return mapKernel({
    ctx,
    desc: { blocksize: a.blocksize },
    get helpers() {
      return helpers;
    },
    body: (u) => {
      helpers = mapFn(u, a.map);
      return `  return qm(ld_in0(i)) * ld_in1(i / ${a.blocksize}u);`;
    },
  });
};

export const quant8Kernels = {
  block_absmax: blockAbsmax,
  quantize_blockwise8: quantize8,
  dequantize_blockwise8: dequantize8,
};

for (const [op, k] of Object.entries(quant8Kernels)) if (!getKernel(op)) registerKernel(op, k);
