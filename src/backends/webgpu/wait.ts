// Waiting on Dawn's promises (mapAsync, onSubmittedWorkDone) without taking a core
// away from a software adapter.
//
// dawn.node settles those promises from a setImmediate loop that calls ProcessEvents on
// every turn of the event loop, so the main thread spins while work is queued. On a
// hardware GPU that costs an otherwise idle core and gives the lowest latency: keep it.
// On lavapipe the GPU is the CPU, and the spinning thread takes one of the cores its
// compute threads need. Measured on this project's 2-core machine (lavapipe, LoRA r=16
// training step of the bench's small shape): 2.85 s a step spinning, 1.95 s when the
// main thread sleeps between polls (DECISIONS.md, "Waiting on a software adapter").
import type { GpuContext } from './device.ts';

/** Sleep between polls: short beside any step worth a thread pool, long beside a poll. */
export const SOFTWARE_POLL_MS = 0.2;

/**
 * Runs expected to take less than this keep Dawn's loop: the sleeps' wake-up latency
 * costs a ~1.5 ms decode step more (about 0.5 ms) than the core it frees gives back.
 * Bundled model's decode steps, medians of 20 interleaved (bench/generate.ts's
 * sessions): batch 1 at 1.5 ms spinning, 2.0 sleeping, 1.5 by this rule; batch 16 at
 * 7.5-8.1 spinning, 4.8-6.3 sleeping, 5.3-6.3 by this rule.
 */
export const SHORT_RUN_MS = 3;

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * `work`'s value, once settled. On software adapters, unless the caller expects a run
 * shorter than SHORT_RUN_MS (`expectedMs`, e.g. the last run's), the main thread sleeps
 * SOFTWARE_POLL_MS between turns of the event loop (each turn lets Dawn process its
 * events and other callbacks run), instead of Dawn's busy loop.
 */
export async function settle<T>(
  ctx: Pick<GpuContext, 'software'>,
  work: Promise<T>,
  expectedMs?: number,
): Promise<T> {
  if (!ctx.software || (expectedMs !== undefined && expectedMs < SHORT_RUN_MS)) return work;
  let done = false;
  const mark = () => {
    done = true;
  };
  work.then(mark, mark);
  while (!done) {
    Atomics.wait(sleeper, 0, 0, SOFTWARE_POLL_MS);
    await new Promise((r) => setImmediate(r));
  }
  return work;
}
