// One optimisation step at a time: the head's forward + backward, Adam on the OneCycle schedule, EMA, all
// randomness from one seeded Rng. Knows nothing about datasets (the training loop feeds it batches) and can
// snapshot/restore everything, so a resumed run continues bit-for-bit.
import { ClipDecoderError } from '../errors.ts';
import { ClipDecoderHead, type StepLosses, type TrainBatch } from '../head/head.ts';
import type { HeadConfig } from '../head/config.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import { Rng } from '../nn/rng.ts';
import { Adam } from './adam.ts';
import { defaultTrainerOptions } from './defaults.ts';
import { Ema } from './ema.ts';
import type { AslOptions } from '../head/losses.ts';
import { OneCycle, type OneCycleOptions } from './schedule.ts';
import { loadCheckpoint, saveCheckpoint, type CheckpointMeta, type TrainingState } from './checkpoint.ts';

/** OneCycle's options (peak lr — §4: 1e-4 —, total steps of the run, phases, momentum cycle), plus: */
export interface TrainerOptions extends OneCycleOptions {
  seed: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** EMA decay (§4: 0.9997; scale down for short runs); 0 disables the EMA. */
  emaDecay: number;
  /** Weight of the CLIP loss. */
  alpha: number;
  /** Weight of the ASL. */
  beta: number;
  asl: AslOptions;
}

export { defaultTrainerOptions };

export interface StepReport extends StepLosses {
  step: number;
  lr: number;
  beta1: number;
}

export class Trainer {
  readonly head: ClipDecoderHead;
  readonly opts: TrainerOptions;
  readonly rng: Rng;
  readonly adam: Adam;
  readonly schedule: OneCycle;
  readonly ema: Ema | null;

  private constructor(head: ClipDecoderHead, opts: TrainerOptions, rng: Rng) {
    this.head = head;
    this.opts = opts;
    this.rng = rng;
    this.adam = new Adam(head.params.list, { beta2: opts.beta2, eps: opts.eps, weightDecay: opts.weightDecay });
    this.schedule = new OneCycle(opts);
    this.ema = opts.emaDecay > 0 ? new Ema(head.params.list, opts.emaDecay) : null;
  }

  /** A new run: the head is initialised from Rng(seed), and dropout draws continue from the same Rng. */
  static create(config: HeadConfig, backend: MatmulBackend, over: Partial<TrainerOptions> & { totalSteps: number }): Trainer {
    const opts = defaultTrainerOptions(over);
    const rng = new Rng(opts.seed);
    const head = ClipDecoderHead.create(config, backend, rng);
    return new Trainer(head, opts, rng);
  }

  /** Optimiser steps taken. */
  get step(): number {
    return this.adam.step;
  }

  trainStep(batch: TrainBatch): StepReport {
    const step = this.beginStep();
    const losses = this.head.forwardBackward(batch, { alpha: this.opts.alpha, beta: this.opts.beta, rng: this.rng, asl: this.opts.asl });
    return this.finishStep(step, losses);
  }

  /** The step about to be taken; refuses a complete run. (trainStep's first half; the data-parallel trainer's too.) */
  beginStep(): number {
    const step = this.adam.step;
    if (step >= this.opts.totalSteps) {
      throw new ClipDecoderError('INPUT_INVALID', `the run is complete: ${step} of ${this.opts.totalSteps} steps done`, 'totalSteps');
    }
    return step;
  }

  /** Refuses a non-finite loss (TRAINING_DIVERGED); returns the step's learning rate and β1. */
  checkLoss(step: number, losses: StepLosses): { lr: number; beta1: number } {
    if (!Number.isFinite(losses.loss)) {
      throw new ClipDecoderError(
        'TRAINING_DIVERGED',
        `loss became ${losses.loss} at step ${step}; lower the learning rate or check the inputs`,
        'loss',
      );
    }
    return this.schedule.at(step);
  }

  /** With ∂loss/∂θ in every parameter's grad: the divergence check, Adam + EMA on the OneCycle schedule. */
  finishStep(step: number, losses: StepLosses): StepReport {
    const { lr, beta1 } = this.checkLoss(step, losses);
    this.adam.update(lr, beta1, this.ema); // Adam and the EMA in one pass over the weights
    this.head.version++;
    return { ...losses, step, lr, beta1 };
  }

  /** The EMA weights as a head of their own (for evaluation), or the live head when EMA is off. */
  emaHead(): ClipDecoderHead {
    if (!this.ema) return this.head;
    const h = new ClipDecoderHead(this.head.config, this.head.backend);
    this.ema.copyTo(h.params.list);
    h.trainedLabels = this.head.trainedLabels;
    return h;
  }

  snapshot(): TrainingState {
    const names = this.adam.params.map((p) => p.name);
    return {
      step: this.adam.step,
      rng: this.rng.getState(),
      options: { ...this.opts },
      adamM: new Map(names.map((n, i) => [n, this.adam.m[i]])),
      adamV: new Map(names.map((n, i) => [n, this.adam.v[i]])),
      ...(this.ema ? { ema: new Map(this.ema.names.map((n, i) => [n, this.ema!.shadow[i]])) } : {}),
    };
  }

  /** Saves weights + training state (atomic; see checkpoint.ts). */
  async save(dir: string, meta: CheckpointMeta): Promise<void> {
    await saveCheckpoint(dir, this.head, meta, this.snapshot());
  }

  /** Continues a run from a training checkpoint: same weights, moments, EMA, step and RNG state. */
  static async resume(dir: string, backend: MatmulBackend): Promise<{ trainer: Trainer; meta: CheckpointMeta }> {
    const ck = await loadCheckpoint(dir, backend, { withTraining: true });
    const st = ck.training!;
    const opts = defaultTrainerOptions(st.options as Partial<TrainerOptions> & { totalSteps: number });
    const t = new Trainer(ck.head, opts, Rng.fromState(st.rng));
    t.adam.step = st.step;
    t.adam.params.forEach((p, i) => {
      t.adam.m[i].set(st.adamM.get(p.name)!);
      t.adam.v[i].set(st.adamV.get(p.name)!);
    });
    if (t.ema) {
      if (!st.ema) throw new ClipDecoderError('CHECKPOINT_INVALID', `${dir} was saved without EMA weights but the run uses EMA`, dir);
      t.ema.names.forEach((n, i) => t.ema!.shadow[i].set(st.ema!.get(n)!));
    }
    return { trainer: t, meta: ck.meta };
  }
}
