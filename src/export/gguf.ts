// The two GGUF formats (llama.cpp): the model, and a LoRA adapter for it. The machinery is
// under ./gguf/, imported when a format runs.
import type { ExportFormat } from './format.ts';

export const ggufFormat: ExportFormat = {
  name: 'gguf',
  summary: 'one GGUF file for llama.cpp (--type f32|f16|q8_0; adapters folded in with --merge)',
  output: 'file',
  flags: ['adapter', 'merge', 'type'],
  run: async (o) => (await import('./gguf/model.ts')).exportGguf(o),
};

export const ggufLoraFormat: ExportFormat = {
  name: 'gguf-lora',
  summary: "one PEFT LoRA adapter as a GGUF LoRA adapter (llama.cpp's --lora)",
  output: 'file',
  flags: ['adapter'],
  required: ['adapter'],
  run: async (o) => (await import('./gguf/lora.ts')).exportGgufLora(o),
};
