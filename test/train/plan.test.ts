// The resume rule for the lr schedule's total (docs/DECISIONS.md, Training).
import { describe, expect, it } from 'vitest';
import { parseRecipe } from '../../src/methods/index.ts';
import { DEFAULT_STEPS, planRun } from '../../src/train/plan.ts';

const recipe = (schedule: Record<string, unknown>) =>
  parseRecipe({ methods: [{ method: 'lora', r: 2 }], optimizer: { type: 'adamw', lr: 1e-3 }, schedule });
const cursor = {} as never;
const linear = recipe({ type: 'linear', warmup_steps: 0 });

describe('planRun', () => {
  it('fresh: steps default to 100, the schedule spans them unless --schedule-steps is larger', () => {
    expect(planRun(linear, {})).toEqual({ steps: DEFAULT_STEPS, scheduleSteps: DEFAULT_STEPS });
    expect(planRun(linear, { steps: 5, scheduleSteps: 9 })).toEqual({ steps: 5, scheduleSteps: 9 });
    expect(() => planRun(linear, { steps: 9, scheduleSteps: 5 })).toThrow(
      /--schedule-steps 5 is less than --steps 9/,
    );
  });

  it('resume: keeps the recorded plan; going past it needs --schedule-steps; constant extends freely', () => {
    const state = { cursor, planned_steps: 10, schedule_steps: 10 };
    expect(planRun(linear, {}, { step: 4, state })).toEqual({ steps: 10, scheduleSteps: 10 });
    expect(planRun(linear, { steps: 8 }, { step: 4, state })).toEqual({ steps: 8, scheduleSteps: 10 });
    expect(() => planRun(linear, { steps: 12 }, { step: 10, state })).toThrow(
      'add --schedule-steps 12; to finish the run as planned, pass --steps 10.',
    );
    const restated = planRun(linear, { steps: 12, scheduleSteps: 12 }, { step: 10, state });
    expect(restated.notice).toBe(
      'lr schedule restated: linear over 12 steps (was 10); lr 1.00e-4 at step 10 (as run) -> 1.67e-4 at step 11',
    );
    const constant = recipe({ type: 'constant', warmup_steps: 2 });
    expect(planRun(constant, { steps: 50 }, { step: 10, state })).toEqual({ steps: 50, scheduleSteps: 10 });
  });

  it('a checkpoint from before schedule_steps was recorded: its recipe steps, else 100', () => {
    const old = { cursor, recipe: { steps: 6 } };
    expect(planRun(linear, {}, { step: 3, state: old })).toEqual({ steps: 6, scheduleSteps: 6 });
    expect(() => planRun(linear, { steps: 7 }, { step: 3, state: old })).toThrow(/planned for 6 steps/);
    expect(planRun(linear, {}, { step: 3, state: { cursor } }).scheduleSteps).toBe(100);
  });
});
