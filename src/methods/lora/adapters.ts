// Several named adapters on one graph. A graph is a value, so "disable" and "set
// active" are passes that return a graph without the other adapters' branches (keep
// the full graph to switch back). modules_to_save copies of removed adapters give way
// to the original weights again.
import type { Graph } from '../../ir/graph.ts';
import { type Rule, rewrite } from '../../passes/rewrite/engine.ts';
import { adapterNames, branchAt } from './branch.ts';
import { LoraError } from './inject.ts';

const SAVED = /^(.*)\.modules_to_save\.([A-Za-z0-9_-]+)\.([^.]+)$/;

function keepOnly(g: Graph, keep: (adapter: string) => boolean): Graph {
  const rules: Rule[] = [
    [
      {
        op: 'add',
        where: (n, gg) => {
          const b = branchAt(gg, n);
          return !!b && !keep(b.adapter);
        },
      },
      (m) => m.inputs[0],
      'lora-remove-branch',
    ],
    [
      {
        op: 'param',
        where: (n) => {
          const s = SAVED.exec(String(n.attrs.name));
          return !!s && !keep(s[2]);
        },
      },
      (m, b) => {
        const [, M, , leaf] = SAVED.exec(String(m.node.attrs.name))!;
        return b.emit(
          'param',
          [],
          { ...m.node.attrs, name: `${M}.${leaf}`, role: 'frozen', init: { kind: 'given' } },
          M,
        );
      },
      'lora-restore-saved-module',
    ],
  ];
  return rewrite(g, rules, { once: true }).graph;
}

/** Keeps only the named adapters' branches. */
export function setActiveAdapters(g: Graph, adapters: readonly string[]): Graph {
  const present = adapterNames(g);
  const missing = adapters.filter((a) => !present.includes(a));
  if (missing.length)
    throw new LoraError(
      `no adapter named ${missing.map((a) => `'${a}'`).join(', ')} (the graph has: ${present.join(', ') || 'none'})`,
    );
  return keepOnly(g, (a) => adapters.includes(a));
}

/** The base model: every adapter branch removed. */
export function disableAdapters(g: Graph): Graph {
  return keepOnly(g, () => false);
}
