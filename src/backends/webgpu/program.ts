// What a kernel plans for one node: a declarative program description (the cache
// key, serialised canonically), its WGSL, its uniforms, bindings and dispatch size.
import type { DType } from '../../ir/dtype.ts';
import type { Node, TensorType } from '../../ir/graph.ts';

type DescValue =
  | string
  | number
  | boolean
  | null
  | readonly DescValue[]
  | { readonly [k: string]: DescValue };

/**
 * Everything that changes the generated WGSL, and nothing else: sizes that vary go
 * in uniforms, so nodes of the same kind share one pipeline.
 */
export interface ProgramDesc {
  readonly op: string;
  readonly dtypes: readonly DType[];
  readonly workgroup: readonly number[];
  readonly [k: string]: DescValue;
}

/** JSON with sorted keys: equal descriptions give equal keys whatever their key order. */
export function canonicalKey(v: DescValue): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonicalKey).join(',')}]`;
  const o = v as { readonly [k: string]: DescValue };
  return `{${Object.keys(o)
    .sort()
    .filter((k) => o[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalKey(o[k])}`)
    .join(',')}}`;
}

/**
 * Uniform values packed as vec4<u32> slots; each call returns the WGSL expression that
 * reads the value back, so the code and the values cannot drift apart.
 */
export class Uniforms {
  private readonly words: number[] = [];
  private readonly f32 = new Float32Array(1);
  private readonly u32v = new Uint32Array(this.f32.buffer);

  private declared = false;

  private slot(word: number): string {
    // A slot added after decl() would index past the declared struct (a WGSL error at best).
    if (this.declared)
      throw new Error('internal: uniform allocated after Uniforms.decl(); allocate it first');
    const i = this.words.length;
    this.words.push(word >>> 0);
    return `U.v[${i >> 2}].${'xyzw'[i & 3]}`;
  }
  u32(v: number): string {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`uniform u32 out of range: ${v}`);
    return this.slot(v);
  }
  i32(v: number): string {
    return `bitcast<i32>(${this.slot(v | 0)})`;
  }
  f32v(v: number): string {
    this.f32[0] = v;
    return `bitcast<f32>(${this.slot(this.u32v[0])})`;
  }
  /** A table of u32 values; returns a function from a WGSL index expression to the element. */
  u32Table(values: readonly number[]): (index: string) => string {
    const base = this.words.length;
    for (const v of values) this.u32(v);
    return (i) => `U.v[(${base}u + ${i}) >> 2u][(${base}u + ${i}) & 3u]`;
  }
  get empty(): boolean {
    return this.words.length === 0;
  }
  /** WGSL declaration at binding 0 of group 0. */
  decl(): string {
    this.declared = true;
    const n = Math.max(1, Math.ceil(this.words.length / 4));
    return `struct Uniforms { v: array<vec4<u32>, ${n}> }\n@group(0) @binding(0) var<uniform> U: Uniforms;\n`;
  }
  bytes(): Uint32Array {
    const n = Math.max(1, Math.ceil(this.words.length / 4)) * 4;
    const out = new Uint32Array(n);
    out.set(this.words);
    return out;
  }
}

/**
 * A binding of one step: an input of the node, its output, a scratch buffer of the step, or
 * (a kernel over several nodes, kernel-groups.ts) any value by node id.
 */
export type BindingRef =
  | { readonly kind: 'input'; readonly index: number }
  | { readonly kind: 'output' }
  | { readonly kind: 'scratch'; readonly index: number }
  | { readonly kind: 'value'; readonly id: number }
  /** A scratch texture of the node's plan (KernelPlan.textures): written as a storage texture, read with textureLoad. */
  | { readonly kind: 'texture'; readonly index: number };

/** How a step binds one resource: a storage buffer read or written, or a scratch texture read or written. */
export type BindingAccess = 'read' | 'write' | 'texture' | 'storage-texture';

export function bindingAccess(b: { readonly ref: BindingRef; readonly write: boolean }): BindingAccess {
  if (b.ref.kind === 'texture') return b.write ? 'storage-texture' : 'texture';
  return b.write ? 'write' : 'read';
}

export interface Step {
  readonly desc: ProgramDesc;
  /** WGSL for `desc`; called on a cache miss (and checked against the cache on a hit). */
  readonly code: string;
  readonly uniforms: Uniforms;
  /**
   * Bindings after the uniform (binding 1, 2, ...): storage buffers, writable ones the
   * outputs/scratch written; textures (ref kind 'texture') write-only storage textures when
   * written, sampled textures when read.
   */
  readonly bindings: readonly { readonly ref: BindingRef; readonly write: boolean }[];
  /** Total workgroups (folded into x/y/z by the executor). */
  readonly workgroups: number;
}

export interface KernelContext {
  readonly node: Node;
  readonly inputs: readonly TensorType[];
  readonly out: TensorType;
  /** The device offers shader-f16. */
  readonly f16: boolean;
  /** The adapter is a CPU implementation (lavapipe, SwiftShader): kernels may pick CPU-friendly variants. */
  readonly software: boolean;
  /** The matmul kernel family on software adapters (default: DEFAULT_SOFTWARE_MATMUL in kernels/matmul.ts). */
  readonly softwareMatmul?: SoftwareMatmul;
  /**
   * maxTextureDimension2D of the device when kernels may use scratch textures; undefined
   * where they may not (the exported package's runner binds buffers only).
   */
  readonly textureDimension?: number;
}

/**
 * Matmul kernels for CPU adapters: 'texture' (large products read their operands from
 * rgba32float textures, kernels/matmul-texture.ts; the rest as 'direct'), 'direct' (4x4
 * direct/outer kernels) or 'register' (8x4 register tiles).
 */
export type SoftwareMatmul = 'texture' | 'register' | 'direct';

/** A scratch texture: rgba32float, `width` texels (4 floats each) by `height` rows. */
export interface ScratchTexture {
  readonly width: number;
  readonly height: number;
}

/** Bytes of a scratch texture on the device (16 per texel). */
export const textureBytes = (t: ScratchTexture) => t.width * t.height * 16;

export interface KernelPlan {
  readonly steps: readonly Step[];
  /** Byte sizes of scratch buffers the steps share. */
  readonly scratch?: readonly number[];
  /** Scratch textures the steps share (bound by BindingRef kind 'texture'). */
  readonly textures?: readonly ScratchTexture[];
}

/**
 * A kernel: plans the dispatches for one node; 'alias' means the output shares input 0's
 * buffer. It may read the node's op, attrs and types (and its inputs' count), not its id or
 * scope: planKernels gives nodes alike one plan.
 */
export type Kernel = (ctx: KernelContext) => KernelPlan | 'alias' | 'source';

export const MAX_WORKGROUPS_PER_DIM = 65535;

/** Splits a workgroup count over x/y/z (each <= 65535); shaders rebuild the linear id. */
export function foldDispatch(total: number, maxPerDim = MAX_WORKGROUPS_PER_DIM): [number, number, number] {
  if (total <= maxPerDim) return [total, 1, 1];
  const y = Math.ceil(total / maxPerDim);
  if (y <= maxPerDim) return [maxPerDim, y, 1];
  const z = Math.ceil(y / maxPerDim);
  if (z > maxPerDim) throw new Error(`dispatch of ${total} workgroups exceeds 65535^3`);
  return [maxPerDim, maxPerDim, z];
}

/** WGSL entry-point header: builtins plus `wid`, the linear workgroup id after folding. */
export function entry(workgroup: readonly number[]): string {
  return `@compute @workgroup_size(${workgroup.join(', ')})
fn main(@builtin(workgroup_id) wg3: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32, @builtin(local_invocation_id) lid3: vec3<u32>) {
  let wid = wg3.x + wg3.y * nwg.x + wg3.z * nwg.x * nwg.y;
`;
}
