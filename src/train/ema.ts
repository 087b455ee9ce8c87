// Exponential moving average of the weights (the official ModelEma: ema = d·ema + (1−d)·θ after every
// optimiser step, over every parameter and buffer).
import type { Param } from '../nn/param.ts';

export class Ema {
  readonly decay: number;
  readonly names: string[];
  readonly shadow: Float32Array[];
  private readonly params: readonly Param[];
  private readonly index: Map<string, number>;

  constructor(params: readonly Param[], decay: number) {
    this.decay = decay;
    this.params = params;
    this.names = params.map((p) => p.name);
    this.shadow = params.map((p) => Float32Array.from(p.data));
    this.index = new Map(this.names.map((n, i) => [n, i]));
  }

  shadowOf(name: string): Float32Array {
    const i = this.index.get(name);
    if (i === undefined) throw new Error(`EMA has no ${name}`);
    return this.shadow[i];
  }

  /** Updates the averages of every tracked parameter not named in `skip` (Adam fuses the rest). */
  updateExcept(skip: ReadonlySet<string>): void {
    const d = this.decay,
      c = 1 - d;
    this.params.forEach((p, k) => {
      if (skip.has(p.name)) return;
      const s = this.shadow[k],
        w = p.data;
      for (let i = 0; i < s.length; i++) s[i] = d * s[i] + c * w[i];
    });
  }

  update(params: readonly Param[]): void {
    const d = this.decay,
      c = 1 - d;
    for (let k = 0; k < params.length; k++) {
      const s = this.shadow[k],
        w = params[k].data;
      for (let i = 0; i < s.length; i++) s[i] = d * s[i] + c * w[i];
    }
  }

  /** Copies the averaged weights into `params` (same order). */
  copyTo(params: readonly Param[]): void {
    for (let k = 0; k < params.length; k++) params[k].data.set(this.shadow[k]);
  }
}
