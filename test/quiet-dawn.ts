// Vitest global setup: the test workers' stderr reaches this (main) process through a
// pipe; drop Dawn's known start-up notices from it as bin/peftc.js does for the CLI
// (bin/dawn-notices.js). PEFTC_VERBOSE=1 keeps them.
import { noticeFilter, wantsVerbose } from '../bin/dawn-notices.js';

export default function setup(): (() => void) | undefined {
  if (wantsVerbose([])) return undefined;
  const stderr = process.stderr;
  const write = stderr.write;
  const filter = noticeFilter((s) => write.call(stderr, s));
  stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    filter.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  }) as typeof stderr.write;
  return () => {
    filter.end();
    stderr.write = write;
  };
}
