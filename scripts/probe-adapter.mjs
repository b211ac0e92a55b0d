// Prints the WebGPU adapter Dawn finds (exit 0), or why none was found (exit 1).
import { create, globals } from 'webgpu';

Object.assign(globalThis, globals);
process.env.XDG_RUNTIME_DIR ??= '/tmp';
const gpu = create(['backend=vulkan']);
const adapter = await gpu.requestAdapter();
if (!adapter) {
  console.error('no WebGPU adapter (Dawn/Vulkan found none)');
  process.exit(1);
}
const info = adapter.info ?? {};
console.log(`${info.vendor ?? '?'} ${info.device ?? info.description ?? '?'} (${info.architecture ?? ''})`);
process.exit(0);
