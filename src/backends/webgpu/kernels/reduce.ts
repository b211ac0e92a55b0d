// Reductions and row-wise normalisations. Two layouts of a row (see RowMode): a
// workgroup of 64 invocations per row, strided partial results combined by a tree in
// workgroup memory; or one invocation per row, a plain loop. The second wins when rows
// are short, and on CPU adapters (lavapipe), where barriers are costly and the
// invocations of a workgroup are SIMD lanes anyway.
import { normAxes, normAxis, numel, strides } from '../../../ir/shape.ts';
import {
  type ComputeType,
  computeType,
  declStorage,
  enables,
  loadFn,
  PRELUDE,
  storeStmt,
} from '../dtypes.ts';
import { type BindingRef, entry, type Kernel, type KernelContext, type Step, Uniforms } from '../program.ts';
import { dot, uniformList, unravel } from './map.ts';

export const ROW_WG = 64;

/** WGSL that reduces `v` over the workgroup into `let <name>` (all invocations see it). */
export function wgReduce(
  name: string,
  v: string,
  combine: (a: string, b: string) => string,
  buf = 'red',
): string {
  return `  ${buf}[lid] = ${v};
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { ${buf}[lid] = ${combine(`${buf}[lid]`, `${buf}[lid + s]`)}; }
    workgroupBarrier();
  }
  let ${name} = ${buf}[0];
  workgroupBarrier();
`;
}

/**
 * How a row's elements are spread. Bodies loop `for (var j = lane; j < n; j += lanes)`,
 * combine per-lane partials with `reduce` and let `lane == 0` write single results.
 */
export interface RowMode {
  readonly kind: 'workgroup' | 'thread';
  /** Invocations sharing one row (the loop stride). */
  readonly lanes: number;
  /** Statements that combine `v` over the row's lanes into `let <name>`. */
  reduce(name: string, v: string, combine: (a: string, b: string) => string, buf?: string): string;
}

export const WORKGROUP_ROWS: RowMode = { kind: 'workgroup', lanes: ROW_WG, reduce: wgReduce };
export const THREAD_ROWS: RowMode = {
  kind: 'thread',
  lanes: 1,
  reduce: (name, v) => `  let ${name} = ${v};\n`,
};

/**
 * The layout for `rows` rows of `n` elements: one invocation per row when rows are short
 * (most lanes of a workgroup would idle) or on a CPU adapter with rows enough to fill its
 * cores; a workgroup per row for a few long rows, where lanes give the parallelism.
 */
export function rowMode(ctx: Pick<KernelContext, 'software'>, rows: number, n: number): RowMode {
  if (n <= ROW_WG) return THREAD_ROWS;
  if (ctx.software) return rows >= 16 || n <= 4096 ? THREAD_ROWS : WORKGROUP_ROWS;
  return WORKGROUP_ROWS;
}

export const fmax = (a: string, b: string) => `select(${b}, ${a}, ${a} > ${b} || ${a} != ${a})`;
export const fadd = (a: string, b: string) => `${a} + ${b}`;
const NEG_INF = 'inf_f32(-1.0)';

interface RowStepSpec {
  readonly ctx: KernelContext;
  readonly mode: RowMode;
  readonly desc: Record<string, string | number | boolean>;
  readonly inputs: readonly number[];
  readonly rows: number;
  /** Writes (and reads) beyond the node's inputs: the output or scratch buffers. */
  readonly extra?: readonly { ref: BindingRef; write: boolean; dtype: 'f32' }[];
  readonly writesOutput: boolean;
  /** Element type of the workgroup array `red` that `mode.reduce` uses (default f32). */
  readonly redType?: ComputeType;
  /** Body run with `row`, `lane` (0 in thread mode) and `lid`. */
  readonly body: (u: Uniforms) => string;
  /** Module-scope WGSL the body calls (made after the body, with the same uniforms). */
  readonly fns?: (u: Uniforms) => string;
}

/** One step: a workgroup per row, or (thread mode) an invocation per row. */
function rowStep(spec: RowStepSpec): Step {
  const { ctx, mode } = spec;
  const u = new Uniforms();
  const rowsU = u.u32(spec.rows);
  const body = spec.body(u);
  const fns = spec.fns?.(u) ?? '';
  const dts = spec.inputs.map((k) => ctx.inputs[k].dtype);
  let code = enables([...dts, ctx.out.dtype]) + PRELUDE + u.decl() + fns;
  const bindings: { ref: BindingRef; write: boolean }[] = [];
  spec.inputs.forEach((k, j) => {
    code += declStorage(`in${j}`, dts[j], bindings.length + 1, false) + loadFn(`in${j}`, dts[j]);
    bindings.push({ ref: { kind: 'input', index: k }, write: false });
  });
  (spec.extra ?? []).forEach((e, j) => {
    code +=
      declStorage(`sc${j}`, e.dtype, bindings.length + 1, e.write) +
      (e.write ? '' : loadFn(`sc${j}`, e.dtype));
    bindings.push(e);
  });
  if (spec.writesOutput) {
    code += declStorage('outb', ctx.out.dtype, bindings.length + 1, true);
    bindings.push({ ref: { kind: 'output' }, write: true });
  }
  const thread = mode.kind === 'thread';
  if (!thread) code += `var<workgroup> red: array<${spec.redType ?? 'f32'}, ${ROW_WG}>;\n`;
  code += `${entry([ROW_WG])}  let row = ${thread ? `wid * ${ROW_WG}u + lid` : 'wid'};
  if (row >= ${rowsU}) { return; }
  let lane = ${thread ? '0u' : 'lid'};
${body}}
`;
  return {
    desc: {
      op: ctx.node.op,
      dtypes: [...dts, ctx.out.dtype],
      workgroup: [ROW_WG],
      rows: mode.kind,
      ...spec.desc,
    },
    code,
    uniforms: u,
    bindings,
    workgroups: thread ? Math.ceil(spec.rows / ROW_WG) : spec.rows,
  };
}

/**
 * An elementwise program the reduction reads through instead of its input (fused_reduce):
 * `fn pre(i: u32) -> f32` gives element i of the tensor being reduced, from the bound inputs.
 */
export interface ReducePrologue {
  /** The shape of the tensor the program yields (the one reduced). */
  readonly shape: readonly number[];
  /** The program, for the kernel's description (cache key). */
  readonly desc: Readonly<Record<string, string | readonly string[]>>;
  /** WGSL defining `fn pre(i: u32) -> f32` over ld_in0, ld_in1, ... (every node input bound). */
  readonly fn: (u: Uniforms) => string;
}

export function reduction(kind: 'sum' | 'mean' | 'max', prologue?: ReducePrologue): Kernel {
  return (ctx) => {
    const shape = prologue ? prologue.shape : ctx.inputs[0].shape;
    const ax = normAxes((ctx.node.attrs.axes as number[]).map(Number), shape.length);
    const kept = shape.map((_, i) => i).filter((i) => !ax.includes(i));
    const st = strides(shape);
    const ct = computeType(ctx.out.dtype);
    const rcount = numel(ax.map((a) => shape[a]));
    const rows = numel(kept.map((k) => shape[k]));
    const mode = rowMode(ctx, rows, rcount);
    const init =
      kind === 'max' ? (ct === 'f32' ? NEG_INF : ct === 'i32' ? 'i32(-2147483648)' : '0u') : `${ct}(0)`;
    const comb = kind === 'max' ? (ct === 'f32' ? fmax : (a: string, b: string) => `max(${a}, ${b})`) : fadd;
    const step = rowStep({
      ctx,
      mode,
      desc: { kept: kept.length, reduced: ax.length, kind, ...prologue?.desc },
      inputs: prologue ? ctx.inputs.map((_, k) => k) : [0],
      rows,
      writesOutput: true,
      redType: ct,
      fns: prologue?.fn,
      body: (u) => {
        const kd = uniformList(
          u,
          kept.map((k) => shape[k]),
        );
        const ks = uniformList(
          u,
          kept.map((k) => st[k]),
        );
        const rd = uniformList(
          u,
          ax.map((a) => shape[a]),
        );
        const rs = uniformList(
          u,
          ax.map((a) => st[a]),
        );
        const rc = u.u32(rcount);
        let fin = 'total';
        if (kind === 'mean') fin = ct === 'f32' ? `total / f32(${rc})` : `total / ${ct}(max(${rc}, 1u))`;
        return `${unravel('row', kd, 'k')}  let base = ${dot(ks, 'k')};
  var acc: ${ct} = ${init};
  for (var e = lane; e < ${rc}; e = e + ${mode.lanes}u) {
${unravel('e', rd, 'r')}    acc = ${comb('acc', `${prologue ? 'pre' : 'ld_in0'}(base + ${dot(rs, 'r')})`)};
  }
${mode.reduce('total', 'acc', comb)}  if (lane == 0u) { ${storeStmt('outb', ctx.out.dtype, 'row', fin)} }
`;
      },
    });
    return { steps: [step] };
  };
}

/** Row layout of an axis: rows = outer * inner, element j of row at (o * n + j) * inner + q. */
function axisRows(ctx: KernelContext, axis: number) {
  const shape = ctx.inputs[0].shape;
  const ax = normAxis(axis, shape.length);
  return { outer: numel(shape.slice(0, ax)), n: shape[ax], inner: numel(shape.slice(ax + 1)) };
}

function rowPrologue(u: Uniforms, n: number, inner: number): string {
  const nU = u.u32(n);
  const iU = u.u32(inner);
  return `  let n = ${nU};\n  let inner = ${iU};\n  let base = (row / inner) * n * inner + row % inner;\n`;
}

/**
 * WGSL giving a softmax row's `mx` (its max) and `tot` (the sum of exp(x - mx)) over its
 * elements j < `end`, element j being `x` (an expression of j).
 */
function maxAndSum(mode: RowMode, end: string, x: string): string {
  const L = `${mode.lanes}u`;
  return `  var m = ${NEG_INF};
  for (var j = lane; j < ${end}; j = j + ${L}) { m = ${fmax('m', x)}; }
${mode.reduce('mx', 'm', fmax)}  var s = 0.0;
  for (var j = lane; j < ${end}; j = j + ${L}) { s = s + exp(${x} - mx); }
${mode.reduce('tot', 's', fadd)}`;
}

function softmaxLike(log: boolean): Kernel {
  return (ctx) => {
    const { outer, n, inner } = axisRows(ctx, Number(ctx.node.attrs.axis));
    const mode = rowMode(ctx, outer * inner, n);
    const L = `${mode.lanes}u`;
    const step = rowStep({
      ctx,
      mode,
      desc: { log },
      inputs: [0],
      rows: outer * inner,
      writesOutput: true,
      body: (
        u,
      ) => `${rowPrologue(u, n, inner)}${maxAndSum(mode, 'n', 'ld_in0(base + j * inner)')}  for (var j = lane; j < n; j = j + ${L}) {
    let x = ld_in0(base + j * inner);
    ${storeStmt('outb', ctx.out.dtype, 'base + j * inner', log ? 'x - mx - log(tot)' : 'exp(x - mx) / tot')}
  }
`,
    });
    return { steps: [step] };
  };
}

/**
 * attention_softmax: a row of scores [..., S, T] whose keys past the causal diagonal
 * (j > i + T - S) do not count; those, and rows where nothing counts or every score is
 * -inf, give 0 (the CPU kernel in backends/cpu/nn.ts).
 */
const attentionSoftmax: Kernel = (ctx) => {
  const shape = ctx.inputs[0].shape;
  const [s, t] = shape.slice(-2);
  const rows = numel(shape) / t;
  const causal = !!ctx.node.attrs.causal;
  const mode = rowMode(ctx, rows, t);
  const L = `${mode.lanes}u`;
  const step = rowStep({
    ctx,
    mode,
    desc: { causal },
    inputs: [0],
    rows,
    writesOutput: true,
    body: (u) => {
      const S = u.u32(s);
      const end = causal ? `u32(clamp(i32(row % ${S}) + i32(n) - i32(${S}) + 1, 0, i32(n)))` : 'n';
      return `${rowPrologue(u, t, 1)}  let end = ${end};
${maxAndSum(mode, 'end', 'ld_in0(base + j)')}  let none = mx == ${NEG_INF};
  for (var j = lane; j < n; j = j + ${L}) {
    let p = select(exp(ld_in0(base + j) - mx) / tot, 0.0, none || j >= end);
    ${storeStmt('outb', ctx.out.dtype, 'base + j', 'p')}
  }
`;
    },
  });
  return { steps: [step] };
};

const rmsnorm: Kernel = (ctx) => {
  const { outer, n } = axisRows(ctx, -1);
  const mode = rowMode(ctx, outer, n);
  const L = `${mode.lanes}u`;
  const step = rowStep({
    ctx,
    mode,
    desc: {},
    inputs: [0, 1],
    rows: outer,
    writesOutput: true,
    body: (u) => {
      const eps = u.f32v(Number(ctx.node.attrs.eps));
      return `${rowPrologue(u, n, 1)}  var s = 0.0;
  for (var j = lane; j < n; j = j + ${L}) { let x = ld_in0(base + j); s = s + x * x; }
${mode.reduce('ss', 's', fadd)}  let r = 1.0 / sqrt(ss / f32(n) + ${eps});
  for (var j = lane; j < n; j = j + ${L}) {
    ${storeStmt('outb', ctx.out.dtype, 'base + j', 'ld_in0(base + j) * r * ld_in1(j)')}
  }
`;
    },
  });
  return { steps: [step] };
};

const layernorm: Kernel = (ctx) => {
  const { outer, n } = axisRows(ctx, -1);
  const bias = ctx.inputs.length > 2;
  const mode = rowMode(ctx, outer, n);
  const L = `${mode.lanes}u`;
  const step = rowStep({
    ctx,
    mode,
    desc: { bias },
    inputs: bias ? [0, 1, 2] : [0, 1],
    rows: outer,
    writesOutput: true,
    body: (u) => {
      const eps = u.f32v(Number(ctx.node.attrs.eps));
      return `${rowPrologue(u, n, 1)}  var s = 0.0;
  for (var j = lane; j < n; j = j + ${L}) { s = s + ld_in0(base + j); }
${mode.reduce('tot', 's', fadd)}  let mean = tot / f32(n);
  var v = 0.0;
  for (var j = lane; j < n; j = j + ${L}) { let d = ld_in0(base + j) - mean; v = v + d * d; }
${mode.reduce('vs', 'v', fadd)}  let r = 1.0 / sqrt(vs / f32(n) + ${eps});
  for (var j = lane; j < n; j = j + ${L}) {
    ${storeStmt('outb', ctx.out.dtype, 'base + j', `(ld_in0(base + j) - mean) * r * ld_in1(j)${bias ? ' + ld_in2(j)' : ''}`)}
  }
`;
    },
  });
  return { steps: [step] };
};

const crossEntropy: Kernel = (ctx) => {
  const [rows, v] = ctx.inputs[0].shape;
  const reduction = String(ctx.node.attrs.reduction);
  const ignore = Number(ctx.node.attrs.ignore_index);
  const direct = reduction === 'none';
  const mode = rowMode(ctx, rows, v);
  const _L = `${mode.lanes}u`;
  const perRow = rowStep({
    ctx,
    mode,
    desc: { stage: 'rows', direct },
    inputs: [0, 1],
    rows,
    extra: direct ? [] : [{ ref: { kind: 'scratch', index: 0 }, write: true, dtype: 'f32' }],
    writesOutput: direct,
    body: (u) => {
      const vU = u.u32(v);
      const ign = u.i32(ignore);
      const write = (loss: string, cnt: string) =>
        direct
          ? storeStmt('outb', ctx.out.dtype, 'row', loss)
          : `sc0[row] = ${loss}; sc0[${u.u32(rows)} + row] = ${cnt};`;
      return `  let label = ld_in1(row);
  let base = row * ${vU};
  if (label == ${ign}) { if (lane == 0u) { ${write('0.0', '0.0')} } return; }
${maxAndSum(mode, vU, 'ld_in0(base + j)')}  if (lane == 0u) {
    var loss = nan_f32();
    if (label >= 0 && u32(label) < ${vU}) { loss = mx + log(tot) - ld_in0(base + u32(label)); }
    ${write('loss', '1.0')}
  }
`;
    },
  });
  if (direct) return { steps: [perRow] };
  const total = rowStep({
    ctx,
    mode: rowMode(ctx, 1, rows),
    desc: { stage: 'total', mean: reduction === 'mean' },
    inputs: [],
    rows: 1,
    extra: [{ ref: { kind: 'scratch', index: 0 }, write: false, dtype: 'f32' }],
    writesOutput: true,
    body: (u) => {
      const nU = u.u32(rows);
      const tm = rowMode(ctx, 1, rows);
      return `  var s = 0.0;
  var c = 0.0;
  for (var j = lane; j < ${nU}; j = j + ${tm.lanes}u) { s = s + ld_sc0(j); c = c + ld_sc0(${nU} + j); }
${tm.reduce('ls', 's', fadd)}${tm.reduce('cs', 'c', fadd)}  if (lane == 0u) {
    ${storeStmt('outb', ctx.out.dtype, '0u', reduction === 'mean' ? 'select(ls / cs, nan_f32(), cs == 0.0)' : 'ls')}
  }
`;
    },
  });
  return { steps: [perRow, total], scratch: [Math.max(4, rows * 8)] };
};

/** cross_entropy's gradient (ops/reduce.ts cross_entropy_grad): one row of logits per row of the kernel. */
const crossEntropyGrad: Kernel = (ctx) => {
  const [rows, v] = ctx.inputs[0].shape;
  const reduction = String(ctx.node.attrs.reduction);
  const mode = rowMode(ctx, rows, v);
  const L = `${mode.lanes}u`;
  const step = rowStep({
    ctx,
    mode,
    desc: { reduction },
    inputs: [0, 1, 2],
    rows,
    writesOutput: true,
    body: (u) => {
      const vU = u.u32(v);
      const nU = u.u32(rows);
      const ign = u.i32(Number(ctx.node.attrs.ignore_index));
      const store = (value: string) => storeStmt('outb', ctx.out.dtype, 'base + j', value);
      // The row's share of the cotangent; the mean counts the rows whose label counts.
      const share =
        reduction === 'none'
          ? '  let g = ld_in2(row);\n'
          : reduction === 'sum'
            ? '  let g = ld_in2(0u);\n'
            : `  var c = 0.0;
  for (var k = lane; k < ${nU}; k = k + ${L}) { c = c + select(1.0, 0.0, ld_in1(k) == ${ign}); }
${mode.reduce('cnt', 'c', fadd)}  let g = ld_in2(0u) / max(cnt, 1.0);
`;
      return `  let label = ld_in1(row);
  let base = row * ${vU};
  if (label == ${ign}) {
    for (var j = lane; j < ${vU}; j = j + ${L}) { ${store('0.0')} }
    return;
  }
${share}${maxAndSum(mode, vU, 'ld_in0(base + j)')}  for (var j = lane; j < ${vU}; j = j + ${L}) {
    let hot = select(0.0, 1.0, label >= 0 && u32(label) == j);
    ${store('(exp(ld_in0(base + j) - mx) / tot - hot) * g')}
  }
`;
    },
  });
  return { steps: [step] };
};

export const reduceKernels = {
  sum: reduction('sum'),
  mean: reduction('mean'),
  max: reduction('max'),
  softmax: softmaxLike(false),
  log_softmax: softmaxLike(true),
  attention_softmax: attentionSoftmax,
  rmsnorm,
  layernorm,
  cross_entropy: crossEntropy,
  cross_entropy_grad: crossEntropyGrad,
} satisfies Record<string, Kernel>;
