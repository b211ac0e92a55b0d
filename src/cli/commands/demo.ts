// `peftc demo`: the best end-to-end run there is so far (replaced by training once it lands).
import type { Command } from 'commander';
import { GraphBuilder, printGraph } from '../../ir/index.ts';

export function register(program: Command): void {
  program
    .command('demo')
    .description('build a small graph and print its IR')
    .action(() => {
      const b = new GraphBuilder();
      const x = b.input('x', 'f32', [1, 4, 8]);
      const w = b.withScope('model.mlp.up_proj', () => b.param('model.mlp.up_proj.weight', 'f32', [16, 8]));
      const y = b.withScope('model.mlp.up_proj', () => b.linear(x, w));
      process.stdout.write(printGraph(b.build({ y: b.silu(y) })));
    });
}
