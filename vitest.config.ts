import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    // Drops Dawn's known start-up notices from the workers' stderr (bin/dawn-notices.js).
    globalSetup: ['test/quiet-dawn.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // WebGPU tests share one Dawn instance per worker; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
  },
});
