import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    // Drops Dawn's known start-up notices from the workers' stderr (bin/dawn-notices.js).
    globalSetup: ['test/quiet-dawn.ts'],
    // Every test takes under 20 s on an idle 2-core machine (cold shader cache included);
    // 30 s leaves room for a busy one and still fails a regression loudly. A test that
    // needs more is too big: shrink its shapes or share its pipelines (test/methods/qlora/gpu-variants.ts).
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // WebGPU tests share one Dawn instance per worker; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    // Files in one worker share the module cache instead of importing the compiler again
    // per file: the suite ran in 174 s instead of 293 s (1253 tests, same busy machine).
    // The price is a rule: a test leaves no global state behind (process.env restored,
    // test-only methods registered as test-*, plugins loaded in a child process).
    isolate: false,
  },
});
