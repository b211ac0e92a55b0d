// Paged params (bitsandbytes' paged optimizers, done the WebGPU way): a paged param lives in
// host memory; each run uploads it into a pooled device buffer right before its first reader
// and copies its `assign:` value back to the host right after that value is computed, so the
// device holds a paged tensor only while its update runs and the pool reuses the space for the
// next one. Which params are paged is decided here, before scheduling (no device code here):
// - optimizer state that the graph marks paged (scope `optimizer.<param>.paged`, from the
//   `paged_adamw` / `paged_adamw8bit` optimizers, see passes/optimizer/adamw8bit.ts);
// - every state param when `pageStates` is set;
// - under `deviceBudgetBytes`, state params, largest first, until the resident params fit.
// The budget counts param storage (weights, adapters, optimizer state); the activation pool
// comes on top (the executable's `memory` reports both).
import type { Graph, Node } from '../../ir/graph.ts';
import { numel } from '../../ir/shape.ts';
import { ASSIGN_PREFIX } from '../backend.ts';
import { WebGpuError } from './device.ts';
import { gpuByteSize } from './dtypes.ts';

export interface PagingOptions {
  /** Keep every optimizer-state param (role 'state') on the host. */
  readonly pageStates?: boolean;
  /** Page state params, largest first, until the resident params take at most this many bytes. */
  readonly deviceBudgetBytes?: number;
}

export interface PagingPlan {
  /** Node ids of the paged params. */
  readonly paged: ReadonlySet<number>;
  /** Device bytes of the params that stay resident. */
  readonly residentParamBytes: number;
  /** Host bytes of the paged params. */
  readonly pagedBytes: number;
}

/** Whether the graph marks this param as paged optimizer state (see the header). */
export function markedPaged(p: Node): boolean {
  return (
    p.op === 'param' &&
    p.attrs.role === 'state' &&
    p.scope.startsWith('optimizer.') &&
    p.scope.endsWith('.paged')
  );
}

function paramBytes(p: Node): number {
  return gpuByteSize(p.type.dtype, numel(p.type.shape));
}

/** Chooses the paged params of a graph. */
export function planPaging(graph: Graph, opts: PagingOptions = {}): PagingPlan {
  const budget = opts.deviceBudgetBytes;
  if (budget !== undefined && !(Number.isFinite(budget) && budget >= 0)) {
    throw new WebGpuError(`deviceBudgetBytes must be a non-negative number of bytes, got ${budget}`);
  }
  // A param that is itself a named result must stay where the result is copied from.
  const direct = new Set(graph.outputs.filter((o) => !o.name.startsWith(ASSIGN_PREFIX)).map((o) => o.id));
  const params = graph.params();
  const pageable = params.filter((p) => p.attrs.role === 'state' && !direct.has(p.id));
  const paged = new Set<number>();
  for (const p of pageable) if (opts.pageStates || markedPaged(p)) paged.add(p.id);
  let resident = params.filter((p) => !paged.has(p.id)).reduce((s, p) => s + paramBytes(p), 0);
  if (budget !== undefined && resident > budget) {
    const candidates = pageable.filter((p) => !paged.has(p.id)).sort((a, b) => paramBytes(b) - paramBytes(a));
    for (const p of candidates) {
      if (resident <= budget) break;
      paged.add(p.id);
      resident -= paramBytes(p);
    }
    if (resident > budget) {
      throw new WebGpuError(
        `the params that must stay on the device (weights and adapters) take ${resident} bytes, over the device budget of ${budget} bytes even with all ${paged.size} optimizer states paged to the host; raise the budget or quantize the base (qlora)`,
      );
    }
  }
  const pagedBytes = params.filter((p) => paged.has(p.id)).reduce((s, p) => s + paramBytes(p), 0);
  return { paged, residentParamBytes: resident, pagedBytes };
}
