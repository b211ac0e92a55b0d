// Builds an exported package without the network: its dependencies linked from peftc's own
// node_modules (the versions peftc is built and tested with) and compiled with peftc's
// TypeScript. What the tests and the bench do; a user runs `npm install && npm run build`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const NODE_MODULES = resolve(import.meta.dirname, '../../../node_modules');
/** The package's dependencies (runtime and types) and what they need in turn. */
const LINKED = ['webgpu', '@webgpu/types', '@types/node', 'undici-types'];

export function buildOffline(pkg: string): void {
  for (const dep of LINKED) {
    const at = join(pkg, 'node_modules', dep);
    if (existsSync(at)) continue;
    mkdirSync(dirname(at), { recursive: true });
    symlinkSync(join(NODE_MODULES, dep), at);
  }
  execFileSync(join(NODE_MODULES, '.bin', 'tsc'), ['-p', pkg], { stdio: 'pipe' });
}
