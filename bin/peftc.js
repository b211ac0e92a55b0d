#!/usr/bin/env node
// The `peftc` command: runs the TypeScript sources through tsx so no build step is needed,
// in a child whose stderr drops Dawn's known start-up notices (dawn-notices.js; --verbose
// keeps them). The parent stays plain node (tsx loads only in the child).
import { relaunchFiltered } from './dawn-notices.js';

if (!(await relaunchFiltered())) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../src/cli/main.ts');
}
