// What `peftc ir --stats` and `--kernels` print: a per-pass table and the WebGPU
// dispatch list, as aligned plain-text tables (one row per line, easy to grep).
import type { KernelList } from '../../backends/webgpu/kernel-list.ts';
import type { PassStats } from '../../passes/index.ts';

function table(rows: readonly (readonly string[])[], rightAligned: ReadonlySet<number>): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) =>
          c === r.length - 1 ? cell : rightAligned.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c]),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** `+12 matmul -3 add`: biggest changes first. */
export function formatOpDelta(delta: Readonly<Record<string, number>>): string {
  return Object.entries(delta)
    .sort(([a, x], [b, y]) => Math.abs(y) - Math.abs(x) || a.localeCompare(b))
    .map(([op, k]) => `${k > 0 ? '+' : ''}${k} ${op}`)
    .join(' ');
}

/** One row per pass: its wall time, the node count after it, and the op counts it changed. */
export function formatStats(inputNodes: number, stats: readonly PassStats[]): string {
  const rows = [
    ['pass', 'ms', 'nodes', 'ops'],
    ['(model graph)', '', String(inputNodes), ''],
    ...stats.map((s) => [
      s.pass,
      s.ms.toFixed(2),
      String(s.nodes),
      formatOpDelta(s.opDelta) || '(no change)',
    ]),
  ];
  const total = stats.reduce((a, s) => a + s.ms, 0);
  return `${table(rows, new Set([1, 2]))}\n// total ${total.toFixed(2)} ms over ${stats.length} passes\n`;
}

/** One row per dispatch, in the order the backend would run them. */
export function formatKernels(list: KernelList, target: string): string {
  const rows = [
    ['#', 'kernel', 'workgroups', 'size', 'node', 'cache key'],
    ...list.dispatches.map((d) => [
      String(d.index),
      d.kernel,
      String(d.workgroups),
      d.workgroupSize.join('x'),
      `${d.members ? `${d.members.map((m) => `%${m.id}`).join(' ')} ` : ''}%${d.node.id} ${d.node.op}${d.node.scope ? ` @${d.node.scope}` : ''}`,
      d.key,
    ]),
  ];
  const head =
    `// WebGPU kernels for ${target}: ${list.dispatches.length} dispatches, ${list.pipelines} distinct pipelines; ` +
    `${list.free} nodes need none (params, inputs, consts, views), ${list.grouped} run in another node's kernel`;
  return `${head}\n${table(rows, new Set([0, 2]))}\n`;
}
