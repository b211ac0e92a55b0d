// GoRA's calibration, given the mean gradients of the frozen target weights (the trainer
// computes them: train/calibrate.ts): importance per weight, ranks within the budget of
// rank-r LoRA, and the compress init of A and B. The result is plain LoRA: the next recipe
// entry (lora) gets rank_pattern[m] = r_i and, unless dynamic_scaling,
// alpha_pattern[m] = alpha r_i / r, so that PEFT's alpha_m / r_m is GoRA's alpha / r.
import { type Tensor, tensor } from '../../ir/tensor.ts';
import { Rng, seedOf } from '../../util/rng.ts';
import { adapterSites, baseWeightNode } from '../adapters/sites.ts';
import { injectLora, type LoraOptions, loraParamNames } from '../lora/index.ts';
import { type Calibration, type CalibrationContext, MethodError } from '../registry.ts';
import { type AllocationTarget, allocateRanks } from './allocate.ts';
import { importanceOf } from './importance.ts';
import { compressInit, goraGamma } from './init.ts';
import { type GoraOptions, rankBounds } from './options.ts';

const fail = (why: string) => new MethodError(`gora: ${why}`);

/** The linear weights the lora entry targets: module, weight name, [out, in]. */
function targetsOf(ctx: CalibrationContext, lo: LoraOptions) {
  const { graph } = injectLora(ctx.graph, { ...lo, use_dora: false, init_lora_weights: true });
  const sites = adapterSites(graph).filter((s) => s.adapter === lo.adapter_name);
  if (sites.length === 0) throw fail('the lora entry after it targets no module of this model');
  return sites.map((site) => {
    if (site.kind !== 'linear')
      throw fail(`${site.module} is an embedding; GoRA allocates ranks to linear modules only`);
    const w = baseWeightNode(graph, site);
    if (w.op !== 'param')
      throw fail(
        `the weight of ${site.module} is a ${w.op} (a 4-bit checkpoint?); it needs full-precision weights`,
      );
    const [out, inF] = w.type.shape;
    return { module: site.module, weight: String(w.attrs.name), out, inF };
  });
}

function checkNext(ctx: CalibrationContext): LoraOptions {
  if (ctx.next?.method !== 'lora')
    throw fail(
      `the entry after it must be the lora entry whose ranks it allocates (got ${ctx.next ? `'${ctx.next.method}'` : 'none'}); put {"method": "lora", "r": ..., "target_modules": [...]} right after the gora entry`,
    );
  const lo = ctx.next.options as LoraOptions;
  const clash = (['rank_pattern', 'alpha_pattern'] as const).find((k) => Object.keys(lo[k]).length > 0);
  if (clash) throw fail(`the lora entry sets ${clash}, which GoRA computes; remove it`);
  if (lo.use_rslora)
    throw fail('use_rslora with GoRA is not supported (GoRA scales by alpha / r); set it false');
  if (typeof lo.init_lora_weights === 'string')
    throw fail(`init_lora_weights "${lo.init_lora_weights}" conflicts with GoRA's own init; leave it out`);
  return lo;
}

const f64 = (t: Tensor) => Float64Array.from(t.data);

export async function goraCalibrate(o: GoraOptions, ctx: CalibrationContext): Promise<Calibration> {
  const lo = checkNext(ctx);
  const targets = targetsOf(ctx, lo);
  const grads = await ctx.gradients(
    targets.map((t) => t.weight),
    o.n_steps,
  );
  const { minRank, maxRank } = rankBounds(o, lo.r);
  const G = new Map<string, Float64Array>();
  const alloc: AllocationTarget[] = targets.map((t) => {
    const W = ctx.weights.get(t.weight);
    const g = grads.get(t.weight);
    if (!W || !g) throw fail(`no weight or gradient for ${t.weight}`);
    G.set(t.module, f64(g));
    return {
      module: t.module,
      inFeatures: t.inF,
      outFeatures: t.out,
      importance: importanceOf(o.importance_type, f64(W), f64(g), t.out, t.inF, {
        estRank: o.max_rank ?? 4 * lo.r,
        label: t.module,
      }),
    };
  });
  const a = allocateRanks(alloc, {
    r: lo.r,
    minRank,
    maxRank,
    softmax: o.softmax_importance,
    temperature: o.temperature,
  });
  const rank_pattern: Record<string, number> = {};
  const alpha_pattern: Record<string, number> = {};
  const skipped: string[] = [];
  const init = new Map<string, Tensor>();
  for (const t of targets) {
    const ri = a.ranks.get(t.module) ?? 0;
    if (ri === 0) {
      skipped.push(t.module);
      continue;
    }
    rank_pattern[t.module] = ri;
    const scaleRank = o.dynamic_scaling ? ri : lo.r;
    if (!o.dynamic_scaling) alpha_pattern[t.module] = (lo.lora_alpha * ri) / lo.r;
    if (o.init_method !== 'compress') continue;
    const gamma = goraGamma({
      stableGemma: o.stable_gemma,
      scaleByLr: o.scale_by_lr,
      lr: o.lr,
      r: ri,
      inFeatures: t.inF,
      scaleRank,
    });
    const names = loraParamNames(t.module, lo.adapter_name, 'linear');
    const { A, B } = compressInit(
      G.get(t.module)!,
      t.out,
      t.inF,
      ri,
      gamma / lo.lora_alpha,
      new Rng(seedOf(names.A)),
    );
    init.set(names.A, tensor('f32', [ri, t.inF], A));
    init.set(names.B, tensor('f32', [t.out, ri], B));
  }
  const pct = ((100 * a.params) / a.budget).toFixed(1);
  ctx.log(
    `gora: ${o.importance_type} importance over ${o.n_steps} batch(es); ranks in [${minRank}, ${maxRank}], nominal r ${lo.r}`,
  );
  for (const t of targets) ctx.log(`gora: ${t.module} rank ${a.ranks.get(t.module)}`);
  ctx.log(`gora: ${a.params} adapter params of a budget of ${a.budget} (rank-${lo.r} LoRA) = ${pct}%`);
  const exclude = skipped.length
    ? { exclude_modules: [...(Array.isArray(lo.exclude_modules) ? lo.exclude_modules : []), ...skipped] }
    : {};
  if (skipped.length && typeof lo.exclude_modules === 'string')
    throw fail(
      `ranks of 0 for ${skipped.join(', ')} need exclude_modules as a list, but the lora entry has a regex; raise min_rank to 1 or make it a list`,
    );
  const next: LoraOptions = { ...lo, rank_pattern, alpha_pattern, ...exclude };
  return { next, init };
}
