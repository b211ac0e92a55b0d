#!/usr/bin/env node
// Runs a TypeScript entry file (bench, examples) through tsx: node bin/run-ts.js <file.ts> [args...]
// Like bin/peftc.js, in a child whose stderr drops Dawn's known start-up notices
// (dawn-notices.js; PEFTC_VERBOSE=1 keeps them).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { relaunchFiltered } from './dawn-notices.js';

if (!(await relaunchFiltered())) {
  const { register } = await import('tsx/esm/api');
  register();
  const [file, ...rest] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node bin/run-ts.js <file.ts> [args...]');
    process.exit(2);
  }
  process.argv = [process.argv[0], resolve(file), ...rest];
  await import(pathToFileURL(resolve(file)).href);
}
