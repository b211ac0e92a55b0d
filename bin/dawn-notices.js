// Dawn's known-harmless start-up notices, and a stderr filter that drops exactly them.
//
// Dawn (npm `webgpu`) writes these from native code (dawn::WarningLog -> fprintf(stderr))
// when it first enumerates adapters: the adapter reports more dynamic buffers per pipeline
// layout than Dawn's dynamic-offset table holds, so Dawn clamps the limit to 16. No
// create() flag, toggle or requested limit turns them off, and JS cannot intercept a
// native write to fd 2, so the launchers (bin/peftc.js, bin/run-ts.js) run the program in
// a child whose stderr passes through this filter. Only whole lines matching a pattern
// below are dropped; every other line (a real Dawn warning or error, ours) passes
// through unchanged. `--verbose` (or PEFTC_VERBOSE=1) skips the filter.

/** Whole-line patterns of the notices dropped; add one only for a notice known to be harmless. */
export const DAWN_NOTICES = [
  /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/,
];

// Every notice starts like this; a partial line that cannot become one is written at once
// (a prompt or a progress redraw must not wait for a newline).
const PREFIX = 'Warning: ';

/** True for a line (without its newline) that is a known notice. */
export function isDawnNotice(line) {
  return DAWN_NOTICES.some((re) => re.test(line));
}

/**
 * A line filter over a text stream: push() chunks as they come, end() at the end.
 * `write` receives everything except the known notices.
 */
export function noticeFilter(write) {
  let pending = '';
  const couldBeNotice = (s) => (s.length < PREFIX.length ? PREFIX.startsWith(s) : s.startsWith(PREFIX));
  return {
    push(chunk) {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      let out = '';
      for (const line of lines) if (!isDawnNotice(line)) out += `${line}\n`;
      if (pending && !couldBeNotice(pending)) {
        out += pending;
        pending = '';
      }
      if (out) write(out);
    },
    end() {
      if (pending && !isDawnNotice(pending)) write(pending);
      pending = '';
    },
  };
}

/** Whether a command line or the environment asks for Dawn's notices. */
export function wantsVerbose(args, env = process.env) {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--verbose') || env.PEFTC_VERBOSE === '1';
}

const CHILD_MARK = 'PEFTC_NOTICES_FILTERED';

/**
 * Reruns this script in a child with stderr filtered, and exits with the child's status.
 * Returns false (run in this process) in the child itself and when notices are wanted.
 */
export async function relaunchFiltered() {
  const args = process.argv.slice(2);
  if (process.env[CHILD_MARK] === '1' || wantsVerbose(args)) return false;
  const { spawn } = await import('node:child_process');
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1], ...args], {
    stdio: ['inherit', 'inherit', 'pipe'],
    env: { ...process.env, [CHILD_MARK]: '1' },
    // Its own process group: a terminal's Ctrl-C then reaches this process only, which
    // passes it on once. (In the same group the child would get it twice, and a second
    // SIGINT means "stop at once" to `peftc train`.)
    detached: true,
  });
  // Every signal sent to this process (Ctrl-C, a timeout, kill) is passed on so the child
  // never outlives it.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const forward = (sig) => child.kill(sig);
  for (const sig of signals) process.on(sig, forward);
  const filter = noticeFilter((s) => process.stderr.write(s));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s) => filter.push(s));
  const [code, signal] = await new Promise((resolve) => {
    child.on('error', (e) => {
      process.stderr.write(`peftc: error: cannot start node: ${e.message}\n`);
      resolve([1, null]);
    });
    child.on('close', (c, s) => resolve([c, s]));
  });
  filter.end();
  for (const sig of signals) process.off(sig, forward);
  if (signal) process.kill(process.pid, signal);
  process.exitCode = code ?? 1;
  return true;
}
