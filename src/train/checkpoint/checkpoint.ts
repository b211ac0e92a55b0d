// Training checkpoints: a directory holding the trainable params and optimizer
// state (safetensors) and trainer_state.json (step + whatever the trainer needs to
// resume). Written into `<dir>.tmp-<pid>` and renamed into place, so a directory
// under a checkpoint's name is always complete; an existing one is replaced only
// after the new one is fully on disk.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { writeAll, writeFileAtomic } from '../../io/atomic.ts';
import { FormatError } from '../../io/errors.ts';
import { SafetensorsFile, type TensorEntries, writeSafetensors } from '../../io/safetensors/index.ts';
import type { Tensor } from '../../ir/tensor.ts';

export const STATE_FILE = 'trainer_state.json';
export const PARAMS_FILE = 'params.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
const FORMAT = 'peftc-trainer-state';
const VERSION = 1;

export interface CheckpointData {
  /** Optimizer steps completed. */
  readonly step: number;
  /** Trainable parameters by name. */
  readonly params: TensorEntries;
  /** Optimizer state tensors by name (e.g. `<param>.exp_avg`). */
  readonly optimizer: TensorEntries;
  /** The caller's resume state (seed, data cursor, resolved recipe, schedule, best eval loss...): plain JSON. */
  readonly state: Record<string, unknown>;
}

export interface LoadedCheckpoint {
  readonly dir: string;
  readonly step: number;
  readonly params: Map<string, Tensor>;
  readonly optimizer: Map<string, Tensor>;
  readonly state: Record<string, unknown>;
  readonly savedAt: string;
}

const StateFileSchema = z.strictObject({
  format: z.literal(FORMAT),
  version: z.literal(VERSION),
  step: z.number().int().nonnegative(),
  saved_at: z.string(),
  params: z.array(z.string()),
  optimizer: z.array(z.string()),
  state: z.record(z.string(), z.unknown()),
});
type StateFile = z.infer<typeof StateFileSchema>;

/** `<outDir>/checkpoint-<step>`: the name the trainer gives per-step checkpoints. */
export function checkpointPath(outDir: string, step: number): string {
  return path.join(outDir, `checkpoint-${step}`);
}

const names = (t: TensorEntries) => (t instanceof Map ? [...t.keys()] : Object.keys(t));

function fsyncDir(dir: string): void {
  // Makes the renames durable; some file systems refuse fsync on a directory, which is harmless.
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {}
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes `<name>.tmp-<pid>` left behind by killed runs (never one of a live process). */
function removeStaleTemps(final: string): void {
  const parent = path.dirname(final);
  const prefix = `${path.basename(final)}.tmp-`;
  for (const e of fs.readdirSync(parent)) {
    if (!e.startsWith(prefix)) continue;
    const pid = Number(e.slice(prefix.length));
    if (Number.isInteger(pid) && (pid === process.pid || !alive(pid))) {
      fs.rmSync(path.join(parent, e), { recursive: true, force: true });
    }
  }
}

/** Writes a checkpoint directory atomically; returns its path. */
export function saveCheckpoint(dir: string, data: CheckpointData): string {
  const final = path.resolve(dir);
  fs.mkdirSync(path.dirname(final), { recursive: true });
  removeStaleTemps(final);
  const tmp = `${final}.tmp-${process.pid}`;
  fs.mkdirSync(tmp);
  try {
    writeSafetensors(path.join(tmp, PARAMS_FILE), data.params, { format: 'pt' });
    writeSafetensors(path.join(tmp, OPTIMIZER_FILE), data.optimizer, { format: 'pt' });
    const file: StateFile = {
      format: FORMAT,
      version: VERSION,
      step: data.step,
      saved_at: new Date().toISOString(),
      params: names(data.params),
      optimizer: names(data.optimizer),
      state: data.state,
    };
    const checked = StateFileSchema.safeParse(file);
    if (!checked.success) {
      throw new FormatError(path.join(dir, STATE_FILE), `invalid: ${checked.error.issues[0].message}`);
    }
    // Written last: its presence marks the contents complete even before the rename.
    const json = new TextEncoder().encode(`${JSON.stringify(file, null, 2)}\n`);
    writeFileAtomic(path.join(tmp, STATE_FILE), (fd) => writeAll(fd, json));
    fsyncDir(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  if (!fs.existsSync(final)) {
    fs.renameSync(tmp, final);
  } else {
    // No atomic directory swap in Node: move the old one aside, move the new one in, then
    // delete the old. A crash between the renames leaves `<name>.old-<pid>`, which
    // latestCheckpoint still finds.
    const old = `${final}.old-${process.pid}`;
    fs.rmSync(old, { recursive: true, force: true });
    fs.renameSync(final, old);
    try {
      fs.renameSync(tmp, final);
    } catch (e) {
      fs.renameSync(old, final);
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    fs.rmSync(old, { recursive: true, force: true });
  }
  fsyncDir(path.dirname(final));
  return final;
}

function readStateFile(dir: string): StateFile {
  const file = path.join(dir, STATE_FILE);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
    throw new FormatError(dir, 'no such checkpoint directory');
  }
  if (!fs.existsSync(file)) {
    throw new FormatError(file, 'missing: this is not a complete peftc checkpoint directory');
  }
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  const parsed = StateFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new FormatError(file, `${issue.path.join('.') || 'file'}: ${issue.message}`);
  }
  return parsed.data;
}

function readTensors(file: string, expected: readonly string[]): Map<string, Tensor> {
  const st = SafetensorsFile.open(file);
  const listed = new Set(expected);
  for (const n of expected) {
    if (!st.has(n)) throw new FormatError(file, `missing (listed in ${STATE_FILE})`, n);
  }
  for (const n of st.keys()) {
    if (!listed.has(n)) throw new FormatError(file, `not listed in ${STATE_FILE}`, n);
  }
  return new Map(expected.map((n) => [n, st.read(n)]));
}

/** Reads and validates a checkpoint directory; errors name the file at fault. */
export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const s = readStateFile(dir);
  return {
    dir: path.resolve(dir),
    step: s.step,
    params: readTensors(path.join(dir, PARAMS_FILE), s.params),
    optimizer: readTensors(path.join(dir, OPTIMIZER_FILE), s.optimizer),
    state: s.state,
    savedAt: s.saved_at,
  };
}

/**
 * The complete checkpoint with the highest step among `outDir`'s subdirectories, or undefined.
 * Temp directories are never chosen; `<name>.old-<pid>` only when `<name>` itself is gone.
 */
export function latestCheckpoint(outDir: string): string | undefined {
  if (!fs.existsSync(outDir)) return undefined;
  let best: { dir: string; step: number; old: boolean } | undefined;
  for (const e of fs.readdirSync(outDir, { withFileTypes: true })) {
    if (!e.isDirectory() || /\.tmp-\d+$/.test(e.name)) continue;
    const oldOf = /^(.*)\.old-\d+$/.exec(e.name)?.[1];
    if (oldOf !== undefined && fs.existsSync(path.join(outDir, oldOf))) continue;
    const dir = path.join(outDir, e.name);
    let step: number;
    try {
      step = readStateFile(dir).step;
    } catch {
      continue; // not a checkpoint (e.g. an adapter folder)
    }
    const old = oldOf !== undefined;
    if (!best || step > best.step || (step === best.step && best.old && !old)) best = { dir, step, old };
  }
  return best?.dir;
}
