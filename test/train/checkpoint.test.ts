import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Tensor, tensor } from '../../src/ir/tensor.ts';
import {
  checkpointPath,
  latestCheckpoint,
  loadCheckpoint,
  OPTIMIZER_FILE,
  PARAMS_FILE,
  STATE_FILE,
  saveCheckpoint,
} from '../../src/train/checkpoint/index.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'peftc-ckpt-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function data(step: number) {
  const a = tensor('f32', [2, 3], [1.5, -2, 3.25, 0.1, 1e-8, -7]);
  const b = tensor('f32', [3], [step, step + 0.5, -step]);
  return {
    step,
    params: { 'lora_A.weight': a, 'lora_B.weight': b },
    optimizer: new Map<string, Tensor>([
      ['lora_A.weight.exp_avg', tensor('f32', [2, 3], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])],
      ['lora_A.weight.exp_avg_sq', tensor('f32', [2, 3], [1, 2, 3, 4, 5, 6])],
    ]),
    state: { seed: 42, data: { step, sample: step * 4 }, best_eval_loss: 1.2345678901234567 },
  };
}

const arr = (t: Tensor | undefined) => Array.from(t?.data ?? []);

describe('checkpoints', () => {
  it('round trips params, optimizer state and the caller state exactly', () => {
    const dir = saveCheckpoint(path.join(root, 'rt', 'checkpoint-3'), data(3));
    expect(fs.readdirSync(dir).sort()).toEqual([OPTIMIZER_FILE, PARAMS_FILE, STATE_FILE].sort());
    const c = loadCheckpoint(dir);
    const d = data(3);
    expect(c.step).toBe(3);
    expect(c.state).toEqual(d.state);
    expect([...c.params.keys()]).toEqual(['lora_A.weight', 'lora_B.weight']);
    expect(arr(c.params.get('lora_A.weight'))).toEqual(arr(d.params['lora_A.weight']));
    expect(c.params.get('lora_A.weight')?.shape).toEqual([2, 3]);
    expect(arr(c.optimizer.get('lora_A.weight.exp_avg_sq'))).toEqual([1, 2, 3, 4, 5, 6]);
    expect(fs.readdirSync(path.join(root, 'rt'))).toEqual(['checkpoint-3']);
  });

  it('a failure mid-write keeps the previous checkpoint and leaves nothing partial', () => {
    const out = path.join(root, 'fail');
    const dir = checkpointPath(out, 5);
    saveCheckpoint(dir, data(5));
    const bad = data(6);
    // The optimizer file is written after the params file: this tensor's data does not fit its shape.
    bad.optimizer.set('broken', { dtype: 'f32', shape: [4], data: new Float32Array(2) });
    expect(() => saveCheckpoint(dir, bad)).toThrow(/needs 4 elements, data has 2/);
    expect(fs.readdirSync(out)).toEqual(['checkpoint-5']);
    expect(loadCheckpoint(dir).step).toBe(5);
    // and a failure for a new name leaves no directory under that name
    expect(() => saveCheckpoint(checkpointPath(out, 6), bad)).toThrow();
    expect(fs.readdirSync(out)).toEqual(['checkpoint-5']);
  });

  it('replaces an existing checkpoint only with a complete one', () => {
    const dir = path.join(root, 'replace', 'last');
    saveCheckpoint(dir, data(1));
    saveCheckpoint(dir, data(2));
    expect(loadCheckpoint(dir).step).toBe(2);
    expect(fs.readdirSync(path.dirname(dir))).toEqual(['last']);
  });

  it('latestCheckpoint picks the highest complete step and ignores temps and other folders', () => {
    const out = path.join(root, 'latest');
    expect(latestCheckpoint(out)).toBeUndefined();
    saveCheckpoint(checkpointPath(out, 2), data(2));
    saveCheckpoint(checkpointPath(out, 10), data(10));
    saveCheckpoint(checkpointPath(out, 9), data(9));
    // a killed run's temp dir (even a complete-looking one) and a PEFT adapter folder
    fs.cpSync(checkpointPath(out, 10), path.join(out, 'checkpoint-11.tmp-999999'), { recursive: true });
    fs.mkdirSync(path.join(out, 'step-12'));
    fs.writeFileSync(path.join(out, 'step-12', 'adapter_config.json'), '{}');
    expect(latestCheckpoint(out)).toBe(checkpointPath(out, 10));
    // crash between "move old aside" and "move new in": the old one is still found
    fs.renameSync(checkpointPath(out, 10), path.join(out, 'checkpoint-10.old-123'));
    expect(latestCheckpoint(out)).toBe(path.join(out, 'checkpoint-10.old-123'));
  });

  it('loading names the file at fault', () => {
    const dir = saveCheckpoint(path.join(root, 'bad', 'c'), data(1));
    const state = path.join(dir, STATE_FILE);
    const params = path.join(dir, PARAMS_FILE);
    expect(() => loadCheckpoint(path.join(root, 'nope'))).toThrow(/nope: no such checkpoint directory/);

    const good = fs.readFileSync(state, 'utf8');
    fs.writeFileSync(state, good.replace('"lora_B.weight"', '"lora_C.weight"'));
    expect(() => loadCheckpoint(dir)).toThrow(
      `${params}: 'lora_C.weight': missing (listed in trainer_state.json)`,
    );
    fs.writeFileSync(state, good.replace('"step": 1', '"step": -1'));
    expect(() => loadCheckpoint(dir)).toThrow(new RegExp(`${state}: step:`));
    fs.writeFileSync(state, '{"format": ');
    expect(() => loadCheckpoint(dir)).toThrow(`${state}: not valid JSON`);
    fs.writeFileSync(state, good);
    fs.writeFileSync(params, Buffer.from([1, 2, 3]));
    expect(() => loadCheckpoint(dir)).toThrow(params);
    fs.rmSync(state);
    expect(() => loadCheckpoint(dir)).toThrow(`${state}: missing`);
  });
});
