// The export formats `peftc export --format <name>` offers. Adding a format: one module
// exporting an ExportFormat (format.ts), one entry below. Keep the descriptor light: `run`
// imports the heavy machinery (compiler, ts-morph, ...) when it is called, so that
// `peftc --help` stays fast.
import type { ExportFormat } from './format.ts';
import { ggufFormat, ggufLoraFormat } from './gguf.ts';
import { hfTrainer } from './hf-trainer/index.ts';
import { webgpuTs } from './webgpu-ts/index.ts';

export type { ExportFlag, ExportFormat, ExportOptions } from './format.ts';

export const EXPORT_FORMATS: readonly ExportFormat[] = [webgpuTs, ggufFormat, ggufLoraFormat, hfTrainer];
