// How many steps a run takes and how many the lr schedule stretches over, for fresh
// and resumed runs. A linear or cosine schedule depends on its total: resuming with
// a larger total would silently re-stretch it (the lr jumps), so a resume keeps the
// checkpoint's total unless --schedule-steps restates it (docs/DECISIONS.md, Training).
import type { Recipe } from '../methods/index.ts';
import { UserError } from '../util/errors.ts';
import type { DataCursor } from './data/index.ts';
import { lrAt } from './schedule.ts';

/** What the trainer keeps in a checkpoint's trainer_state.json `state` besides the params. */
export interface ResumeState {
  readonly cursor: DataCursor;
  /** The step count the run was started for (a resume without --steps continues to it). */
  readonly planned_steps?: number;
  /** The total the lr schedule stretched over. Older checkpoints: recipe.steps, else 100. */
  readonly schedule_steps?: number;
  /** The eval loss before training (step 0), so a resumed run's summary keeps its baseline. */
  readonly eval_baseline?: number;
  readonly recipe?: { readonly steps?: number };
  /** Host-side state of the recipe's methods (MethodSession.state), by recipe entry index. */
  readonly methods?: Record<string, Record<string, unknown>>;
}

/** The default step count when neither --steps nor the recipe gives one. */
export const DEFAULT_STEPS = 100;

export interface RunPlan {
  /** The step the run ends at. */
  readonly steps: number;
  /** The total the lr schedule stretches over. */
  readonly scheduleSteps: number;
  /** A line for the user when a resume re-stretches the schedule (the lr changes at the next step). */
  readonly notice?: string;
}

const totalDependent = (r: Recipe) => r.schedule.type === 'linear' || r.schedule.type === 'cosine';
const fmt = (x: number) => (x === 0 ? '0' : x.toExponential(2));

/**
 * Resolves the run's steps and schedule total. `steps` / `scheduleSteps` are what the user
 * gave (undefined: not given); `resumed` is the checkpoint's step and state.
 */
export function planRun(
  recipe: Recipe,
  given: { steps?: number; scheduleSteps?: number },
  resumed?: { step: number; state: ResumeState },
): RunPlan {
  const planned = resumed
    ? (resumed.state.planned_steps ?? resumed.state.recipe?.steps ?? DEFAULT_STEPS)
    : undefined;
  const recorded = resumed ? (resumed.state.schedule_steps ?? planned) : undefined;
  const steps = given.steps ?? planned ?? DEFAULT_STEPS;
  const scheduleSteps = given.scheduleSteps ?? recorded ?? steps;
  if (!totalDependent(recipe) || steps <= scheduleSteps) {
    const k = resumed?.step ?? 0;
    const lr = (i: number, total: number) => fmt(lrAt(recipe.schedule, recipe.optimizer.lr, i, total));
    const notice =
      resumed && recorded !== undefined && scheduleSteps !== recorded && totalDependent(recipe)
        ? `lr schedule restated: ${recipe.schedule.type} over ${scheduleSteps} steps (was ${recorded}); lr ${lr(Math.max(0, k - 1), recorded)} at step ${k} (as run) -> ${lr(k, scheduleSteps)} at step ${k + 1}`
        : undefined;
    return { steps, scheduleSteps, ...(notice ? { notice } : {}) };
  }
  const type = recipe.schedule.type;
  if (resumed && given.scheduleSteps === undefined) {
    const k = resumed.step;
    // Step k (1-based) ran at schedule index k - 1; the next step would run at index k.
    const last = lrAt(recipe.schedule, recipe.optimizer.lr, Math.max(0, k - 1), scheduleSteps);
    const next = lrAt(recipe.schedule, recipe.optimizer.lr, k, steps);
    throw new UserError(
      `--resume: the run in this checkpoint was planned for ${scheduleSteps} steps of a ${type} lr schedule, and ${steps} steps go past its end. ` +
        `Stretched over ${steps} steps, the lr would go from ${fmt(last)} (step ${k}, as run) to ${fmt(next)} (step ${k + 1}). ` +
        `To do that, restate the schedule: add --schedule-steps ${steps}; to finish the run as planned, pass --steps ${scheduleSteps}.`,
    );
  }
  throw new UserError(
    `--schedule-steps ${scheduleSteps} is less than --steps ${steps}: a ${type} lr schedule ends after its total (lr 0 or rising again past it); pass --schedule-steps ${steps} or more, or fewer --steps`,
  );
}
