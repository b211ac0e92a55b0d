// The one table style of `npm run bench`: a title, a Markdown table (pastes into docs
// and issues as is) with the unit in every numeric column's header, then one legend
// line per column saying what it measures, so "x ideal" or "GB/s" needs no source reading.

export interface Column<R> {
  /** Header with its unit, e.g. 'GPU ms' or 'webgpu GFLOP/s'. */
  readonly header: string;
  /** One line: what the column measures and how. */
  readonly legend: string;
  readonly cell: (row: R) => string;
  /** Numbers align right (the default for every column but the first). */
  readonly align?: 'left' | 'right';
}

/** The table as text: title, header, rows, a legend line per column, then any notes. */
export function formatTable<R>(
  title: string,
  columns: readonly Column<R>[],
  rows: readonly R[],
  notes: readonly string[] = [],
): string {
  const cells = rows.map((r) => columns.map((c) => c.cell(r)));
  const widths = columns.map((c, j) => Math.max(c.header.length, 3, ...cells.map((row) => row[j].length)));
  const right = columns.map((c, j) => (c.align ?? (j === 0 ? 'left' : 'right')) === 'right');
  const pad = (s: string, j: number) => (right[j] ? s.padStart(widths[j]) : s.padEnd(widths[j]));
  const line = (row: readonly string[]) => `| ${row.map(pad).join(' | ')} |`;
  const rule = `|${widths.map((w, j) => (right[j] ? `${'-'.repeat(w + 1)}:` : `:${'-'.repeat(w + 1)}`)).join('|')}|`;
  const legend = columns.map((c) => `  ${c.header}: ${c.legend}`);
  return [title, line(columns.map((c) => c.header)), rule, ...cells.map(line), ...legend, ...notes].join(
    '\n',
  );
}

export function printTable<R>(
  title: string,
  columns: readonly Column<R>[],
  rows: readonly R[],
  notes: readonly string[] = [],
): void {
  console.log(`\n${formatTable(title, columns, rows, notes)}`);
}

/** A number with fixed decimals, '-' when absent. */
export function num(x: number | undefined, digits = 2): string {
  return x === undefined || !Number.isFinite(x) ? '-' : x.toFixed(digits);
}
