// What kernels are planned for when nothing is compiled: this machine's WebGPU adapter as
// the backend would see it (shader-f16, software adapter), or, with no adapter here, a
// hardware adapter without shader-f16. `peftc ir --kernels` and `peftc plan` share it.
import { acquireDevice, NoAdapterError } from '../../backends/webgpu/index.ts';
import type { KernelTarget } from '../../backends/webgpu/kernel-list.ts';

export async function thisMachineKernelTarget(): Promise<KernelTarget & { name: string }> {
  try {
    const gpu = await acquireDevice();
    gpu.device.destroy();
    const yes = (b: boolean) => (b ? 'yes' : 'no');
    const name = `${gpu.adapterInfo} (shader-f16: ${yes(gpu.f16)}, software kernels: ${yes(gpu.software)})`;
    return {
      f16: gpu.f16,
      software: gpu.software,
      storageBuffers: gpu.limits.maxStorageBuffersPerShaderStage,
      textureDimension: gpu.limits.maxTextureDimension2D,
      name,
    };
  } catch (e) {
    if (!(e instanceof NoAdapterError)) throw e;
    return {
      f16: false,
      software: false,
      name: 'a hardware adapter without shader-f16 (no WebGPU adapter here)',
    };
  }
}
