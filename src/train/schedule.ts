// torch.optim.lr_scheduler.OneCycleLR (two phases, cosine annealing, cycle_momentum on β1), as a pure
// function of the step, so a resumed run needs only the step count.
import { ClipDecoderError } from '../errors.ts';

export interface OneCycleOptions {
  maxLr: number;
  totalSteps: number;
  pctStart: number;
  divFactor: number;
  finalDivFactor: number;
  baseMomentum: number;
  maxMomentum: number;
}

export const ONE_CYCLE_DEFAULTS = { pctStart: 0.2, divFactor: 25, finalDivFactor: 1e4, baseMomentum: 0.85, maxMomentum: 0.95 } as const;

function cosAnneal(start: number, end: number, pct: number): number {
  return end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
}

export class OneCycle {
  readonly opts: OneCycleOptions;

  constructor(opts: Partial<OneCycleOptions> & { maxLr: number; totalSteps: number }) {
    this.opts = { ...ONE_CYCLE_DEFAULTS, ...opts };
    if (!(this.opts.totalSteps >= 1) || !Number.isInteger(this.opts.totalSteps)) {
      throw new ClipDecoderError('INPUT_INVALID', `OneCycle needs a positive integer totalSteps, got ${opts.totalSteps}`, 'totalSteps');
    }
  }

  /**
   * Learning rate and β1 for optimiser step `step` (0-based): PyTorch's value after `step` calls of
   * scheduler.step(). Phase 1 ends at pct_start·total − 1, phase 2 at total − 1.
   */
  at(step: number): { lr: number; beta1: number } {
    const o = this.opts;
    if (step > o.totalSteps) {
      throw new ClipDecoderError('INPUT_INVALID', `step ${step} is past the schedule's ${o.totalSteps} total steps`, 'totalSteps');
    }
    const initialLr = o.maxLr / o.divFactor;
    const minLr = initialLr / o.finalDivFactor;
    const end1 = o.pctStart * o.totalSteps - 1;
    const end2 = o.totalSteps - 1;
    if (step <= end1) {
      // (PyTorch divides by zero when pct_start·total = 1; we take the limit, the peak)
      const pct = end1 > 0 ? step / end1 : 1;
      return { lr: cosAnneal(initialLr, o.maxLr, pct), beta1: cosAnneal(o.maxMomentum, o.baseMomentum, pct) };
    }
    const pct = (step - end1) / (end2 - end1);
    return { lr: cosAnneal(o.maxLr, minLr, pct), beta1: cosAnneal(o.baseMomentum, o.maxMomentum, pct) };
  }
}
