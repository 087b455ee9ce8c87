// Every training default, in one light module: the library reads them here, and the CLI's --help prints them
// without loading the training engine. Flags the user does not give reach the library as undefined.
import { ASL_DEFAULTS } from '../head/losses.ts';
import { ADAM_DEFAULTS } from './adam.ts';
import { ONE_CYCLE_DEFAULTS } from './schedule.ts';
import type { TrainerOptions } from './trainer.ts';

/** Defaults of a run (docs/method.md §4: 40 epochs, batch 56). */
export const FIT_DEFAULTS = { epochs: 40, batchSize: 56, seed: 0, checkpointEveryMinutes: 5 } as const;

/** EMA decay for a run of `steps` steps: the paper's 0.9997, or a memory of about steps/10 for short runs. */
export function autoEmaDecay(steps: number): number {
  return Math.min(0.9997, 1 - 10 / Math.max(20, steps));
}

/** The optimiser, schedule and loss defaults of §3–4, with `over` on top. */
export function defaultTrainerOptions(over: Partial<TrainerOptions> & { totalSteps: number }): TrainerOptions {
  return {
    seed: 0,
    maxLr: 1e-4,
    ...ONE_CYCLE_DEFAULTS,
    beta2: ADAM_DEFAULTS.beta2,
    eps: ADAM_DEFAULTS.eps,
    weightDecay: ADAM_DEFAULTS.weightDecay,
    emaDecay: 0.9997,
    alpha: 1,
    beta: 1,
    asl: { ...ASL_DEFAULTS },
    ...over,
  };
}
