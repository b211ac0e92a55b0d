// Compute pipelines cached by the canonical key of their program description. On a
// hit the WGSL must be the same: a kernel whose description misses a field that
// changes its code is a bug, reported at once rather than run with the wrong shader.
import { type BindingAccess, canonicalKey, type ProgramDesc } from './program.ts';

interface Entry {
  readonly pipeline: GPUComputePipeline;
  readonly code: string;
}

export class PipelineCache {
  private readonly map = new Map<string, Entry>();
  hits = 0;
  misses = 0;

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.map.size;
  }

  /** Drops the entry of a pipeline whose creation the device rejected, so a later compile reports the real error. */
  forget(desc: ProgramDesc, access: readonly BindingAccess[]): void {
    this.map.delete(pipelineKey(desc, access));
  }

  /**
   * The pipeline for `desc` whose bindings (after the uniform at 0) are bound as `access`
   * says; compiled from `code` on a miss. Call inside an error scope.
   */
  get(
    desc: ProgramDesc,
    access: readonly BindingAccess[],
    code: string,
  ): { pipeline: GPUComputePipeline; key: string } {
    const key = pipelineKey(desc, access);
    const hit = this.map.get(key);
    if (hit) {
      if (hit.code !== code) {
        throw new Error(
          `internal: kernel cache key ${key} maps to two different WGSL programs; the '${desc.op}' kernel's description misses a field`,
        );
      }
      this.hits++;
      return { pipeline: hit.pipeline, key };
    }
    this.misses++;
    const module = this.device.createShaderModule({ code, label: key });
    // An explicit layout: 'auto' would drop bindings a shader happens not to read.
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ...access.map((a, i) => layoutEntry(i + 1, a)),
    ];
    const bindGroupLayout = this.device.createBindGroupLayout({ entries, label: key });
    const pipeline = this.device.createComputePipeline({
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroupLayout] }),
      compute: { module, entryPoint: 'main' },
      label: key,
    });
    this.map.set(key, { pipeline, code });
    return { pipeline, key };
  }
}

/**
 * A pipeline's cache key: the program and how it binds; storage buffers as `writes`
 * booleans (as `peftc ir --kernels` prints them), textures by their access.
 */
export function pipelineKey(desc: ProgramDesc, access: readonly BindingAccess[]): string {
  const writes = access.map((a) => (a === 'write' ? true : a === 'read' ? false : a));
  return canonicalKey({ program: desc, writes });
}

function layoutEntry(binding: number, a: BindingAccess): GPUBindGroupLayoutEntry {
  const visibility = GPUShaderStage.COMPUTE;
  if (a === 'texture') return { binding, visibility, texture: { sampleType: 'unfilterable-float' } };
  if (a === 'storage-texture')
    return { binding, visibility, storageTexture: { access: 'write-only', format: 'rgba32float' } };
  return { binding, visibility, buffer: { type: a === 'write' ? 'storage' : 'read-only-storage' } };
}
