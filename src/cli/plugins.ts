// `--plugin <module>` (any position, repeatable): loads a module that registers methods,
// passes or ops from outside src/ (the researcher's path, e.g.
// examples/new-variant/lora-fa.ts) before the command runs, so recipes can name them.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UsageError, UserError } from './errors.ts';

/** Splits `--plugin X` / `--plugin=X` out of argv; returns the rest and the modules. */
export function takePlugins(argv: readonly string[]): { argv: string[]; plugins: string[] } {
  const rest: string[] = [];
  const plugins: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--plugin') {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--'))
        throw new UsageError("option '--plugin <module>' argument missing");
      plugins.push(v);
      i++;
    } else if (a.startsWith('--plugin=')) plugins.push(a.slice('--plugin='.length));
    else rest.push(a);
  }
  return { argv: rest, plugins };
}

export async function loadPlugins(plugins: readonly string[]): Promise<void> {
  for (const p of plugins) {
    const file = resolve(p);
    if (!existsSync(file)) throw new UserError(`--plugin ${p}: no such file`);
    try {
      await import(pathToFileURL(file).href);
    } catch (e) {
      throw new UserError(`--plugin ${p}: loading it failed: ${(e as Error).message}`);
    }
  }
}
