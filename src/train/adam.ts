// Adam with coupled L2 weight decay (torch.optim.Adam with weight_decay, not AdamW), applied only to the
// parameters flagged `decay` (rank ≥ 2: weight matrices; not biases, not LayerNorm, not the log-scale), as
// the official add_weight_decay + Adam(weight_decay=0) pair does.
import type { Param } from '../nn/param.ts';
import { adamEmaKernel } from '../nn/fused.ts';
import type { Ema } from './ema.ts';

export interface AdamOptions {
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAM_DEFAULTS: Readonly<AdamOptions> = { beta2: 0.999, eps: 1e-8, weightDecay: 1e-2 };

/** The bias corrections of update t (1-based): stepSize = lr/(1−β1^t), bc2sqrt = sqrt(1−β2^t). Shared with the data-parallel workers. */
export function adamScalars(lr: number, beta1: number, t: number, beta2: number): { stepSize: number; bc2sqrt: number } {
  const bc1 = 1 - beta1 ** t;
  return { stepSize: lr / bc1, bc2sqrt: Math.sqrt(1 - beta2 ** t) };
}

export class Adam {
  readonly params: Param[];
  readonly opts: AdamOptions;
  /** First and second moments, one pair per trainable parameter (same order as params). */
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  /** Number of updates applied so far. */
  step = 0;

  constructor(params: readonly Param[], opts: Partial<AdamOptions> = {}) {
    this.params = params.filter((p) => p.grad !== null);
    this.opts = { ...ADAM_DEFAULTS, ...opts };
    this.m = this.params.map((p) => new Float32Array(p.data.length));
    this.v = this.params.map((p) => new Float32Array(p.data.length));
  }

  /**
   * One update with this step's learning rate and β1 (OneCycle cycles both), exactly torch's
   * _single_tensor_adam: g += wd·θ; m = β1 m + (1−β1) g; v = β2 v + (1−β2) g²;
   * θ −= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps).
   * Given the run's EMA, updates it in the same pass (ema = d·ema + (1−d)·θ_new).
   */
  update(lr: number, beta1: number, ema?: Ema | null): void {
    this.step++;
    const { beta2, eps } = this.opts;
    const { stepSize, bc2sqrt } = adamScalars(lr, beta1, this.step, beta2);
    for (let k = 0; k < this.params.length; k++) {
      const p = this.params[k];
      const wd = p.decay ? this.opts.weightDecay : 0;
      const shadow = ema ? ema.shadowOf(p.name) : null;
      adamEmaKernel({
        w: p.data,
        g: p.grad!,
        m: this.m[k],
        v: this.v[k],
        ema: shadow,
        emaDecay: ema ? ema.decay : 0,
        weightDecay: wd,
        beta1,
        beta2,
        stepSize,
        bc2sqrt,
        eps,
      });
    }
    // with an EMA, also average what Adam does not touch (fixed buffers), as ModelEma does over the state_dict
    ema?.updateExcept(new Set(this.params.map((p) => p.name)));
  }
}
