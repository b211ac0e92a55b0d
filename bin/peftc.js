#!/usr/bin/env node
// The `peftc` command: runs the TypeScript sources through tsx so no build step is needed,
// in a child whose stderr drops Dawn's known start-up notices (dawn-notices.js; --verbose
// keeps them). The parent stays plain node (tsx loads only in the child). The child exits
// once the command returns (a live device or timer must not keep the process up).
import { relaunchFiltered } from './dawn-notices.js';

if (!(await relaunchFiltered())) {
  const { register } = await import('tsx/esm/api');
  register();
  const { runCli } = await import('../src/cli/main.ts');
  process.exit(await runCli(process.argv.slice(2)));
}
