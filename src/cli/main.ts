// The `peftc` command. Each subcommand lives in src/cli/commands/<name>.ts and
// exports `register(program)`; add it to the list below.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { formatError, UsageError } from './errors.ts';
import { loadPlugins, takePlugins } from './plugins.ts';

// Commander's own parse errors read like ours ("peftc: error: ..."), then one line
// pointing at the help instead of the whole option list.
const program = new Command('peftc')
  .description('a compiler for parameter-efficient fine-tuning (LoRA, QLoRA, ...) on WebGPU')
  .configureOutput({ outputError: (str, write) => write(`peftc: ${str}`) })
  .showHelpAfterError("(run 'peftc --help' for the commands)")
  .version(packageVersion(), '-V, --version', 'print the peftc version')
  .exitOverride();

function packageVersion(): string {
  const pkg = join(import.meta.dirname, '..', '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

const commands: Array<() => Promise<{ register: (p: Command) => void }>> = [
  () => import('./commands/logits.ts'),
  () => import('./commands/merge.ts'),
  () => import('./commands/train.ts'),
  () => import('./commands/ir.ts'),
  () => import('./commands/quantize.ts'),
];

for (const load of commands) (await load()).register(program);
for (const cmd of program.commands)
  cmd.showHelpAfterError(`(run 'peftc ${cmd.name()} --help' for its options)`);

program.option(
  '--plugin <module>',
  'load a module registering methods/passes/ops first (repeatable, any position)',
);
// Read by bin/peftc.js, which filters Dawn's known start-up notices unless it is given.
program.option('--verbose', "show Dawn's own notices on stderr (any position)");

try {
  const { argv, plugins } = takePlugins(process.argv.filter((a) => a !== '--verbose'));
  await loadPlugins(plugins);
  // Bare `peftc`: the help on stdout, not an error (commander's default is stderr, exit 1).
  if (argv.length <= 2) {
    program.outputHelp();
    process.exit(0);
  }
  await program.parseAsync(argv);
  process.exit(0);
} catch (e) {
  const code = (e as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version') process.exit(0);
  if (code?.startsWith('commander.')) process.exit(2);
  console.error(formatError(e));
  process.exit(e instanceof UsageError ? 2 : 1);
}
