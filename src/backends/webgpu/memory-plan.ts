// The WebGPU memory plan of a graph, computed without a device: which buffer holds every
// value, when a pooled buffer is reused, the paged params' copies, the in-place assigns,
// and the bytes by kind. buildSchedule (schedule.ts) only follows it, creating one GPU
// buffer per planned buffer; `peftc plan` reports it. So the plan's bytes are the bytes
// the executor allocates, by construction.
//
// Pooling: a walk in graph order gives every intermediate (and scratch, and paged param
// copy) a lifetime, from the node that makes it to its last reader (graph outputs live to
// the end). Then, the whole schedule being known, pooled values are packed into shared
// buffers offline, largest first, each into the smallest buffer whose tenants' lifetimes it
// does not overlap, else a new buffer of its size (rounded up to 256): TFLite's "greedy by
// size" for shared objects. An online pool (take a free buffer that fits, else grow) kept
// buffers made for short-lived big values idle for the rest of the step: at 7B shapes the
// pool was 4x the live bytes at its peak. Sources (params, inputs, consts) own their
// buffers; a view ('alias') shares its input's.
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { ASSIGN_PREFIX } from '../backend.ts';
import { gpuByteSize } from './dtypes.ts';
import type { KernelGroup } from './kernel-groups.ts';
import { describeNode, type KernelTarget, type NodePlan, planKernels } from './kernel-plan.ts';
import { type ScratchTexture, textureBytes } from './program.ts';

export { describeNode, KernelPlanError, type KernelTarget, type NodePlan, planNode } from './kernel-plan.ts';

/** What a planned buffer holds, for the memory report. */
export type MemoryKind =
  | 'frozen'
  | 'trainable'
  | 'optimizer'
  | 'inputs'
  | 'constants'
  | 'gradients'
  | 'activations'
  | 'workspace'
  | 'uniforms';

/** Scratch textures shared by every node: as many of each size as one node uses at once. */
class TexturePool {
  readonly all: ScratchTexture[] = [];
  /** Pool indices of each size ('WxH'). */
  private readonly bySize = new Map<string, number[]>();

  /** Pool indices for one node's textures (its i-th texture of a size is the pool's i-th of that size). */
  take(wanted: readonly ScratchTexture[]): number[] {
    const used = new Map<string, number>();
    return wanted.map((t) => {
      const key = `${t.width}x${t.height}`;
      const nth = used.get(key) ?? 0;
      used.set(key, nth + 1);
      const same = this.bySize.get(key) ?? [];
      if (nth === same.length) {
        same.push(this.all.length);
        this.all.push({ width: t.width, height: t.height });
        this.bySize.set(key, same);
      }
      return same[nth];
    });
  }

  bytes(): number {
    return this.all.reduce((s, t) => s + textureBytes(t), 0);
  }
}

/** One device buffer of the plan. */
export interface PlannedBuffer {
  readonly bytes: number;
  readonly label: string;
  /** Reused through the pool (intermediates, scratch, paged params) or owned by one source. */
  readonly pooled: boolean;
  /** Kind of the value it was made for (a pooled buffer's later tenants may differ). */
  readonly kind: MemoryKind;
  /** Another executable's buffer (a shared param): not allocated, not counted here. */
  readonly external?: boolean;
}

/** Where a value lives: a planned buffer (by index) and a byte offset in it (a multiple of 256). */
export interface Region {
  readonly buffer: number;
  readonly offset: number;
}

/**
 * The bytes a binding of `bytes` at `offset` covers in a buffer of `bufferBytes`: whole
 * 16-byte elements (kernels may read vec4s), never past the buffer's end.
 */
export function bindingSize(bufferBytes: number, offset: number, bytes: number): number {
  return Math.min(bufferBytes - offset, Math.ceil(bytes / 16) * 16);
}

/**
 * A copy before dispatch `at` (see schedule.ts Transfer): a paged param's value to the device
 * (`upload`) or its new value to the host (`download`), a new value into its param
 * (`assign`), or an output to the host when the run asks for it (`output`).
 */
export interface PlannedTransfer {
  readonly kind: 'upload' | 'download' | 'assign' | 'output';
  readonly at: number;
  /** The param (not for `output`). */
  readonly param?: number;
  readonly value: number;
  /** Upload: the param's pooled region; download / assign: the region holding the new value. */
  readonly buffer: Region;
  /** Assign: the param's region. */
  readonly target?: Region;
  readonly bytes: number;
}

export interface MemoryPlan {
  readonly nodes: readonly NodePlan[];
  /** The group kernel of each grouped node, by node id (kernel-groups.ts). */
  readonly groupOf: ReadonlyMap<number, KernelGroup>;
  readonly buffers: readonly PlannedBuffer[];
  /** Region of each value (aliases share one). */
  readonly valueRegion: ReadonlyMap<number, Region>;
  /** Scratch regions of each node with some. */
  readonly scratch: ReadonlyMap<number, readonly Region[]>;
  /**
   * The scratch textures the executable holds (KernelPlan.textures): one of each size per
   * texture a node's plan uses at once, shared by all nodes (a node's textures live only
   * during its own dispatches); counted as workspace.
   */
  readonly textures: readonly ScratchTexture[];
  /** Index in `textures` of each node's scratch textures, by node id. */
  readonly textureOf: ReadonlyMap<number, readonly number[]>;
  readonly transfers: readonly PlannedTransfer[];
  /** Dispatches per run (steps with work). */
  readonly dispatches: number;
  /** Bytes of the uniform buffers (one per dispatch). */
  readonly uniformBytes: number;
  /** Every buffer the executable holds: owned (rounded to 16), pooled (to 256), uniforms. */
  readonly deviceBytes: number;
  readonly pooledBytes: number;
  /**
   * deviceBytes by kind: owned buffers by what they hold; pooled bytes by what they hold at
   * the position where the most pooled bytes are live, the rest counting as workspace.
   */
  readonly byKind: Readonly<Record<MemoryKind, number>>;
}

export interface MemoryPlanOptions {
  /** Params held on the host (paging.ts): pooled on the device only around their update. */
  readonly paged?: ReadonlySet<number>;
  /**
   * Write each param's new value into its buffer once the old value's last reader has run,
   * and free the new value's pooled buffer then, instead of copying every `assign:` value at
   * the end of the run (which keeps them all live). Pays off with per-layer updates
   * (passes/optimizer/per-layer.ts); each copy splits the compute pass.
   */
  readonly inPlaceAssigns?: boolean;
  /**
   * Params whose buffers another executable holds (CompileOptions.share): planned as owned
   * buffers of their own, marked external, counted in no byte total of this plan.
   */
  readonly external?: ReadonlySet<number>;
  /** Values that are gradients (for the report; default none). */
  readonly gradients?: ReadonlySet<number>;
  /**
   * Keep every output live to the end of the run instead of copying it out as it is made
   * (a runner that reads its outputs after the last dispatch: the webgpu-ts package).
   */
  readonly outputsAtEnd?: boolean;
  /** Merge runs of elementwise nodes into kernels over several nodes (default true). */
  readonly groups?: boolean;
}

/** Param node id by name (one scan: the plan asks once per `assign:` output). */
function paramIds(graph: Graph): ReadonlyMap<string, number> {
  return new Map(graph.params().map((p) => [String(p.attrs.name), p.id]));
}

/** Device bytes of a node's value. */
const valueBytes = (n: Node) => gpuByteSize(n.type.dtype, numel(n.type.shape));

/** Owned buffers are multiples of 16 bytes (a vec4 binding needs a whole element), at least 16. */
export const ownedSize = (bytes: number) => Math.max(16, Math.ceil(bytes / 16) * 16);

function sourceKind(n: Node): MemoryKind {
  if (n.op === 'input') return 'inputs';
  if (n.op === 'const') return 'constants';
  const role = n.attrs.role;
  return role === 'trainable' ? 'trainable' : role === 'state' ? 'optimizer' : 'frozen';
}

/**
 * The `assign:` outputs that can be written in place: value id -> [param id, position after
 * which to copy]. The value must be that output only, the param neither paged, an output,
 * nor the value itself.
 */
function inPlaceCandidates(
  graph: Graph,
  paramIdByName: ReadonlyMap<string, number>,
  paged: ReadonlySet<number>,
  lastReader: ReadonlyMap<number, number>,
  at: (id: number) => number,
): Map<number, [number, number]> {
  const outputsOf = new Map<number, number>();
  for (const o of graph.outputs) outputsOf.set(o.id, (outputsOf.get(o.id) ?? 0) + 1);
  const out = new Map<number, [number, number]>();
  for (const o of graph.outputs) {
    if (!o.name.startsWith(ASSIGN_PREFIX)) continue;
    const p = paramIdByName.get(o.name.slice(ASSIGN_PREFIX.length));
    if (p === undefined || p === o.id || paged.has(p) || outputsOf.has(p) || outputsOf.get(o.id) !== 1)
      continue;
    out.set(o.id, [p, Math.max(at(o.id), lastReader.get(p) ?? -1)]);
  }
  return out;
}

export function planMemory(graph: Graph, target: KernelTarget, opts: MemoryPlanOptions = {}): MemoryPlan {
  const paged = opts.paged ?? new Set<number>();
  const gradients = opts.gradients ?? new Set<number>();
  const paramIdByName = paramIds(graph);
  // A paged param's new value is copied to the host right after it is computed (`downloads`);
  // unless it is also another output, its buffer then lives only as long as its readers.
  const downloads = new Map<number, number[]>();
  const assigned = new Set<number>();
  for (const o of graph.outputs) {
    if (!o.name.startsWith(ASSIGN_PREFIX)) continue;
    const p = paramIdByName.get(o.name.slice(ASSIGN_PREFIX.length));
    if (p !== undefined && paged.has(p)) {
      if (p !== o.id) downloads.set(o.id, [...(downloads.get(o.id) ?? []), p]);
    } else assigned.add(o.id);
  }
  // A paged param's readers may be grouped: its upload is planned before the group's
  // dispatch, its new value (written in place into the uploaded copy) downloaded after it.
  const kernels = planKernels(graph, target, { groups: opts.groups });
  // A group member runs where its group dispatches: at its last member.
  const leaderPos = (g: KernelGroup) => graph.position(g.members[g.members.length - 1].id);
  const at = (id: number) => {
    const g = kernels.groupOf.get(id);
    return g ? leaderPos(g) : graph.position(id);
  };
  // Last reader of each value; graph outputs live to the end.
  const lastUse = new Map<number, number>();
  const lastReader = new Map<number, number>();
  graph.nodes.forEach((n) => {
    const pos = at(n.id);
    for (const i of n.inputs) {
      lastUse.set(i, Math.max(pos, lastUse.get(i) ?? -1));
      lastReader.set(i, Math.max(pos, lastReader.get(i) ?? -1));
    }
  });
  for (const id of assigned) lastUse.set(id, Number.POSITIVE_INFINITY);
  // Other outputs a run may return are copied out right after they are made (when the run
  // asks for them), so they need not hold device memory to the end: a GaLore refresh probe's
  // full-rank gradients, say, would otherwise all be live at once.
  const copiedOut = new Set<number>();
  for (const o of graph.outputs) {
    if (o.name.startsWith(ASSIGN_PREFIX) || assigned.has(o.id)) continue;
    if (opts.outputsAtEnd) {
      lastUse.set(o.id, Number.POSITIVE_INFINITY);
      continue;
    }
    const n = graph.node(o.id);
    if (n.op === 'param' || n.op === 'input' || n.op === 'const' || paged.has(o.id)) continue;
    copiedOut.add(o.id);
  }
  for (const id of [...downloads.keys(), ...copiedOut]) if (!lastUse.has(id)) lastUse.set(id, at(id));
  // In-place assigns: copied after position `at`, freed after max(at, last reader). Values a
  // group kernel writes into their param need no copy.
  const inPlace = opts.inPlaceAssigns
    ? inPlaceCandidates(graph, paramIdByName, paged, lastReader, at)
    : new Map<number, [number, number]>();
  for (const g of new Set(kernels.groupOf.values())) for (const v of g.inPlace.keys()) inPlace.delete(v);
  const copyAt = new Map<number, number[]>();
  const releaseAt = new Map<number, number[]>();
  for (const [v, [, at]] of inPlace) {
    copyAt.set(at, [...(copyAt.get(at) ?? []), v]);
    const free = Math.max(at, lastReader.get(v) ?? -1);
    releaseAt.set(free, [...(releaseAt.get(free) ?? []), v]);
  }

  // Slots: one per owned buffer or pooled request, with the lifetime of a pooled one in node
  // positions [start, end] (inclusive: a node's inputs and output overlap at its position).
  const slots: Slot[] = [];
  let pos = 0;
  const acquire = (bytes: number, label: string, kind: MemoryKind): number => {
    slots.push({ bytes: Math.ceil(bytes / 256) * 256, label, pooled: true, kind, start: pos, end: Infinity });
    return slots.length - 1;
  };
  const valueBuffer = new Map<number, number>();
  const refs = new Map<number, number>();
  const bind = (id: number, b: number) => {
    valueBuffer.set(id, b);
    refs.set(b, (refs.get(b) ?? 0) + 1);
  };
  const unref = (id: number) => {
    const b = valueBuffer.get(id) as number;
    const left = (refs.get(b) ?? 0) - 1;
    refs.set(b, left);
    if (left === 0 && slots[b].pooled) slots[b].end = pos;
  };
  const valueKind = (n: Node): MemoryKind =>
    n.op === 'param' ? sourceKind(n) : gradients.has(n.id) ? 'gradients' : 'activations';
  // Pooled slots one node's dispatches bind writable (output, scratch) and read-only (inputs,
  // and what an earlier step wrote): WebGPU refuses both usages of one buffer in a dispatch,
  // so these never share a buffer.
  const conflicts = new Map<number, Set<number>>();
  const conflict = (a: number, b: number) => {
    if (a === b || !slots[a].pooled || !slots[b].pooled) return;
    for (const [x, y] of [
      [a, b],
      [b, a],
    ]) {
      const set = conflicts.get(x);
      if (set) set.add(y);
      else conflicts.set(x, new Set([y]));
    }
  };

  const nodes: NodePlan[] = [];
  const scratch = new Map<number, number[]>();
  const textures = new TexturePool();
  const textureOf = new Map<number, number[]>();
  // By slot until the slots are packed into regions (below).
  const transfers: (Omit<PlannedTransfer, 'buffer' | 'target'> & { buffer: number; target?: number })[] = [];
  let dispatches = 0;
  let uniformBytes = 0;
  graph.nodes.forEach((node, position) => {
    pos = position;
    const plan = kernels.nodes[pos];
    nodes.push(plan);
    // A group's members run at its last member: nothing happens at the others' positions.
    if (plan === 'member') return;
    const group = kernels.groupOf.get(node.id);
    const unit = group ? group.members : [node];
    const unitInputs = new Set(unit.flatMap((m) => m.inputs));
    // Paged params get a pooled buffer at their first reader, filled by an upload just before.
    for (const i of unitInputs) {
      if (!paged.has(i) || valueBuffer.has(i)) continue;
      const src = graph.node(i);
      const pbytes = valueBytes(src);
      bind(i, acquire(pbytes, describeNode(src), sourceKind(src)));
      transfers.push({
        kind: 'upload',
        at: dispatches,
        param: i,
        value: i,
        buffer: valueBuffer.get(i)!,
        bytes: pbytes,
      });
    }
    if (paged.has(node.id)) {
      // Bound at its first reader (above).
    } else if (plan === 'source') {
      slots.push({
        bytes: ownedSize(valueBytes(node)),
        label: describeNode(node),
        pooled: false,
        kind: sourceKind(node),
        start: 0,
        end: Infinity,
        ...(opts.external?.has(node.id) ? { external: true } : {}),
      });
      bind(node.id, slots.length - 1);
    } else if (plan === 'alias') {
      bind(node.id, valueBuffer.get(node.inputs[0]) as number);
    } else {
      // The values the kernel writes: each stored member's (one written into its param
      // shares the param's buffer), and scratch.
      const written: number[] = [];
      for (const m of unit) {
        if (group && !group.stored.has(m.id)) continue;
        const param = group?.inPlace.get(m.id);
        if (param !== undefined) {
          // Into the param's buffer; a paged param's is pooled, and written (conflicts below).
          const buffer = valueBuffer.get(param) as number;
          bind(m.id, buffer);
          if (slots[buffer].pooled) written.push(buffer);
        } else {
          bind(m.id, acquire(valueBytes(m), describeNode(m), valueKind(m)));
          written.push(valueBuffer.get(m.id) as number);
        }
      }
      const s = (plan.scratch ?? []).map((b) => {
        const i = acquire(b, `${describeNode(node)} scratch`, 'workspace');
        slots[i].end = pos;
        return i;
      });
      if (s.length) scratch.set(node.id, s);
      written.push(...s);
      if (plan.textures?.length) textureOf.set(node.id, textures.take(plan.textures));
      // A later step may read what an earlier one wrote (scratch, the output): the written
      // slots are apart from each other too.
      for (const w of written) {
        for (const i of unitInputs) if (valueBuffer.has(i)) conflict(w, valueBuffer.get(i) as number);
        for (const v of written) conflict(w, v);
      }
      for (const step of plan.steps) {
        if (step.workgroups === 0) continue;
        dispatches++;
        uniformBytes += step.uniforms.bytes().byteLength;
      }
    }
    for (const m of unit) {
      for (const p of downloads.get(m.id) ?? []) {
        transfers.push({
          kind: 'download',
          at: dispatches,
          param: p,
          value: m.id,
          buffer: valueBuffer.get(m.id)!,
          bytes: valueBytes(graph.node(p)),
        });
      }
      if (copiedOut.has(m.id)) {
        transfers.push({
          kind: 'output',
          at: dispatches,
          value: m.id,
          buffer: valueBuffer.get(m.id)!,
          bytes: valueBytes(m),
        });
      }
    }
    for (const v of copyAt.get(pos) ?? []) {
      const [p] = inPlace.get(v) as [number, number];
      const buffer = valueBuffer.get(v) as number;
      // Only a pooled value is copied early; one held in a source's buffer waits for the end.
      if (!slots[buffer].pooled) {
        inPlace.delete(v);
        continue;
      }
      const tb = valueBytes(graph.node(p));
      transfers.push({
        kind: 'assign',
        at: dispatches,
        param: p,
        value: v,
        buffer,
        target: valueBuffer.get(p),
        bytes: tb,
      });
    }
    // Inputs whose last reader this was go back to the pool (after the output was taken);
    // a group's registers (members read only by members) never had a buffer.
    for (const i of unitInputs) if (lastUse.get(i) === pos && !inPlace.has(i) && valueBuffer.has(i)) unref(i);
    for (const v of releaseAt.get(pos) ?? []) if (inPlace.has(v)) unref(v);
    for (const m of unit)
      if (
        !paged.has(m.id) &&
        valueBuffer.has(m.id) &&
        (!lastUse.has(m.id) || ((downloads.has(m.id) || copiedOut.has(m.id)) && lastUse.get(m.id) === pos))
      )
        unref(m.id);
  });
  const { buffers, regionOf, byKind } = packSlots(slots, uniformBytes, conflicts);
  byKind.workspace += textures.bytes();
  const valueRegion = new Map<number, Region>();
  for (const [id, b] of valueBuffer) valueRegion.set(id, regionOf[b]);
  const scratchRegions = new Map<number, Region[]>();
  for (const [id, bs] of scratch)
    scratchRegions.set(
      id,
      bs.map((b) => regionOf[b]),
    );
  const placed = transfers.map((t) => ({
    ...t,
    buffer: regionOf[t.buffer],
    target: t.target === undefined ? undefined : regionOf[t.target],
  }));
  let pooledBytes = 0;
  for (const b of buffers) if (b.pooled) pooledBytes += b.bytes;
  const deviceBytes = Object.values(byKind).reduce((s, x) => s + x, 0);
  return {
    nodes,
    groupOf: kernels.groupOf,
    buffers,
    valueRegion,
    scratch: scratchRegions,
    textures: textures.all,
    textureOf,
    transfers: placed,
    dispatches,
    uniformBytes,
    deviceBytes,
    pooledBytes,
    byKind,
  };
}

/** A buffer request of the walk: owned by a source, or pooled with a lifetime. */
export interface Slot {
  readonly bytes: number;
  readonly label: string;
  readonly pooled: boolean;
  readonly kind: MemoryKind;
  /** An owned slot whose buffer another executable holds. */
  readonly external?: boolean;
  /** Node positions the value is live at, inclusive (pooled slots only). */
  readonly start: number;
  end: number;
}

/** Pooled slots grouped into buffers, each slot at an offset; tenants overlapping in time have disjoint ranges. */
type Packing = { size: number; slots: number[]; offsets: number[] }[];

const overlaps = (a: Slot, b: Slot) => a.start <= b.end && b.start <= a.end;

/**
 * Greedy by size with offsets: largest first, each at the lowest offset of the first buffer
 * where no tenant live at the same time occupies its bytes and none is bound with it in one
 * dispatch (a read and a write of one buffer: WebGPU refuses), else in a new buffer.
 */
function bySizeWithOffsets(
  slots: readonly Slot[],
  pooled: readonly number[],
  conflicts: ReadonlyMap<number, ReadonlySet<number>>,
): Packing {
  const order = [...pooled].sort(
    (a, b) => slots[b].bytes - slots[a].bytes || slots[a].start - slots[b].start,
  );
  const groups: Packing = [];
  const groupOf = new Map<number, number>();
  for (const i of order) {
    const s = slots[i];
    const barred = new Set<number>();
    for (const c of conflicts.get(i) ?? []) {
      const g = groupOf.get(c);
      if (g !== undefined) barred.add(g);
    }
    let placed = false;
    for (let g = 0; g < groups.length && !placed; g++) {
      if (barred.has(g)) continue;
      const { size, slots: tenants, offsets } = groups[g];
      const busy: [number, number][] = [];
      tenants.forEach((t, k) => {
        if (overlaps(slots[t], s)) busy.push([offsets[k], offsets[k] + slots[t].bytes]);
      });
      busy.sort((a, b) => a[0] - b[0]);
      let at = 0;
      for (const [lo, hi] of busy) {
        if (lo - at >= s.bytes) break;
        at = Math.max(at, hi);
      }
      if (at + s.bytes > size) continue;
      tenants.push(i);
      offsets.push(at);
      groupOf.set(i, g);
      placed = true;
    }
    if (!placed) {
      groups.push({ size: s.bytes, slots: [i], offsets: [0] });
      groupOf.set(i, groups.length - 1);
    }
  }
  return groups;
}

/**
 * Greedy by size, one tenant at a time per buffer: largest first, each into the buffer none
 * of whose tenants it overlaps and that leaves the shortest idle time around it (then the
 * smallest), else a new buffer.
 */
function greedyBySize(slots: readonly Slot[], pooled: readonly number[]): Packing {
  const order = [...pooled].sort(
    (a, b) => slots[b].bytes - slots[a].bytes || slots[a].start - slots[b].start,
  );
  const groups: Packing = [];
  // Tenants of each group sorted by start (disjoint, so also by end).
  for (const i of order) {
    const s = slots[i];
    let best = -1;
    let bestGap = Infinity;
    for (let g = 0; g < groups.length; g++) {
      const list = groups[g].slots;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (slots[list[mid]].start < s.start) lo = mid + 1;
        else hi = mid;
      }
      const next = lo < list.length ? slots[list[lo]] : undefined;
      const prev = lo > 0 ? slots[list[lo - 1]] : undefined;
      if ((next && overlaps(next, s)) || (prev && overlaps(prev, s))) continue;
      const gap = (prev ? s.start - prev.end : s.start) + (next ? next.start - s.end : 0);
      if (gap < bestGap || (gap === bestGap && groups[g].size < groups[best].size)) {
        best = g;
        bestGap = gap;
      }
    }
    if (best < 0) {
      groups.push({ size: s.bytes, slots: [i], offsets: [0] });
      continue;
    }
    const list = groups[best].slots;
    let at = list.findIndex((t) => slots[t].start > s.start);
    if (at < 0) at = list.length;
    list.splice(at, 0, i);
    groups[best].offsets.push(0);
  }
  return groups;
}

/** In order: each value takes the smallest idle buffer that fits, else a new one (an online pool). */
function inOrder(slots: readonly Slot[], pooled: readonly number[]): Packing {
  const order = [...pooled].sort((a, b) => slots[a].start - slots[b].start || a - b);
  const groups: Packing = [];
  const busyUntil: number[] = [];
  for (const i of order) {
    const s = slots[i];
    let best = -1;
    for (let g = 0; g < groups.length; g++)
      if (
        groups[g].size >= s.bytes &&
        busyUntil[g] < s.start &&
        (best < 0 || groups[g].size < groups[best].size)
      )
        best = g;
    if (best < 0) {
      groups.push({ size: s.bytes, slots: [i], offsets: [0] });
      busyUntil.push(s.end);
    } else {
      groups[best].slots.push(i);
      groups[best].offsets.push(0);
      busyUntil[best] = s.end;
    }
  }
  return groups;
}

const packedBytes = (p: Packing) => p.reduce((a, g) => a + g.size, 0);

/**
 * Packs pooled slots into shared buffers (the smallest of three packings: none wins on every
 * schedule) and owned slots into their own buffers. Bytes by kind: owned buffers by what
 * they hold; pooled bytes by what is live at the position where the most pooled bytes are,
 * the rest of the pooled buffers counting as workspace.
 */
export function packSlots(
  slots: readonly Slot[],
  uniformBytes: number,
  conflicts: ReadonlyMap<number, ReadonlySet<number>> = new Map(),
): { buffers: PlannedBuffer[]; regionOf: Region[]; byKind: Record<MemoryKind, number> } {
  const buffers: PlannedBuffer[] = [];
  const regionOf: Region[] = new Array(slots.length);
  const pooled: number[] = [];
  slots.forEach((s, i) => {
    if (s.pooled) pooled.push(i);
    else {
      buffers.push({ bytes: s.bytes, label: s.label, pooled: false, kind: s.kind, external: s.external });
      regionOf[i] = { buffer: buffers.length - 1, offset: 0 };
    }
  });
  const candidates = [
    bySizeWithOffsets(slots, pooled, conflicts),
    greedyBySize(slots, pooled),
    inOrder(slots, pooled),
  ];
  const groups = candidates.reduce((a, b) => (packedBytes(b) < packedBytes(a) ? b : a));
  for (const g of groups) {
    const first = slots[g.slots.reduce((a, b) => (slots[b].bytes > slots[a].bytes ? b : a))];
    buffers.push({ bytes: g.size, label: first.label, pooled: true, kind: first.kind });
    g.slots.forEach((i, k) => {
      regionOf[i] = { buffer: buffers.length - 1, offset: g.offsets[k] };
    });
  }
  // The position where the most pooled bytes are live (a sweep over starts and ends).
  const events: [number, number][] = [];
  for (const i of pooled) {
    events.push([slots[i].start, slots[i].bytes]);
    if (Number.isFinite(slots[i].end)) events.push([slots[i].end + 1, -slots[i].bytes]);
  }
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let live = 0;
  let most = 0;
  let peakAt = 0;
  for (const [t, d] of events) {
    live += d;
    if (live > most) {
      most = live;
      peakAt = t;
    }
  }
  const byKind: Record<MemoryKind, number> = {
    frozen: 0,
    trainable: 0,
    optimizer: 0,
    inputs: 0,
    constants: 0,
    gradients: 0,
    activations: 0,
    workspace: 0,
    uniforms: uniformBytes,
  };
  let pooledBytes = 0;
  for (const b of buffers) {
    if (b.pooled) pooledBytes += b.bytes;
    else if (!b.external) byKind[b.kind] += b.bytes;
  }
  for (const i of pooled)
    if (slots[i].start <= peakAt && peakAt <= slots[i].end) byKind[slots[i].kind] += slots[i].bytes;
  byKind.workspace += pooledBytes - most;
  return { buffers, regionOf, byKind };
}
