// The `peftc` command. Each subcommand lives in src/cli/commands/<name>.ts and
// exports `register(program)`; add it to the list below. bin/peftc.js calls runCli
// with the process's arguments and exits with its code; tests call it in-process.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { formatError, UsageError } from './errors.ts';
import { loadPlugins, takePlugins } from './plugins.ts';

/** Where the command's own output goes: help, parse errors and the final error line. */
export interface CliIo {
  readonly stdout: (s: string) => void;
  readonly stderr: (s: string) => void;
}

const processIo: CliIo = {
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
};

const commands: Array<() => Promise<{ register: (p: Command) => void }>> = [
  () => import('./commands/logits.ts'),
  () => import('./commands/merge.ts'),
  () => import('./commands/train.ts'),
  () => import('./commands/ir.ts'),
  () => import('./commands/quantize.ts'),
  () => import('./commands/plan.ts'),
  () => import('./commands/export.ts'),
  () => import('./commands/generate.ts'),
  () => import('./commands/serve.ts'),
];

function packageVersion(): string {
  const pkg = join(import.meta.dirname, '..', '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/**
 * A fresh program per run: commander keeps parsed option values on its commands, so
 * one instance cannot parse twice. Its own parse errors read like ours ("peftc: error:
 * ..."), then one line pointing at the help instead of the whole option list.
 */
async function buildProgram(io: CliIo): Promise<Command> {
  const program = new Command('peftc')
    .description('a compiler for parameter-efficient fine-tuning (LoRA, QLoRA, ...) on WebGPU')
    .configureOutput({
      writeOut: io.stdout,
      writeErr: io.stderr,
      outputError: (str, write) => write(`peftc: ${str}`),
    })
    .showHelpAfterError("(run 'peftc --help' for the commands)")
    .version(packageVersion(), '-V, --version', 'print the peftc version')
    .exitOverride();
  // Subcommands made with program.command() inherit the output settings and exitOverride.
  for (const load of commands) (await load()).register(program);
  for (const cmd of program.commands)
    cmd.showHelpAfterError(`(run 'peftc ${cmd.name()} --help' for its options)`);
  program.option(
    '--plugin <module>',
    'load a module registering methods/passes/ops first (repeatable, any position)',
  );
  // Read by bin/peftc.js, which filters Dawn's known start-up notices unless it is given.
  program.option('--verbose', "show Dawn's own notices on stderr (any position)");
  return program;
}

/**
 * Runs `peftc <argv...>` (the arguments after the program name) and returns the exit
 * code: 0 done (or help shown), 1 a runtime error, 2 a usage error (bad flag, command
 * or value). Errors are reported on io.stderr as one `peftc: error: ...` line.
 */
export async function runCli(argv: readonly string[], io: CliIo = processIo): Promise<number> {
  try {
    const program = await buildProgram(io);
    const { argv: rest, plugins } = takePlugins(argv.filter((a) => a !== '--verbose'));
    await loadPlugins(plugins);
    // Bare `peftc`: the help on stdout, not an error (commander's default is stderr, exit 1).
    if (rest.length === 0) {
      io.stdout(program.helpInformation());
      return 0;
    }
    await program.parseAsync(rest, { from: 'user' });
    return 0;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'commander.helpDisplayed' || code === 'commander.version') return 0;
    if (code?.startsWith('commander.')) return 2;
    io.stderr(`${formatError(e)}\n`);
    return e instanceof UsageError ? 2 : 1;
  }
}
