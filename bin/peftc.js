#!/usr/bin/env node
// The `peftc` command: runs the TypeScript sources through tsx so no build step is needed.
// Exits once the command returns (a live device or timer must not keep the process up).
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
process.exit(await runCli(process.argv.slice(2)));
