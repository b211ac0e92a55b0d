// Several named adapters on one graph. A graph is a value, so "disable" and "set
// active" are passes that return a graph without the other adapters (keep the full
// graph to switch back); any registered adapter structure goes the same way (its
// output replaced by the output below it). modules_to_save copies of removed adapters
// give way to the original weights again.
import type { Graph } from '../../ir/graph.ts';
import { type Rule, rewrite } from '../../passes/rewrite/engine.ts';
import { MethodError } from '../registry.ts';
import { removeSites } from './merge.ts';
import { adapterNames, checkAdapters } from './sites.ts';

const SAVED = /^(.*)\.modules_to_save\.([A-Za-z0-9_-]+)\.([^.]+)$/;

function keepOnly(g: Graph, keep: (adapter: string) => boolean, what: string): Graph {
  const gone = checkAdapters(g, what).filter((s) => !keep(s.adapter));
  const rules: Rule[] = [
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
      'restore-saved-module',
    ],
  ];
  return rewrite(removeSites(g, gone, 'remove-adapter'), rules, { once: true }).graph;
}

/** Keeps only the named adapters' branches. */
export function setActiveAdapters(g: Graph, adapters: readonly string[]): Graph {
  const present = adapterNames(g);
  const missing = adapters.filter((a) => !present.includes(a));
  if (missing.length)
    throw new MethodError(
      `no adapter named ${missing.map((a) => `'${a}'`).join(', ')} (the graph has: ${present.join(', ') || 'none'})`,
    );
  return keepOnly(g, (a) => adapters.includes(a), 'set-active');
}

/** The base model: every adapter branch removed. */
export function disableAdapters(g: Graph): Graph {
  return keepOnly(g, () => false, 'disable');
}
