// `npm run bench` prints one table style (bench/table.ts): units in the headers, numbers
// aligned right, and a legend line per column.
import { expect, it } from 'vitest';
import { formatTable, num } from '../../bench/table.ts';

it('prints a Markdown table with a legend line per column', () => {
  const text = formatTable(
    'kernels',
    [
      { header: 'case', legend: 'the op and its shape', cell: (r: { n: string; ms: number }) => r.n },
      { header: 'GPU ms', legend: 'median time of one run', cell: (r) => num(r.ms, 1) },
    ],
    [
      { n: 'add 4096', ms: 1.25 },
      { n: 'matmul 512x512x512', ms: 250.7 },
    ],
    ['  (a note)'],
  );
  expect(text.split('\n')).toEqual([
    'kernels',
    '| case               | GPU ms |',
    '|:-------------------|-------:|',
    '| add 4096           |    1.3 |',
    '| matmul 512x512x512 |  250.7 |',
    '  case: the op and its shape',
    '  GPU ms: median time of one run',
    '  (a note)',
  ]);
  expect(num(undefined)).toBe('-');
  expect(num(Number.NaN)).toBe('-');
});
