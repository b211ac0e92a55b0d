// Loss curves from the training log: a vega-lite chart rendered headless by vega to
// SVG (no canvas needed), rasterised to PNG by resvg (a prebuilt native binary).
import * as path from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { writeAll, writeFileAtomic } from '../../io/atomic.ts';
import { FormatError } from '../../io/errors.ts';
import { readTrainLog, type StepRecord } from '../log.ts';

export interface LossPlotOptions {
  /** Default 'training loss'. */
  readonly title?: string;
  /** Plot area in CSS pixels; default 560 x 320. */
  readonly width?: number;
  readonly height?: number;
  /** PNG pixels per SVG pixel; default 2 (sharp on high-dpi screens). */
  readonly scale?: number;
}

export const TRAIN_SERIES = 'train loss';
export const EVAL_SERIES = 'eval loss';

interface Point {
  step: number;
  loss: number;
  series: string;
}

function points(records: readonly StepRecord[]): Point[] {
  const out: Point[] = [];
  for (const r of records) {
    if (typeof r.loss === 'number' && Number.isFinite(r.loss))
      out.push({ step: r.step, loss: r.loss, series: TRAIN_SERIES });
    if (typeof r.eval_loss === 'number' && Number.isFinite(r.eval_loss)) {
      out.push({ step: r.step, loss: r.eval_loss, series: EVAL_SERIES });
    }
  }
  return out;
}

/** The vega-lite spec: train loss as a line, eval loss as a line with points, one colour each. */
export function lossCurveSpec(records: readonly StepRecord[], opts: LossPlotOptions = {}): vl.TopLevelSpec {
  const color = {
    field: 'series',
    type: 'nominal' as const,
    title: null,
    scale: { domain: [TRAIN_SERIES, EVAL_SERIES], range: ['#1f77b4', '#d62728'] },
    legend: { orient: 'top-right' as const },
  };
  const x = { field: 'step', type: 'quantitative' as const, title: 'step', axis: { tickMinStep: 1 } };
  const y = { field: 'loss', type: 'quantitative' as const, title: 'loss', scale: { zero: false } };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: opts.title ?? 'training loss',
    width: opts.width ?? 560,
    height: opts.height ?? 320,
    background: 'white',
    data: { values: points(records) },
    layer: [
      {
        transform: [{ filter: { field: 'series', equal: TRAIN_SERIES } }],
        mark: { type: 'line', strokeWidth: 1.5 },
        encoding: { x, y, color },
      },
      {
        transform: [{ filter: { field: 'series', equal: EVAL_SERIES } }],
        mark: { type: 'line', point: true, strokeWidth: 2 },
        encoding: { x, y, color },
      },
    ],
  };
}

/** Renders the curves to an SVG string and PNG bytes. */
export async function renderLossCurve(
  records: readonly StepRecord[],
  opts: LossPlotOptions = {},
): Promise<{ svg: string; png: Uint8Array }> {
  if (points(records).length === 0) throw new Error('nothing to plot: no step in the log has a finite loss');
  const spec = vl.compile(lossCurveSpec(records, opts)).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const png = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: opts.scale ?? 2 },
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans' },
  })
    .render()
    .asPng();
  return { svg, png: new Uint8Array(png) };
}

/**
 * Reads a JSONL training log and writes `<outBase>.svg` and `<outBase>.png`
 * (default outBase: the log path without its extension). Returns both paths.
 */
export async function writeLossPlot(
  logFile: string,
  outBase?: string,
  opts: LossPlotOptions = {},
): Promise<{ svg: string; png: string }> {
  const records = readTrainLog(logFile);
  if (records.length === 0) throw new FormatError(logFile, 'training log has no records to plot');
  let rendered: { svg: string; png: Uint8Array };
  try {
    rendered = await renderLossCurve(records, opts);
  } catch (e) {
    throw new FormatError(logFile, (e as Error).message);
  }
  const base = outBase ?? path.join(path.dirname(logFile), path.basename(logFile, path.extname(logFile)));
  const files = { svg: `${base}.svg`, png: `${base}.png` };
  writeFileAtomic(files.svg, (fd) => writeAll(fd, new TextEncoder().encode(rendered.svg)));
  writeFileAtomic(files.png, (fd) => writeAll(fd, rendered.png));
  return files;
}
