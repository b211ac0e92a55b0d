// GaLore (src/methods/galore): the projected update rule against AdamW, the projector's
// side and orthonormality, the refresh schedule, the exact step-0 projector (the first
// update lies in the row space of the P taken from its own gradient), and training the
// bundled model with examples/recipes/galore-tiny.json (32-bit and 8-bit) into a Hugging
// Face model directory that `peftc logits --model` loads (real CLI).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import {
  galoreRule,
  projection,
  projectionSide,
  projectorsOf,
  refreshesAt,
} from '../../src/methods/galore/index.ts';
import { openModel } from '../../src/models/open.ts';
import { adamw } from '../../src/passes/optimizer/index.ts';
import { loadCheckpoint } from '../../src/train/checkpoint/checkpoint.ts';
import { cli, peftc } from '../cli/run-cli.ts';
import {
  type GaloreRecipeJson,
  GALORE_MODEL as MODEL,
  GALORE_RECIPE as RECIPE,
  rand,
  stepRule,
  trainGalore,
} from './galore-helpers.ts';

const eye = (n: number) =>
  tensor(
    'f32',
    [n, n],
    Float32Array.from({ length: n * n }, (_, i) => (i % (n + 1) === 0 ? 1 : 0)),
  );

describe('galore update rule', () => {
  it('with a full-rank identity projector, scale 1, no decay: AdamW step by step (3 steps)', () => {
    const w0 = rand([5, 3], 1);
    const grads = [rand([5, 3], 2), rand([5, 3], 3), rand([5, 3], 4)];
    const eps = 1e-12;
    const ref = stepRule(adamw({ betas: [0.9, 0.999], eps }), w0, grads);
    const rule = galoreRule({
      galore: { rank: 3, proj_type: 'std', scale: 1 },
      type: 'adamw',
      betas: [0.9, 0.999],
      eps,
    });
    // 5 x 3: std projects on the right, P [3, 3].
    const got = stepRule(rule, w0, grads, { 'optimizer.galore_proj.W': eye(3) });
    for (let t = 0; t < 3; t++) {
      for (let i = 0; i < 15; i++) expect(Math.abs(got[t][i] - ref[t][i])).toBeLessThan(1e-6);
      expect(Math.abs(got[t][0] - w0.data[0])).toBeGreaterThan(1e-4);
    }
  });

  it('scales the update and decays the updated weight (official order: W -= lr*wd*W after the step)', () => {
    const w0 = rand([2, 4], 5);
    const g = rand([2, 4], 6);
    // 2 x 4: left projection, P [2, 2].
    const rule = galoreRule({
      galore: { rank: 8, proj_type: 'std', scale: 0.25 },
      type: 'adamw',
      betas: [0.9, 0.999],
      eps: 1e-6,
    });
    const one = stepRule((ctx) => rule({ ...ctx, group: { ...ctx.group, weightDecay: 0.1 } }), w0, [g], {
      'optimizer.galore_proj.W': eye(2),
    })[0];
    // t = 1: m = 0.1 g, v = 0.001 g^2, step_size = lr sqrt(0.001) / 0.1; N = m / (sqrt(v) + eps).
    for (let i = 0; i < 8; i++) {
      const m = 0.1 * g.data[i];
      const v = 0.001 * g.data[i] ** 2;
      const upd = w0.data[i] - ((0.01 * Math.sqrt(0.001)) / 0.1) * 0.25 * (m / (Math.sqrt(v) + 1e-6));
      expect(one[i]).toBeCloseTo(upd - 0.01 * 0.1 * upd, 6);
    }
  });
});

describe('galore projector', () => {
  it('side by shape and proj_type, rank capped by the smaller side', () => {
    expect(projectionSide('std', 6, 4)).toBe('right');
    expect(projectionSide('std', 4, 6)).toBe('left');
    expect(projectionSide('std', 4, 4)).toBe('right');
    expect(projectionSide('reverse_std', 6, 4)).toBe('left');
    expect(projectionSide('reverse_std', 4, 6)).toBe('right');
    expect(projectionSide('left', 6, 4)).toBe('left');
    expect(projection({ rank: 128, proj_type: 'std' }, 64, 32)).toMatchObject({ r: 32, low: [64, 32] });
    expect(projection({ rank: 8, proj_type: 'full' }, 64, 32).projectors).toEqual([
      [64, 8],
      [8, 32],
    ]);
  });

  it('is orthonormal on its side and spans the top singular vectors', () => {
    const check = (P: Tensor, rows: boolean) => {
      const [a, c] = P.shape;
      const k = rows ? a : c;
      for (let i = 0; i < k; i++)
        for (let j = 0; j < k; j++) {
          let dot = 0;
          for (let x = 0; x < (rows ? c : a); x++)
            dot += rows ? P.data[i * c + x] * P.data[j * c + x] : P.data[x * c + i] * P.data[x * c + j];
          expect(Math.abs(dot - (i === j ? 1 : 0))).toBeLessThan(1e-5);
        }
    };
    const tall = rand([7, 4], 7);
    const [right] = projectorsOf(tall, projection({ rank: 2, proj_type: 'std' }, 7, 4));
    expect(right.shape).toEqual([2, 4]);
    check(right, true);
    const wide = rand([3, 8], 8);
    const [left] = projectorsOf(wide, projection({ rank: 2, proj_type: 'std' }, 3, 8));
    expect(left.shape).toEqual([3, 2]);
    check(left, false);
    // Full rank: G P^T P = G (nothing of the gradient is lost).
    const [full] = projectorsOf(tall, projection({ rank: 4, proj_type: 'std' }, 7, 4));
    for (let i = 0; i < 7; i++)
      for (let j = 0; j < 4; j++) {
        let s = 0;
        for (let r = 0; r < 4; r++) {
          let gp = 0;
          for (let x = 0; x < 4; x++) gp += tall.data[i * 4 + x] * full.data[r * 4 + x];
          s += gp * full.data[r * 4 + j];
        }
        expect(s).toBeCloseTo(tall.data[i * 4 + j], 5);
      }
  });

  it('refreshes at steps 1, 1 + gap, 1 + 2 gap (official: state step % gap == 0, step 0 included)', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11].filter((t) => refreshesAt(t, 5))).toEqual([1, 6, 11]);
    expect([1, 2, 3].every((t) => refreshesAt(t, 1))).toBe(true);
  });
});

const dir = mkdtempSync(join(tmpdir(), 'peftc-galore-'));
const tokens = join(dir, 'tokens.json');
const row = [256, ...Array.from(Buffer.from('the cat sat on the mat. '.repeat(3)))].slice(0, 33);
writeFileSync(tokens, JSON.stringify(Array.from({ length: 12 }, () => row)));

const trainWith = (name: string, edit: (r: GaloreRecipeJson) => void, steps?: number) =>
  trainGalore(dir, name, edit, { tokens, batch: 2, seq: 32, backend: 'cpu', steps, evalEvery: 12 });

describe('galore on the bundled model', () => {
  it('step 1 already uses the projector of its own gradient: the update lies in P’s row space', async () => {
    const { out } = await trainWith(
      'one',
      (r) => {
        r.methods[0].update_proj_gap = 100;
        r.max_grad_norm = null;
      },
      1,
    );
    const ck = loadCheckpoint(join(out, 'checkpoint-1'));
    const base = openModel(MODEL).weights;
    const name = 'model.layers.0.mlp.down_proj.weight'; // [64, 128]: left, P [64, 8]
    const P = ck.optimizer.get(`optimizer.galore_proj.${name}`)!;
    expect(P.shape).toEqual([64, 8]);
    const W1 = ck.params.get(name)!;
    const W0 = base.get(name)!;
    const d = Float64Array.from(W1.data, (x, i) => x - W0.data[i]);
    expect(Math.max(...d.map(Math.abs))).toBeGreaterThan(1e-4);
    // (I - P P^T) dW = 0 for a left projection.
    let resid = 0;
    for (let j = 0; j < 128; j++) {
      const coef = new Float64Array(8);
      for (let r = 0; r < 8; r++) for (let i = 0; i < 64; i++) coef[r] += P.data[i * 8 + r] * d[i * 128 + j];
      for (let i = 0; i < 64; i++) {
        let back = 0;
        for (let r = 0; r < 8; r++) back += P.data[i * 8 + r] * coef[r];
        resid = Math.max(resid, Math.abs(d[i * 128 + j] - back));
      }
    }
    expect(resid).toBeLessThan(1e-5);
  });

  it('GaLore-8bit (optimizer adamw8bit) trains and lowers the eval loss', async () => {
    const { r } = await trainWith('eight', (x) => {
      x.optimizer = { type: 'adamw8bit', lr: 1e-2, eps: 1e-8, weight_decay: 0, min_8bit_size: 256 };
    });
    expect(r.evalLosses.at(-1)!.loss).toBeLessThan(r.evalLosses[0].loss * 0.8);
  });

  it('refuses galore with lora in one recipe, saying why (CLI)', async () => {
    const recipe = JSON.parse(readFileSync(RECIPE, 'utf8'));
    recipe.methods.push({ method: 'lora', r: 4, target_modules: ['q_proj'] });
    const file = join(dir, 'both.json');
    writeFileSync(file, JSON.stringify(recipe));
    const r = await cli(
      `train --model ${MODEL} --recipe ${file} --tokens ${tokens} --out ${join(dir, 'no')} --steps 1 --backend cpu`.split(
        ' ',
      ),
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/GaLore trains the base weights themselves at full rank/);
  });

  it('peftc train with galore-tiny.json lowers the eval loss and writes a model dir that peftc logits --model loads (real CLI)', async () => {
    const out = join(dir, 'cli');
    const t = peftc(
      `train --model ${MODEL} --recipe ${RECIPE} --tokens ${tokens} --out ${out} --batch 2 --seq 32 --backend cpu --no-plot --save-every 6`.split(
        ' ',
      ),
    );
    expect(t.stderr).toBe('');
    expect(t.code).toBe(0);
    expect(t.stdout).toMatch(/model in .* \(a Hugging Face model directory\)/);
    const log = readFileSync(join(out, 'log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const evals = log.filter((x) => x.eval_loss !== undefined).map((x) => x.eval_loss);
    expect(evals.at(-1)).toBeLessThan(evals[0]);
    expect(log.filter((x) => x.galore_refresh).map((x) => x.step)).toEqual([1, 6, 11]);
    // Both model dirs are complete llama dirs; the final one through the real `peftc logits`
    // (one CLI process: each costs seconds of start-up on a busy machine).
    for (const d of [out, join(out, 'step-6')]) {
      const cfg = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
      expect(cfg.model_type).toBe('llama');
      expect(openModel(d).weights.get('model.layers.1.self_attn.q_proj.weight')).toBeDefined();
    }
    const l = peftc(
      `logits --model ${out} --tokens ${tokens} --out ${join(out, 'l.safetensors')} --backend cpu`.split(' '),
    );
    expect(l.stderr).toBe('');
    expect(l.code).toBe(0);
    // The saved weights are the trained ones (in the model's bf16), not the base.
    const saved = openModel(out).weights.get('model.layers.1.self_attn.q_proj.weight')!;
    const base = openModel(MODEL).weights.get('model.layers.1.self_attn.q_proj.weight')!;
    expect(saved.data.some((x, i) => x !== base.data[i])).toBe(true);
  });
});
