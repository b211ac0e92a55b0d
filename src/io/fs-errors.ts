// Filesystem errors of writing an output, said in the user's terms: which output (the
// path the user gave, never the temporary name it was being written under), why, and
// what to do. The atomic writers (atomic.ts) turn every error of their own writes into
// an OutputError; a writer nested in another's temporary directory is restated by the
// outer one, and a command restates it once more with its flag (`--out runs/x`).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../util/errors.ts';

interface Failure {
  /** errno code: ENOSPC, EACCES, ... */
  readonly code: string;
  /** Bytes the failed file needed, when the writer knew them. */
  readonly bytes?: number;
  /** The file being written when it failed: the output or a file inside it (absolute, temporary names translated). */
  readonly file: string;
}

export class OutputError extends UserError {
  override name = 'OutputError';
  constructor(
    /** The output as the user knows it (a path, never a temporary name). */
    readonly target: string,
    readonly failure: Failure,
    /** The flag the user gave it with, e.g. `--out`. */
    readonly flag?: string,
  ) {
    super(outputMessage(target, failure, flag));
  }

  /**
   * The same failure said of an enclosing output, or with its flag. `temp`: the temporary
   * name this error's output was written under, to be said as `target`.
   */
  as(target: string, flag?: string, temp?: string): OutputError {
    const file = temp ? fromTemp(this.failure.file, temp, target) : this.failure.file;
    return new OutputError(target, { ...this.failure, file }, flag);
  }
}

function mib(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** The deepest ancestor of `p` (or `p`) that exists. */
function nearestExisting(p: string): string {
  let at = path.resolve(p);
  while (!fs.existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** The first ancestor of `p` that exists and is not a directory (the cause of ENOTDIR). */
function fileInTheWay(p: string): string | undefined {
  const at = nearestExisting(path.dirname(path.resolve(p)));
  return fs.statSync(at, { throwIfNoEntry: false })?.isDirectory() === false ? at : undefined;
}

/** `abs` said relative to the working directory when it is below it (as the user likely typed it). */
function shown(abs: string): string {
  const rel = path.relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : abs;
}

/** `file` (at or below `temp`) said at the same place below `target`. */
function fromTemp(file: string, temp: string, target: string): string {
  return within(file, temp) ? path.join(path.resolve(target), path.relative(path.resolve(temp), file)) : file;
}

// Temporary names: atomic.ts's `.<name>.tmp-<pid>-<rand>` and checkpoints' `<name>.tmp-<pid>`.
const TEMP_SEGMENT = [/^\.(.+)\.tmp-\d+-[a-z0-9]+$/, /^(.+)\.tmp-\d+$/];

/** The file inside the output that failed, relative to it and with temporary names said as the final ones. */
function innerFile(target: string, file: string): string {
  if (!within(file, target)) return '';
  return path
    .relative(path.resolve(target), file)
    .split(path.sep)
    .map((seg) => TEMP_SEGMENT.reduce((s, re) => s.replace(re, '$1'), seg))
    .join('/');
}

function outputMessage(target: string, f: Failure, flag?: string): string {
  const label = flag ? `${flag} ${target}` : target;
  const other = `choose another ${flag ?? 'location'}`;
  const dir = shown(nearestExisting(path.dirname(path.resolve(target))));
  const inner = innerFile(target, f.file);
  const needs =
    f.bytes !== undefined
      ? ` (${inner ? `${inner}: ` : ''}${mib(f.bytes)} to write)`
      : inner
        ? ` (${inner})`
        : '';
  const why = ((): string => {
    switch (f.code) {
      case 'ENOSPC':
        return `the disk is full${needs}; free some space on it or ${other}`;
      case 'EDQUOT':
        return `the disk quota is used up${needs}; free some space or ${other}`;
      case 'EFBIG':
        return `the file is larger than the file system or the file size limit (ulimit -f) allows${needs}; ${other}`;
      case 'EACCES':
      case 'EPERM':
        return `${dir} is not writable (permission denied); ${other}`;
      case 'EROFS':
        return `${dir} is on a read-only file system; ${other}`;
      case 'ENOTDIR': {
        const file = fileInTheWay(target);
        return `${file ? shown(file) : 'a folder on the way'} is a file, not a directory; ${other}`;
      }
      case 'ENOENT':
        // The writers create missing folders first: the nearest existing one refuses new
        // entries (/proc), or something removed a folder meanwhile.
        return `${dir} does not accept new files (or a folder on the way was removed meanwhile); ${other}`;
      case 'EISDIR':
        return `${target} is a directory; ${other}`;
      case 'EEXIST':
        return `${target} appeared while writing (another process?); ${other}`;
      case 'ENAMETOOLONG':
        return `the name is too long for the file system; ${other}`;
      case 'EIO':
        return `the disk reported an I/O error${needs}; check the disk or ${other}`;
      default:
        return `the file system refused it (${f.code}); ${other}`;
    }
  })();
  return `cannot write ${label}: ${why}`;
}

function errnoOf(e: unknown): (NodeJS.ErrnoException & { dest?: string }) | undefined {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string'
    ? (e as NodeJS.ErrnoException)
    : undefined;
}

// A full disk or an I/O error while copying a file in is the destination's, whatever the source.
const SPACE = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EIO']);

function within(p: string, root: string): boolean {
  const a = path.resolve(p);
  const r = path.resolve(root);
  return a === r || a.startsWith(r + path.sep);
}

/**
 * `e` restated as an OutputError of `target` when it is a filesystem error of writing it:
 * at `temp` (the temporary name) or below, at `target`, at a folder on the way to it, or
 * with no path at all (write/fsync on the open file). Anything else (a validation error,
 * an unreadable source file) is returned unchanged.
 */
export function outputError(e: unknown, o: { target: string; temp: string; bytes?: number }): unknown {
  const ours = (p: string | undefined) =>
    p === undefined || within(p, o.temp) || within(p, o.target) || within(o.target, p);
  if (e instanceof OutputError) return ours(e.target) ? e.as(o.target, undefined, o.temp) : e;
  const err = errnoOf(e);
  if (!err?.code) return e;
  const dest = (err as { dest?: string }).dest;
  if (!ours(err.path) && !(dest !== undefined && ours(dest) && SPACE.has(err.code))) return e;
  // The file inside a temporary directory that failed (its model.safetensors), else the output itself.
  const file =
    err.path && within(err.path, o.temp) ? fromTemp(err.path, o.temp, o.target) : path.resolve(o.target);
  return new OutputError(o.target, { code: err.code, bytes: o.bytes, file });
}

/** Runs `write`; an OutputError it throws is restated with the flag the user named the output by. */
export function asOutput<T>(flag: string, target: string, write: () => T): T {
  try {
    return write();
  } catch (e) {
    throw e instanceof OutputError ? e.as(target, flag) : e;
  }
}

/**
 * Checks an output path before the work that produces it: what is there (refused unless
 * `overwrite`, and then only when it is of the same kind), and that the nearest existing
 * folder on the way is a writable directory. The write itself still maps its own errors.
 */
export function checkOutputPath(
  flag: string,
  target: string,
  o: { kind: 'file' | 'dir'; overwrite?: boolean },
): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(target, { throwIfNoEntry: false });
  } catch {
    // ENOTDIR (a file on the way): there is nothing at `target`; said below.
  }
  if (st) {
    const isDir = st.isDirectory();
    if (o.kind === 'file' && isDir)
      throw new UserError(
        `${flag} ${target} is a directory; give a file name such as ${path.join(target, 'logits.safetensors')}`,
      );
    if (o.kind === 'dir' && !isDir)
      throw new UserError(`${flag} ${target} already exists (a file); choose a new directory`);
    if (!o.overwrite)
      throw new UserError(
        `${flag} ${target} already exists; choose a new ${o.kind === 'dir' ? 'directory' : 'file name'} (or pass --overwrite to replace it)`,
      );
  }
  const at = nearestExisting(path.dirname(path.resolve(target)));
  const code = !fs.statSync(at).isDirectory() ? 'ENOTDIR' : writableCode(at);
  if (code) throw new OutputError(target, { code, file: path.resolve(target) }, flag);
}

function writableCode(dir: string): string | undefined {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return undefined;
  } catch (e) {
    return errnoOf(e)?.code ?? 'EACCES';
  }
}
