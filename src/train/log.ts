// The training log: one JSON object per line, appended and written through with a
// synchronous write per record, so a crash keeps every record already logged.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeAll, writeFileAtomic } from '../io/atomic.ts';
import { FormatError } from '../io/errors.ts';

const finiteOrNull = z.number().nullable();

/**
 * One step's record. NaN/inf losses are written as null (JSON has no NaN). Extra keys are kept.
 * The step-0 record (the eval before training) has no `loss`: no step was trained yet.
 */
export const StepRecordSchema = z.looseObject({
  step: z.number().int().nonnegative(),
  loss: finiteOrNull.optional(),
  eval_loss: finiteOrNull.optional(),
  lr: z.number(),
  grad_norm: finiteOrNull.optional(),
  tokens_per_s: z.number().nonnegative(),
  /** Seconds since the run started. */
  time: z.number().nonnegative(),
});
export type StepRecord = z.infer<typeof StepRecordSchema>;

export interface TrainLogOptions {
  /**
   * When resuming from the checkpoint of this step: records after it (written after that
   * checkpoint by the run that stopped) are removed first, so the log has each step once.
   */
  readonly resumeStep?: number;
  /** fsync after every record (survives power loss, not only a crash); default false. */
  readonly fsync?: boolean;
}

export class TrainLog {
  readonly file: string;
  private fd: number | undefined;
  private readonly fsync: boolean;

  constructor(file: string, opts: TrainLogOptions = {}) {
    this.file = file;
    this.fsync = opts.fsync ?? false;
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    if (opts.resumeStep !== undefined && fs.existsSync(file)) truncateLogAfter(file, opts.resumeStep);
    this.fd = fs.openSync(file, 'a');
  }

  write(record: StepRecord): void {
    if (this.fd === undefined) throw new Error(`${this.file}: training log is closed`);
    const line = `${JSON.stringify(StepRecordSchema.parse(sanitize(record)))}\n`;
    writeAll(this.fd, new TextEncoder().encode(line));
    if (this.fsync) fs.fdatasyncSync(this.fd);
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

// NaN/inf become null explicitly (JSON.stringify would do it silently; the schema wants it said).
function sanitize(r: StepRecord): StepRecord {
  const out: Record<string, unknown> = { ...r };
  for (const [k, v] of Object.entries(out)) if (typeof v === 'number' && !Number.isFinite(v)) out[k] = null;
  return out as StepRecord;
}

/**
 * Reads a training log. A last line without its newline is a write torn by a crash and is
 * skipped; any other bad line is an error naming file:line.
 */
export function readTrainLog(file: string): StepRecord[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new FormatError(file, `cannot read training log (${(e as Error).message})`);
  }
  const lines = text.split('\n');
  const torn = !text.endsWith('\n') ? lines.length - 1 : -1;
  const out: StepRecord[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(lines[i]);
    } catch (e) {
      if (i === torn) break;
      throw new FormatError(`${file}:${i + 1}`, `not valid JSON (${(e as Error).message})`);
    }
    const parsed = StepRecordSchema.safeParse(obj);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new FormatError(`${file}:${i + 1}`, `${issue.path.join('.') || 'record'}: ${issue.message}`);
    }
    out.push(parsed.data);
  }
  return out;
}

/** Keeps the records with step <= `step` (atomically rewrites the file). */
export function truncateLogAfter(file: string, step: number): void {
  const kept = readTrainLog(file).filter((r) => r.step <= step);
  const text = kept.map((r) => `${JSON.stringify(r)}\n`).join('');
  writeFileAtomic(file, (fd) => writeAll(fd, new TextEncoder().encode(text)));
}
