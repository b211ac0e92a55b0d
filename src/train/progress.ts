// Training progress: a redrawn bar (cli-progress) on a terminal, plain lines every
// N steps elsewhere (CI logs, pipes), where redrawing would flood the output.
import cliProgress from 'cli-progress';

export interface ProgressStream {
  write(chunk: string): unknown;
  readonly isTTY?: boolean;
}

export interface ProgressOptions {
  /** The step count the run ends at. */
  readonly total: number;
  /** Steps already done (a resumed run); rates count only this run's steps. */
  readonly startStep?: number;
  /** Default process.stdout. */
  readonly stream?: ProgressStream;
  /** Redraw a bar (true) or print lines (false); default: whether the stream is a TTY. */
  readonly tty?: boolean;
  /** Non-TTY: print a line every this many steps (and at the first and last); default 10. */
  readonly every?: number;
  /** Milliseconds clock (tests pass a fake one); default performance.now. */
  readonly now?: () => number;
}

export interface ProgressUpdate {
  /** Steps completed so far (1 after the first step). */
  readonly step: number;
  readonly loss?: number;
  readonly lr?: number;
  /** Tokens processed by the steps since the last update. */
  readonly tokens?: number;
}

/** Rates over the last few updates, so a slow first step (compilation) does not skew them for long. */
const WINDOW = 20;

export class Progress {
  private readonly total: number;
  private readonly stream: ProgressStream;
  private readonly every: number;
  private readonly now: () => number;
  private readonly bars: cliProgress.MultiBar | undefined;
  private readonly bar: cliProgress.SingleBar | undefined;
  private readonly marks: Array<{ t: number; step: number; tokens: number }>;
  private tokens = 0;
  private lastLine = -1;

  constructor(opts: ProgressOptions) {
    this.total = opts.total;
    this.stream = opts.stream ?? process.stdout;
    this.every = Math.max(1, opts.every ?? 10);
    this.now = opts.now ?? (() => performance.now());
    const start = opts.startStep ?? 0;
    this.marks = [{ t: this.now(), step: start, tokens: 0 }];
    if (opts.tty ?? this.stream.isTTY === true) {
      this.bars = new cliProgress.MultiBar(
        {
          format: ' {bar} {value}/{total} | {tps} tok/s {sps} step/s | ETA {etaText} | loss {loss} | lr {lr}',
          barsize: 20,
          hideCursor: true,
          clearOnComplete: false,
          stopOnComplete: false,
          // cli-progress wants a real stream; ours only needs write() and isTTY.
          stream: this.stream as NodeJS.WritableStream,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar = this.bars.create(this.total, start, this.payload(undefined, undefined));
    }
  }

  update(u: ProgressUpdate): void {
    this.tokens += u.tokens ?? 0;
    this.marks.push({ t: this.now(), step: u.step, tokens: this.tokens });
    if (this.marks.length > WINDOW + 1) this.marks.shift();
    if (this.bar) {
      this.bar.update(u.step, this.payload(u.loss, u.lr));
      return;
    }
    if (u.step === this.marks[0].step + 1 || u.step % this.every === 0 || u.step >= this.total) {
      if (u.step === this.lastLine) return;
      this.lastLine = u.step;
      const p = this.payload(u.loss, u.lr);
      this.stream.write(
        `step ${u.step}/${this.total} | loss ${p.loss} | lr ${p.lr} | ${p.tps} tok/s ${p.sps} step/s | ETA ${p.etaText}\n`,
      );
    }
  }

  /** A message that does not break the bar (e.g. an eval result). */
  log(line: string): void {
    if (this.bars) this.bars.log(`${line}\n`);
    else this.stream.write(`${line}\n`);
  }

  stop(): void {
    this.bars?.stop();
  }

  /** Steps/s and tokens/s over the recent window. */
  rates(): { stepsPerS: number; tokensPerS: number } {
    const a = this.marks[0];
    const b = this.marks[this.marks.length - 1];
    const dt = (b.t - a.t) / 1000;
    if (dt <= 0) return { stepsPerS: 0, tokensPerS: 0 };
    return { stepsPerS: (b.step - a.step) / dt, tokensPerS: (b.tokens - a.tokens) / dt };
  }

  private payload(loss: number | undefined, lr: number | undefined) {
    const { stepsPerS, tokensPerS } = this.rates();
    const step = this.marks[this.marks.length - 1].step;
    const eta = stepsPerS > 0 ? (this.total - step) / stepsPerS : Number.NaN;
    return {
      tps: formatCount(tokensPerS),
      sps: stepsPerS.toFixed(2),
      etaText: formatDuration(eta),
      loss: loss === undefined ? '-' : loss.toFixed(4),
      lr: lr === undefined ? '-' : lr.toExponential(2),
    };
  }
}

/** 12s, 3m05s, 1h02m; '-' when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '-';
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** 950, 12.3k, 4.56M. */
export function formatCount(x: number): string {
  if (x < 1000) return x.toFixed(0);
  if (x < 1e6) return `${(x / 1e3).toFixed(1)}k`;
  return `${(x / 1e6).toFixed(2)}M`;
}
