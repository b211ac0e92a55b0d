// The `peftc` command. Each subcommand lives in src/cli/commands/<name>.ts and
// exports `register(program)`; add it to the list below.
import { Command } from 'commander';
import { formatError, UsageError } from './errors.ts';
import { loadPlugins, takePlugins } from './plugins.ts';

// Commander's own parse errors read like ours ("peftc: error: ..."), then one line
// pointing at the help instead of the whole option list.
const program = new Command('peftc')
  .description('a compiler for parameter-efficient fine-tuning (LoRA, QLoRA, ...) on WebGPU')
  .configureOutput({ outputError: (str, write) => write(`peftc: ${str}`) })
  .showHelpAfterError("(run 'peftc --help' for the commands)")
  .exitOverride();

const commands: Array<() => Promise<{ register: (p: Command) => void }>> = [
  () => import('./commands/demo.ts'),
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

try {
  const { argv, plugins } = takePlugins(process.argv);
  await loadPlugins(plugins);
  await program.parseAsync(argv);
  process.exit(0);
} catch (e) {
  const code = (e as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version') process.exit(0);
  if (code?.startsWith('commander.')) process.exit(2);
  console.error(formatError(e));
  process.exit(e instanceof UsageError ? 2 : 1);
}
