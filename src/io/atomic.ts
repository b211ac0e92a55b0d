// Writes that never leave a half-written result under the target name: write beside
// the target under a temporary name (same directory, so rename is atomic), then rename.
import * as fs from 'node:fs';
import * as path from 'node:path';

function tempName(target: string): string {
  const rand = Math.random().toString(36).slice(2, 10);
  return path.join(path.dirname(target), `.${path.basename(target)}.tmp-${process.pid}-${rand}`);
}

/** Runs `write(fd)` on a fresh temp file, fsyncs, and renames it to `target`; on error removes the temp file. */
export function writeFileAtomic(target: string, write: (fd: number) => void): void {
  const tmp = tempName(target);
  const fd = fs.openSync(tmp, 'wx');
  let ok = false;
  try {
    write(fd);
    fs.fsyncSync(fd);
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/**
 * Fills a fresh temp directory with `fill(dir)`, then moves it to `target`. When `target`
 * already exists (it may hold other things, e.g. adapter subfolders) each written file is
 * renamed into it instead, in the order `fill` returns (e.g. data before the config that
 * announces it); every file is then either the old or the complete new one.
 */
export function writeDirAtomic(target: string, fill: (dir: string) => string[] | undefined): void {
  fs.mkdirSync(path.dirname(path.resolve(target)), { recursive: true });
  const tmp = tempName(target);
  fs.mkdirSync(tmp);
  try {
    const order = fill(tmp);
    if (!fs.existsSync(target)) {
      fs.renameSync(tmp, target);
      return;
    }
    const files = order ?? fs.readdirSync(tmp).sort();
    for (const f of files) fs.renameSync(path.join(tmp, f), path.join(target, f));
    fs.rmdirSync(tmp);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
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
