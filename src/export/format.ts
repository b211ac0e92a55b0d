// The contract between `peftc export` and each artifact format. A format is one module under
// src/export/ that exports an `ExportFormat`; `src/export/index.ts` lists them. The command
// parses the flags once, refuses a flag the chosen format does not take (naming both), checks
// the output path, and calls `run`, which writes the artifact atomically (all or nothing).

/** Flags of `peftc export`, as parsed; which ones a format reads is its `flags` list. */
export interface ExportOptions {
  readonly format: string;
  readonly model: string;
  readonly out: string;
  readonly adapter?: readonly string[];
  readonly merge?: boolean;
  /** webgpu-ts: weights as stored (`none`) or packed NF4 (`nf4`). */
  readonly quant?: string;
  /** gguf: tensor type of the weights (`f32`, `f16`, `q8_0`). */
  readonly type?: string;
  /** hf-trainer: the recipe the generated project runs. */
  readonly recipe?: string;
  /** hf-trainer: the training data the generated project reads. */
  readonly data?: string;
  readonly overwrite?: boolean;
}

/** The optional flags (ExportOptions keys) a format may take. */
export type ExportFlag = 'adapter' | 'merge' | 'quant' | 'type' | 'recipe' | 'data';

export interface ExportFormat {
  /** The `--format` value. */
  readonly name: string;
  /** One line for `peftc export --help`. */
  readonly summary: string;
  /** Whether `--out` names a directory or a single file. */
  readonly output: 'dir' | 'file';
  /** The optional flags this format reads; any other given flag is refused. */
  readonly flags: readonly ExportFlag[];
  /** Flags this format cannot do without (beyond --model and --out). */
  readonly required?: readonly ExportFlag[];
  /** Writes the artifact at `o.out`; returns the lines to print (what was written). */
  run(o: ExportOptions): Promise<string[]>;
}
