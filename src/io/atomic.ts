// Writes that never leave a half-written result under the target name: write beside
// the target under a temporary name (same directory, so rename is atomic), then rename.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { outputError } from './fs-errors.ts';

function tempName(target: string, kind = 'tmp'): string {
  const rand = Math.random().toString(36).slice(2, 10);
  return path.join(path.dirname(target), `.${path.basename(target)}.${kind}-${process.pid}-${rand}`);
}

/**
 * Creates the missing folders on the way to `target` (as `mkdir -p`); returns the first
 * one it created, for `undo`, so a failed write leaves no empty folders behind.
 */
function makeParents(target: string): string | undefined {
  // One level at a time: Node's recursive mkdir retries forever where a file system
  // answers ENOENT to every mkdir (/proc).
  const missing: string[] = [];
  for (let d = path.dirname(path.resolve(target)); !fs.existsSync(d); d = path.dirname(d)) missing.unshift(d);
  for (const d of missing) fs.mkdirSync(d);
  return missing[0];
}

/**
 * Creates directory `dir` and the missing folders on the way (mkdir -p); returns the
 * first folder it created (undefined when `dir` existed). Errors as writeFileAtomic's.
 */
export function makeDirs(dir: string): string | undefined {
  try {
    return makeParents(path.join(dir, 'x'));
  } catch (e) {
    throw outputError(e, { target: dir, temp: dir });
  }
}

/** Best effort: removes what a failed write made; the write's own error is the one to report. */
function undo(temp: string, madeParents: string | undefined): void {
  for (const p of [temp, madeParents]) {
    try {
      if (p) fs.rmSync(p, { recursive: true, force: true });
    } catch {}
  }
}

export interface WriteFileOptions {
  /** The bytes `write` will write, when known: said in a full-disk error. */
  readonly bytes?: number;
}

/**
 * Runs `write(fd)` on a fresh temp file beside `target`, fsyncs, and renames it to `target`
 * (replacing a file there atomically). Missing folders on the way are created. On any
 * failure the temp file (and the folders it created) are removed and filesystem errors
 * become an OutputError naming `target`, never the temp name (fs-errors.ts).
 */
export function writeFileAtomic(target: string, write: (fd: number) => void, o: WriteFileOptions = {}): void {
  let made: string | undefined;
  const tmp = tempName(target);
  try {
    made = makeParents(target);
    const fd = fs.openSync(tmp, 'wx');
    try {
      write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, target);
  } catch (e) {
    undo(tmp, made);
    throw outputError(e, { target, temp: tmp, bytes: o.bytes });
  }
}

export interface WriteDirOptions {
  /**
   * An existing `target` is replaced as a whole (old moved aside, new moved in, old
   * deleted) instead of having the written files renamed into it: the old directory
   * stays complete until the new one is.
   */
  readonly replace?: boolean;
}

/**
 * Fills a fresh temp directory with `fill(dir)`, then moves it to `target`. When `target`
 * already exists (it may hold other things, e.g. adapter subfolders) each written file is
 * renamed into it instead, in the order `fill` returns (e.g. data before the config that
 * announces it); every file is then either the old or the complete new one. With
 * `replace` the whole directory is swapped instead. Errors as writeFileAtomic's.
 */
export function writeDirAtomic(
  target: string,
  fill: (dir: string) => string[] | undefined,
  o: WriteDirOptions = {},
): void {
  let made: string | undefined;
  const tmp = tempName(target);
  try {
    made = makeParents(target);
    fs.mkdirSync(tmp);
    const order = fill(tmp);
    if (!fs.existsSync(target)) {
      fs.renameSync(tmp, target);
      return;
    }
    if (o.replace) {
      swapIn(tmp, target);
      return;
    }
    const files = order ?? fs.readdirSync(tmp).sort();
    for (const f of files) fs.renameSync(path.join(tmp, f), path.join(target, f));
    fs.rmdirSync(tmp);
  } catch (e) {
    undo(tmp, made);
    throw outputError(e, { target, temp: tmp });
  }
}

/** Node has no atomic directory exchange: old aside, new in (the old back on failure), old deleted. */
function swapIn(tmp: string, target: string): void {
  const old = tempName(target, 'old');
  fs.renameSync(target, old);
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.renameSync(old, target);
    throw e;
  }
  fs.rmSync(old, { recursive: true, force: true });
}

/** Reads exactly `length` bytes at `position` into `buf` (fs.readSync may return short counts). */
export function readExactly(fd: number, buf: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < buf.length) {
    // Chunk so one call stays under the 2 GiB per-read limit of some platforms.
    const want = Math.min(buf.length - done, 1 << 30);
    const n = fs.readSync(fd, buf, done, want, position + done);
    if (n === 0) throw new Error(`${file}: unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

/** Writes all of `buf` at the current position. */
export function writeAll(fd: number, buf: Uint8Array): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, Math.min(buf.length - done, 1 << 30));
}
