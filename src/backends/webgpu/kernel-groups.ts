// Kernels that cover several nodes (issue 21). A run of elementwise programs close to each
// other in the schedule (at most LOOK_PAST other kernels, and no reader of their values,
// between them; those kernels run before the group) becomes one dispatch: each invocation
// evaluates every member at its element, a member reading an earlier member's value at its
// own element takes it from a register,
// and only values read outside the group (or graph outputs) are stored. A member whose
// value is a param's new value (`assign:<param>`) writes it into the param's buffer in
// place when every read of the param is a member's at its own element or comes before the
// group: the param is bound once, read_write, its old value loaded before any store.
// That is AdamW's tail: m, v and w of several tensors in one kernel, with no copies after.
//
// The members' programs come from their ops: the plain f32 elementwise ops (kernels/steps.ts)
// and ops registered with registerMapMember (fused_map, passes/fuse/kernels.ts), written
// with the same emitters as the ops' own kernels.
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { ASSIGN_PREFIX } from '../backend.ts';
import { declStorage, loadFn, PRELUDE, storeStmt } from './dtypes.ts';
import { MAP_PER_INVOCATION, MAP_WORKGROUP } from './kernels/map.ts';
import { fadd, fmax, ROW_WG, rowMode, THREAD_ROWS, WORKGROUP_ROWS } from './kernels/reduce.ts';
import { elementwiseMember, trailingReduceMember } from './kernels/steps.ts';
import { entry, type KernelContext, type KernelPlan, type ProgramDesc, Uniforms } from './program.ts';

/** An f32 elementwise program that can run as a member of a group kernel. */
export interface MapMember {
  /** Everything in the WGSL of `body` besides sizes (uniforms): part of the cache key. */
  readonly desc: string;
  /** WGSL functions the body calls (several members' equal helpers are declared once). */
  readonly helpers: string;
  /** Per input: 'same' (read at the output's own element), 'scalar' or 'bcast'. */
  readonly bcast: readonly string[];
  /**
   * Statements of `fn (i: u32) -> f32` for element `i` of the output, ending in `return`;
   * input k's element `index` is the expression `read(k, index)`.
   */
  readonly body: (u: Uniforms, read: (k: number, index: string) => string) => string;
}

/**
 * A reduction over a tensor's trailing axes that can run as a member of a group kernel:
 * `rows` results, each of `count` contiguous elements; `program` yields element
 * `row * count + e` of the tensor reduced.
 */
export interface ReduceMember {
  readonly kind: 'sum' | 'mean' | 'max';
  readonly rows: number;
  readonly count: number;
  readonly program: MapMember;
}

const members = new Map<string, (ctx: KernelContext) => MapMember | undefined>();
const reduceMembers = new Map<string, (ctx: KernelContext) => ReduceMember | undefined>();

/** Lets nodes of `op` join group kernels (`program` may decline one node: undefined). */
export function registerMapMember(op: string, program: (ctx: KernelContext) => MapMember | undefined): void {
  if (members.has(op)) throw new Error(`a group-kernel member program for op '${op}' is already registered`);
  members.set(op, program);
}

/** Lets reductions of `op` over trailing axes share a kernel with their neighbours (their rows one after another). */
export function registerReduceMember(
  op: string,
  program: (ctx: KernelContext) => ReduceMember | undefined,
): void {
  if (reduceMembers.has(op)) throw new Error(`a group-kernel reduction for op '${op}' is already registered`);
  reduceMembers.set(op, program);
}

/** A kernel over several nodes: `members` in graph order, dispatched at the last one's position. */
export interface KernelGroup {
  readonly members: readonly Node[];
  /** Member value -> the param whose buffer it is written into, in place. */
  readonly inPlace: ReadonlyMap<number, number>;
  /** Member values given a buffer (read outside the group, or graph outputs). */
  readonly stored: ReadonlySet<number>;
  /** The group's one dispatch step (bindings name values: `{ kind: 'value' }`). */
  readonly plan: KernelPlan;
}

/**
 * Members per group at most: a long chain of members that share their inputs needs no new
 * binding, but every member is code in the one shader (size and compile time).
 */
export const MAX_MEMBERS = 64;

/** Dispatching nodes that read no member a run may pass over (they run before the group). */
export const LOOK_PAST = 2;

export interface GroupOptions {
  /** Storage buffers one kernel may bind (maxStorageBuffersPerShaderStage). */
  readonly maxBindings: number;
}

interface Candidate {
  readonly node: Node;
  readonly pos: number;
  /** The member's elementwise program (a reduction's: of the tensor it reduces). */
  readonly program: MapMember;
  /** A reduction: every member of its group is one, each one row of the kernel. */
  readonly reduce?: ReduceMember;
  readonly software: boolean;
}

/** What a group binds: value ids in order, written or not, and where each member reads. */
interface Layout {
  readonly slots: { id: number; write: boolean }[];
  readonly inPlace: Map<number, number>;
  readonly stored: Set<number>;
}

/**
 * Groups of elementwise nodes and of reductions, given each node's own plan (`plans[pos]`:
 * 'source' and 'alias' dispatch nothing). Groups of one are not returned.
 */
export function findGroups(
  graph: Graph,
  plans: readonly (KernelPlan | 'alias' | 'source')[],
  ctxOf: (node: Node) => KernelContext,
  opts: GroupOptions,
): KernelGroup[] {
  const readers = new Map<number, number[]>();
  graph.nodes.forEach((n, pos) => {
    for (const i of new Set(n.inputs)) {
      const r = readers.get(i);
      if (r) r.push(pos);
      else readers.set(i, [pos]);
    }
  });
  const outputCount = new Map<number, number>();
  for (const o of graph.outputs) outputCount.set(o.id, (outputCount.get(o.id) ?? 0) + 1);
  const paramByName = new Map(graph.params().map((p) => [String(p.attrs.name), p.id]));
  // Value -> the param it is assigned to, where in-place could apply at all.
  const paramOf = new Map<number, number>();
  for (const o of graph.outputs) {
    if (!o.name.startsWith(ASSIGN_PREFIX)) continue;
    const p = paramByName.get(o.name.slice(ASSIGN_PREFIX.length));
    if (p === undefined || p === o.id || outputCount.has(p)) continue;
    if (outputCount.get(o.id) !== 1) continue;
    paramOf.set(o.id, p);
  }

  const layout = (group: readonly Candidate[]): Layout | undefined => {
    const ids = new Map(group.map((c, k) => [c.node.id, k]));
    if (group[0].reduce) return reduceLayout(group, ids, opts.maxBindings);
    const last = group[group.length - 1].pos;
    const same = (c: Candidate, k: number) => c.program.bcast[k] === 'same';
    // A param is written in place when its new value is a member's and every read of it is
    // a member's at its own element or comes before the group's dispatch.
    const inPlace = new Map<number, number>();
    for (const c of group) {
      const v = c.node.id;
      const p = paramOf.get(v);
      if (p === undefined) continue;
      const ok = (readers.get(p) ?? []).every((r) => {
        // A view of the param would be read through after the write: never in place.
        if (r > last || plans[r] === 'alias') return false;
        const k = ids.get(graph.nodes[r].id);
        if (k === undefined) return true;
        const reader = group[k];
        return reader.node.inputs.every((x, j) => x !== p || same(reader, j));
      });
      if (ok && numel(graph.node(p).type.shape) === numel(graph.node(v).type.shape)) inPlace.set(v, p);
    }
    const paramSlot = new Map([...inPlace].map(([v, p]) => [p, v]));
    const slots: { id: number; write: boolean }[] = [];
    const slotOf = new Map<number, number>();
    const use = (id: number, write: boolean) => {
      const s = slotOf.get(id);
      if (s !== undefined) {
        if (write) slots[s].write = true;
        return;
      }
      slotOf.set(id, slots.length);
      slots.push({ id, write });
    };
    const stored = new Set<number>();
    for (const c of group) {
      for (const [j, x] of c.node.inputs.entries()) {
        if (ids.has(x)) {
          // An earlier member's value: from a register, so only at this element.
          if (!same(c, j)) return undefined;
          continue;
        }
        const v = paramSlot.get(x);
        use(v ?? x, v !== undefined);
      }
      const id = c.node.id;
      const outside = (readers.get(id) ?? []).some((r) => !ids.has(graph.nodes[r].id));
      if (outside || outputCount.has(id)) {
        stored.add(id);
        use(id, true);
      }
    }
    return slots.length <= opts.maxBindings ? { slots, inPlace, stored } : undefined;
  };

  const groups: KernelGroup[] = [];
  // One open run per kind (maps; sums and means; maxima): a node of one kind is passed over
  // by the others' runs.
  interface Run {
    members: Candidate[];
    ids: Set<number>;
    /** Values the members read from outside the run. */
    reads: Set<number>;
    passed: number;
  }
  // Whether `c` may join `run`: at most every read and every member bound is within the
  // limit (no layout needed), else the exact layout decides (registers, values written in place).
  const fits = (run: Run, c: Candidate): boolean => {
    if (run.members.length >= MAX_MEMBERS) return false;
    let extra = 0;
    for (const [j, x] of c.node.inputs.entries()) {
      if (run.ids.has(x)) {
        if (c.reduce || c.program.bcast[j] !== 'same') return false;
      } else if (!run.reads.has(x)) extra++;
    }
    if (run.reads.size + extra + run.members.length + 1 <= opts.maxBindings) return true;
    return layout([...run.members, c]) !== undefined;
  };
  const open = new Map<string, Run>();
  const close = (kind: string) => {
    const run = open.get(kind);
    open.delete(kind);
    if (!run || run.members.length < 2) return;
    const l = layout(run.members) as Layout;
    groups.push({
      members: run.members.map((c) => c.node),
      inPlace: l.inPlace,
      stored: l.stored,
      plan: run.members[0].reduce ? reduceGroupPlan(run.members, l) : groupPlan(run.members, l),
    });
  };
  graph.nodes.forEach((node, pos) => {
    const plan = plans[pos];
    const dispatches = plan !== 'source' && plan !== 'alias';
    const c = dispatches ? candidate(node, pos, ctxOf) : undefined;
    const kind = c && combineOf(c);
    for (const [k, run] of open) {
      // A reader of a member's value (a view of it too) ends the run, unless it joins it
      // (layout decides: a register at its own element); so does the LOOK_PAST + 1st
      // dispatching node in a row that does not join it.
      if (k === kind) continue;
      if (node.inputs.some((i) => run.ids.has(i)) || (dispatches && ++run.passed > LOOK_PAST)) close(k);
    }
    if (!c || !kind) return;
    const run = open.get(kind);
    const reads = c.node.inputs.filter((x) => !run?.ids.has(x));
    // A member must fit alone (its own kernel binds as many).
    if (run && fits(run, c)) {
      run.members.push(c);
      run.ids.add(node.id);
      for (const x of reads) run.reads.add(x);
      run.passed = 0;
      return;
    }
    close(kind);
    open.set(kind, { members: [c], ids: new Set([node.id]), reads: new Set(c.node.inputs), passed: 0 });
  });
  for (const k of [...open.keys()]) close(k);
  return groups;
}

/** A node as a group member: an f32 elementwise program or a reduction over trailing axes. */
function candidate(node: Node, pos: number, ctxOf: (node: Node) => KernelContext): Candidate | undefined {
  if (node.type.dtype !== 'f32') return undefined;
  const ctx = ctxOf(node);
  const program = (members.get(node.op) ?? elementwiseMember)(ctx);
  if (program) return { node, pos, program, software: ctx.software };
  const reduce = (reduceMembers.get(node.op) ?? trailingReduceMember)(ctx);
  return reduce ? { node, pos, program: reduce.program, reduce, software: ctx.software } : undefined;
}

/** How a group combines: 'map', or the reduction's combining op (sum and mean add). */
const combineOf = (c: Candidate) => (c.reduce ? (c.reduce.kind === 'max' ? 'max' : 'sum') : 'map');

/** A reduction group binds each member's inputs and its output; no member reads another. */
function reduceLayout(
  group: readonly Candidate[],
  ids: ReadonlyMap<number, number>,
  maxBindings: number,
): Layout | undefined {
  const slots: { id: number; write: boolean }[] = [];
  const seen = new Set<number>();
  for (const c of group) {
    for (const x of c.node.inputs) {
      if (ids.has(x)) return undefined;
      if (!seen.has(x)) slots.push({ id: x, write: false });
      seen.add(x);
    }
    slots.push({ id: c.node.id, write: true });
  }
  const stored = new Set(group.map((c) => c.node.id));
  return slots.length <= maxBindings ? { slots, inPlace: new Map(), stored } : undefined;
}

/**
 * The members' rows one after another: an invocation per row where every member's own
 * kernel would loop in one invocation, else a workgroup per row (strided lanes, a tree in
 * workgroup memory), so each value is summed in the order its own kernel sums it.
 */
function reduceGroupPlan(group: readonly Candidate[], l: Layout): KernelPlan {
  const u = new Uniforms();
  const slotOf = new Map(l.slots.map((s, k) => [s.id, k]));
  const reductions = group.map((c) => c.reduce as ReduceMember);
  const thread = group.every((c, k) => rowMode(c, reductions[k].rows, reductions[k].count).kind === 'thread');
  const mode = thread ? THREAD_ROWS : WORKGROUP_ROWS;
  const max = reductions[0].kind === 'max';
  const combine = max ? fmax : fadd;
  const helpers = new Set<string>();
  let fns = '';
  const memberDesc: string[] = [];
  group.forEach((c, k) => {
    helpers.add(c.program.helpers);
    const from = c.node.inputs.map((x) => `s${slotOf.get(x)}`);
    fns += `fn pre${k}(i: u32) -> f32 {\n${c.program.body(u, (j, index) => `ld_${from[j]}(${index})`)}\n}\n`;
    memberDesc.push(`${reductions[k].kind}:${c.program.desc}<${from.join(',')}>`);
  });
  const counts = reductions.map((r) => u.u32(r.count));
  // Member k's rows are the group's rows [ends[k-1], ends[k]).
  let total = 0;
  const ends = reductions.map((r) => u.u32((total += r.rows)));
  const start = (k: number) => (k === 0 ? '0u' : ends[k - 1]);
  const branches = (body: (k: number) => string) =>
    group
      .map(
        (_, k) =>
          `${k ? ' else ' : '  '}if (g < ${ends[k]}) {\n    let row = g - ${start(k)};\n${body(k)}  }`,
      )
      .join('') + '\n';
  let code = header(l, u, helpers) + fns;
  if (!thread) code += `var<workgroup> red: array<f32, ${ROW_WG}>;\n`;
  code += `${entry([ROW_WG])}  let g = ${thread ? `wid * ${ROW_WG}u + lid` : 'wid'};
  if (g >= ${ends[ends.length - 1]}) { return; }
  let lane = ${thread ? '0u' : 'lid'};
  var acc = ${max ? 'inf_f32(-1.0)' : '0.0'};
`;
  code += branches(
    (k) =>
      `    for (var e = lane; e < ${counts[k]}; e = e + ${mode.lanes}u) { acc = ${combine('acc', `pre${k}(row * ${counts[k]} + e)`)}; }\n`,
  );
  code += `${mode.reduce('total', 'acc', combine)}  if (lane == 0u) {\n`;
  code += branches((k) => {
    const fin = reductions[k].kind === 'mean' ? `total / f32(${counts[k]})` : 'total';
    return `    ${storeStmt(`s${slotOf.get(group[k].node.id)}`, 'f32', 'row', fin)}\n`;
  });
  code += '  }\n}\n';
  return groupStep(
    l,
    { op: 'reduce_group', workgroup: [ROW_WG], rows: mode.kind, members: memberDesc },
    code,
    u,
    thread ? Math.ceil(total / ROW_WG) : total,
  );
}

/** The WGSL and bindings of a group's one dispatch. */
function groupPlan(group: readonly Candidate[], l: Layout): KernelPlan {
  const u = new Uniforms();
  const ids = new Map(group.map((c, k) => [c.node.id, k]));
  const slotOf = new Map(l.slots.map((s, k) => [s.id, k]));
  const paramSlot = new Map([...l.inPlace].map(([v, p]) => [p, slotOf.get(v) as number]));
  const sizes = group.map((c) => numel(c.node.type.shape));
  const max = Math.max(...sizes);
  const helpers = new Set<string>();
  let fns = '';
  const memberDesc: string[] = [];
  // Each member is a function of its element and the registers of the members it reads.
  const argsOf = group.map((c, k) => {
    helpers.add(c.program.helpers);
    const args: string[] = [];
    const from = c.node.inputs.map((x) => {
      const m = ids.get(x);
      if (m !== undefined) {
        args.push(`r${m}`);
        return `a${args.length - 1}`;
      }
      return `s${paramSlot.get(x) ?? slotOf.get(x)}`;
    });
    const read = (j: number, index: string) => {
      const f = from[j];
      if (f.startsWith('a')) return f; // a register: always at the member's own element
      return `ld_${f}(${index})`;
    };
    const body = c.program.body(u, read);
    const params = args.map((_, j) => `, a${j}: f32`).join('');
    fns += `fn g${k}(i: u32${params}) -> f32 {\n${body}\n}\n`;
    memberDesc.push(`${c.program.desc}<${from.join(',')}>${l.stored.has(c.node.id) ? '' : '!'}`);
    return args;
  });
  const n = sizes.map((s) => u.u32(s));
  const maxU = u.u32(max);
  let code = header(l, u, helpers) + fns + entry([MAP_WORKGROUP]);
  code += `  for (var rep = 0u; rep < ${MAP_PER_INVOCATION}u; rep++) {
  let i = (wid * ${MAP_PER_INVOCATION}u + rep) * ${MAP_WORKGROUP}u + lid;
  if (i >= ${maxU}) { return; }\n`;
  // Every member computes (loading old values) before any store: params written in place.
  argsOf.forEach((args, k) => {
    code += `  var r${k} = 0.0;\n  if (i < ${n[k]}) { r${k} = g${k}(i${args.map((a) => `, ${a}`).join('')}); }\n`;
  });
  group.forEach((c, k) => {
    if (!l.stored.has(c.node.id)) return;
    const s = slotOf.get(c.node.id) as number;
    code += `  if (i < ${n[k]}) { ${storeStmt(`s${s}`, 'f32', 'i', `r${k}`)} }\n`;
  });
  code += '  }\n}\n';
  return groupStep(
    l,
    { op: 'fused_group', workgroup: [MAP_WORKGROUP], members: memberDesc },
    code,
    u,
    Math.ceil(max / (MAP_WORKGROUP * MAP_PER_INVOCATION)),
  );
}

/**
 * A group kernel's declarations: the uniforms (every one allocated by now), slot k as
 * `s<k>` with its loader `ld_s<k>`, and the members' helpers, each once.
 */
function header(l: Layout, u: Uniforms, helpers: ReadonlySet<string>): string {
  let code = PRELUDE + u.decl();
  l.slots.forEach((s, k) => {
    code += declStorage(`s${k}`, 'f32', k + 1, s.write) + loadFn(`s${k}`, 'f32');
  });
  return code + [...helpers].join('');
}

/** A group kernel's one step: every binding a value of the layout, all f32. */
function groupStep(
  l: Layout,
  desc: {
    readonly op: string;
    readonly workgroup: readonly number[];
    readonly [k: string]: string | readonly (string | number)[];
  },
  code: string,
  u: Uniforms,
  workgroups: number,
): KernelPlan {
  const full: ProgramDesc = { ...desc, dtypes: l.slots.map(() => 'f32' as const) };
  return {
    steps: [
      {
        desc: full,
        code,
        uniforms: u,
        bindings: l.slots.map((s) => ({ ref: { kind: 'value', id: s.id }, write: s.write })),
        workgroups,
      },
    ],
  };
}
