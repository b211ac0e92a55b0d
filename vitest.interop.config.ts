// `npm run test:interop`: checks against Python libraries that CI does not install (the
// generated Hugging Face Trainer project run with torch + transformers + peft). Not part of
// `npm test`; see test/interop/.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/interop/**/*.interop.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 1,
  },
});
