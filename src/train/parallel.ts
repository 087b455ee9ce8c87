// Data-parallel training over worker threads: each worker holds a replica of the head with its own ONNX
// Runtime sessions and runs forward + backward on its share of the batch's images; the main thread computes
// the CLIP loss over the whole batch from the workers' pooled image features mid-step; then every worker
// sums the workers' gradients over its own slice of the parameters and takes the Adam + EMA step there, so
// the reduction and the optimiser run on all cores too.
//
// State. The weights, Adam moments and EMA live in SharedArrayBuffers: the wrapped Trainer's Adam moments and
// EMA averages become views of them (snapshot, save and emaHead read them as before), and its head's weights
// are copied back from the shared master whenever the head is read (`head`, `save`, `emaHead`, `close`).
// ONNX Runtime's binding refuses SharedArrayBuffer-backed arrays, so each worker copies the shared weights
// into its replica at the start of a step (one memcpy). Batches travel through shared memory as well: nothing
// is allocated per step.
//
// Exactness. Every loss term is a sum over images except the InfoNCE, which is computed here over the whole
// batch, so the step's gradient is the sum of the per-share gradients: with W workers it differs from the
// one-thread step only in float summation order; Adam and the EMA are element-wise, so slicing them changes
// nothing. Each worker's dropout masks come from an Rng seeded by a draw from the trainer's Rng (W draws per
// step), so the trainer's RNG state is all a snapshot needs: a resumed run continues bit-for-bit for a fixed
// worker count.
//
// Failures. A worker that throws (it reports the error) or dies (its 'error' / 'exit' event) fails the step
// with a WORKER_FAILED error naming the worker and the cause; the others are stopped and the pool is closed.
// Before the update phase nothing has been applied; a failure during it leaves the weights partly updated, and
// the message says to resume from the last checkpoint. No step ever completes with a partial gradient.
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ClipDecoderError } from '../errors.ts';
import type { ClipDecoderHead, StepLosses, TrainBatch } from '../head/head.ts';
import type { AslOptions } from '../head/losses.ts';
import type { HeadConfig } from '../head/config.ts';
import type { CheckpointMeta, TrainingState } from './checkpoint.ts';
import type { StepReport, Trainer, TrainerOptions } from './trainer.ts';

export interface ParallelOptions {
  /** Worker threads (1 … cores). */
  workers: number;
  /** ONNX Runtime intra-op threads per worker (default: max(1, ⌊cores / workers⌋)). */
  threads?: number;
  /** Tests only: worker `worker` throws or exits at step `step`, after its forward ('throw' | 'exit') or in the update phase. */
  fault?: { worker: number; step: number; kind: 'throw' | 'exit' | 'throw-in-update' };
}

/** The worker count, checked: an integer from 1 to the machine's cores. `subject` names the flag or option. */
export function validateWorkers(n: unknown, subject = 'workers'): number {
  const cores = availableParallelism();
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > cores) {
    throw new ClipDecoderError(
      'BAD_PARAMETER',
      `${subject} must be an integer from 1 to ${cores} (this machine's cores), got ${String(n)}`,
      subject,
    );
  }
  return n;
}

/** The default worker count: min(2, cores). */
export function defaultWorkers(): number {
  return Math.min(2, availableParallelism());
}

// ---------------------------------------------------------------------------------------------------------
// the shared layout and the messages between the main thread and a worker

/** One parameter or buffer in the shared arrays. */
export interface SharedParam {
  name: string;
  n: number;
  /** Offset in weights and ema (every parameter and buffer, head.params order). */
  w: number;
  /** Offset in the moments and gradient slots (trainable ones only), or -1. */
  g: number;
  decay: boolean;
  /** A CLIP-loss parameter: its gradient comes from the main thread (in slot 0), not from the workers. */
  clip: boolean;
}

/** Main → worker, once. */
export interface InitMessage {
  type: 'init';
  index: number;
  workers: number;
  config: HeadConfig;
  threads: number;
  params: SharedParam[];
  weights: SharedArrayBuffer;
  adamM: SharedArrayBuffer;
  adamV: SharedArrayBuffer;
  ema: SharedArrayBuffer | null;
  /** Every worker's gradient slot (Float32 [trainable]); slot 0 also holds the CLIP-loss gradients. */
  grads: SharedArrayBuffer[];
  /** This worker's part of the trainable elements [lo, hi) for the reduction and the update. */
  shard: [number, number];
  /** Int32 [0] = the generation whose dPooled is ready, [1] = abort. */
  ctrl: SharedArrayBuffer;
  /** Float64 [0] = the step's CLIP loss. */
  clipLoss: SharedArrayBuffer;
  adam: { beta2: number; eps: number; weightDecay: number; emaDecay: number };
}

/** The batch in shared memory (grown when a larger batch comes). */
export interface SharedBatch {
  features: SharedArrayBuffer; // [B, T, C]
  queries: SharedArrayBuffer; // [N, E]
  targets: SharedArrayBuffer; // [B, L]
  logitOffset: SharedArrayBuffer; // [B, L]
  pooled: SharedArrayBuffer; // [B, D]  the workers' pooled features, gathered
  dPooled: SharedArrayBuffer; // [B, D]  α·∂clip/∂pooled
}

/** Float32 views of a SharedBatch's buffers (main thread and workers each hold one set). */
export interface BatchViews {
  features: Float32Array;
  queries: Float32Array;
  targets: Float32Array;
  offset: Float32Array;
  pooled: Float32Array;
  dPooled: Float32Array;
}

/** Main → worker, once per step: forward + backward on images [row0, row0 + B). */
export interface StepMessage {
  type: 'step';
  gen: number;
  step: number;
  seed: number;
  B: number;
  T: number;
  row0: number;
  /** Labels per image (targets, logitOffset) and query values. */
  L: number;
  queryLength: number;
  hasQueries: boolean;
  hasOffset: boolean;
  alpha: number;
  beta: number;
  asl: AslOptions;
  useClip: boolean;
  batch: SharedBatch;
  fault?: 'throw' | 'exit';
}

/** Main → worker: sum the first `active` gradient slots over this worker's shard and take update t. */
export interface UpdateMessage {
  type: 'update';
  gen: number;
  t: number;
  lr: number;
  beta1: number;
  active: number;
  fault?: 'throw';
}

/** Worker → main. */
export type WorkerReply =
  | { type: 'ready'; index: number }
  | { type: 'pooled'; gen: number }
  | { type: 'done'; gen: number; asl: number }
  | { type: 'updated'; gen: number }
  | { type: 'error'; gen: number; message: string };

// ---------------------------------------------------------------------------------------------------------

/** A worker script (eval'd) that registers tsx's ESM hooks and then imports the TypeScript entry at url. */
function tsxBootstrap(url: URL): string {
  const api = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
}

const sab = (floats: number) => new SharedArrayBuffer(4 * Math.max(1, floats));

interface Phase {
  kind: 'step' | 'update';
  gen: number;
  step: number;
  expect: number; // replies awaited
  got: number;
  pooled: number;
  asl: number[];
  B: number;
  captions?: Float32Array;
  resolve: () => void;
  reject: (e: Error) => void;
}

/**
 * A Trainer whose steps run on W worker threads. Same surface as Trainer for the training loop (head, opts,
 * step, emaHead, snapshot, save), but trainStep is async; call close() when done.
 */
export class ParallelTrainer {
  readonly trainer: Trainer;
  readonly workers: number;
  private readonly pool: Worker[] = [];
  private readonly layout: SharedParam[];
  private readonly weights: Float32Array;
  private readonly grads: Float32Array[];
  private readonly ctrl: Int32Array;
  private readonly clipLoss: Float64Array;
  private readonly shards: Array<[number, number]>;
  private batch: SharedBatch;
  private views: BatchViews;
  private dPooledLocal = new Float32Array(0);
  private pooledLocal = new Float32Array(0);
  private gen = 0;
  private phase: Phase | null = null;
  private failure: Error | null = null;
  private closing = false;
  private started = false;
  private stale = false; // the head's weights are behind the shared master
  private readonly fault?: ParallelOptions['fault'];

  private constructor(trainer: Trainer, opts: ParallelOptions) {
    this.trainer = trainer;
    this.workers = opts.workers;
    this.fault = opts.fault;
    const head = trainer.head;
    const clipNames = new Set(head.clip?.params.map((p) => p.name) ?? []);
    let nw = 0,
      ng = 0;
    this.layout = head.params.list.map((p) => {
      const e: SharedParam = { name: p.name, n: p.data.length, w: nw, g: p.grad ? ng : -1, decay: p.decay, clip: clipNames.has(p.name) };
      nw += p.data.length;
      if (p.grad) ng += p.data.length;
      return e;
    });
    // the master weights, and the trainer's moments and EMA moved into shared memory (same values)
    this.weights = new Float32Array(sab(nw));
    const m = new Float32Array(sab(ng)),
      v = new Float32Array(sab(ng));
    const ema = trainer.ema ? new Float32Array(sab(nw)) : null;
    const adam = trainer.adam;
    const byName = new Map(this.layout.map((e) => [e.name, e]));
    head.params.list.forEach((p, k) => this.weights.set(p.data, this.layout[k].w));
    adam.params.forEach((p, i) => {
      const e = byName.get(p.name)!;
      m.set(adam.m[i], e.g);
      v.set(adam.v[i], e.g);
      adam.m[i] = m.subarray(e.g, e.g + e.n);
      adam.v[i] = v.subarray(e.g, e.g + e.n);
    });
    if (ema && trainer.ema) {
      trainer.ema.names.forEach((name, i) => {
        const e = byName.get(name)!;
        ema.set(trainer.ema!.shadow[i], e.w);
        trainer.ema!.shadow[i] = ema.subarray(e.w, e.w + e.n);
      });
    }
    this.grads = Array.from({ length: this.workers }, () => new Float32Array(sab(ng)));
    this.ctrl = new Int32Array(new SharedArrayBuffer(8));
    this.clipLoss = new Float64Array(new SharedArrayBuffer(8));
    this.shards = Array.from({ length: this.workers }, (_, w) => [
      Math.floor((ng * w) / this.workers),
      Math.floor((ng * (w + 1)) / this.workers),
    ]);
    this.shared = { m, v, ema };
    this.batch = { features: sab(0), queries: sab(0), targets: sab(0), logitOffset: sab(0), pooled: sab(0), dPooled: sab(0) };
    this.views = this.viewsOf(this.batch);
  }

  private readonly shared: { m: Float32Array; v: Float32Array; ema: Float32Array | null };

  private viewsOf(b: SharedBatch) {
    return {
      features: new Float32Array(b.features),
      queries: new Float32Array(b.queries),
      targets: new Float32Array(b.targets),
      offset: new Float32Array(b.logitOffset),
      pooled: new Float32Array(b.pooled),
      dPooled: new Float32Array(b.dPooled),
    };
  }

  /** Starts the workers (each loads the engine and builds its head) around an existing Trainer. */
  static async create(trainer: Trainer, opts: ParallelOptions): Promise<ParallelTrainer> {
    const W = validateWorkers(opts.workers);
    const threads = opts.threads ?? Math.max(1, Math.floor(availableParallelism() / W));
    const pt = new ParallelTrainer(trainer, { ...opts, workers: W });
    await pt.start(threads);
    return pt;
  }

  private async start(threads: number): Promise<void> {
    const ext = extname(fileURLToPath(import.meta.url)); // .ts from source (tsx), .js from dist/
    const url = new URL(`./parallel-worker${ext}`, import.meta.url);
    // From source, the worker needs tsx's loader: Node 20 does not apply an inherited `--import tsx` to a worker's
    // entry module, so a two-line bootstrap registers tsx's hooks, then imports the entry.
    const entry: string | URL = ext === '.ts' ? tsxBootstrap(url) : url;
    const t = this.trainer;
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.workers; i++) {
      const w = new Worker(entry, { eval: ext === '.ts' });
      this.pool.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          w.on('message', (m: WorkerReply) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'error') reject(new Error(`worker ${i}: ${m.message}`));
          });
          w.once('error', (e) => reject(new Error(`worker ${i}: ${e.message}`)));
          w.once('exit', (code) => reject(new Error(`worker ${i} exited (code ${code})`)));
        }),
      );
      w.on('message', (m: WorkerReply) => this.started && this.onMessage(i, m));
      w.on('error', (e: Error) => this.started && this.fail(i, `threw ${e?.stack ?? e}`));
      w.on('messageerror', (e: Error) => this.started && this.fail(i, `sent a message that could not be read: ${e.message}`));
      w.on('exit', (code: number) => this.started && this.fail(i, `exited (code ${code})`));
      const init: InitMessage = {
        type: 'init',
        index: i,
        workers: this.workers,
        config: t.head.config,
        threads,
        params: this.layout,
        weights: this.weights.buffer as SharedArrayBuffer,
        adamM: this.shared.m.buffer as SharedArrayBuffer,
        adamV: this.shared.v.buffer as SharedArrayBuffer,
        ema: (this.shared.ema?.buffer as SharedArrayBuffer | undefined) ?? null,
        grads: this.grads.map((g) => g.buffer as SharedArrayBuffer),
        shard: this.shards[i],
        ctrl: this.ctrl.buffer as SharedArrayBuffer,
        clipLoss: this.clipLoss.buffer as SharedArrayBuffer,
        adam: { beta2: t.opts.beta2, eps: t.opts.eps, weightDecay: t.opts.weightDecay, emaDecay: t.ema ? t.ema.decay : 0 },
      };
      w.postMessage(init);
    }
    try {
      await Promise.all(ready);
    } catch (e) {
      await this.close();
      throw new ClipDecoderError('WORKER_FAILED', `a training worker failed to start: ${(e as Error).message}`, 'workers', { cause: e });
    }
    this.started = true;
    for (const w of this.pool) w.unref(); // a pool left open does not keep the process alive between steps
  }

  /** The head, its weights brought up to date from the shared master. */
  get head(): ClipDecoderHead {
    this.syncHead();
    return this.trainer.head;
  }
  get opts(): TrainerOptions {
    return this.trainer.opts;
  }
  get step(): number {
    return this.trainer.step;
  }
  emaHead(): ClipDecoderHead {
    this.syncHead();
    return this.trainer.emaHead();
  }
  snapshot(): TrainingState {
    return this.trainer.snapshot();
  }
  save(dir: string, meta: CheckpointMeta): Promise<void> {
    this.syncHead();
    return this.trainer.save(dir, meta);
  }

  private syncHead(): void {
    if (!this.stale) return;
    const list = this.trainer.head.params.list;
    this.layout.forEach((e, k) => list[k].data.set(this.weights.subarray(e.w, e.w + e.n)));
    this.stale = false;
  }

  /** ∂loss/∂θ of the last step, summed over the workers (tests; the step itself sums shard by shard in the workers). */
  lastGradients(): Map<string, Float32Array> {
    const out = new Map<string, Float32Array>();
    const active = this.lastActive;
    for (const e of this.layout) {
      if (e.g < 0) continue;
      const g = Float32Array.from(this.grads[0].subarray(e.g, e.g + e.n));
      if (!e.clip) for (let w = 1; w < active; w++) for (let i = 0; i < e.n; i++) g[i] += this.grads[w][e.g + i];
      out.set(e.name, g);
    }
    return out;
  }
  private lastActive = 0;

  /** The shared batch buffers, grown to hold this batch. */
  private fit(n: { features: number; queries: number; targets: number; pooled: number }): void {
    const b = this.batch;
    let grown = false;
    const grow = (key: keyof SharedBatch, floats: number) => {
      if (b[key].byteLength < 4 * floats) {
        b[key] = sab(floats);
        grown = true;
      }
    };
    grow('features', n.features);
    grow('queries', n.queries);
    grow('targets', n.targets);
    grow('logitOffset', n.targets);
    grow('pooled', n.pooled);
    grow('dPooled', n.pooled);
    if (grown) this.views = this.viewsOf(b);
  }

  /** One optimisation step over the batch, its images split across the workers in order. */
  async trainStep(batch: TrainBatch): Promise<StepReport> {
    if (this.failure) throw this.failure;
    if (this.closing) throw new ClipDecoderError('WORKER_FAILED', 'the training workers are closed', 'workers');
    const t = this.trainer,
      o = t.opts,
      head = t.head;
    const step = t.beginStep();
    head.checkBatch(batch, { alpha: o.alpha, beta: o.beta, rng: t.rng, asl: o.asl });
    const { B, T } = batch;
    const L = batch.targets.length / B;
    const D = head.config.dModel;
    const W = this.workers,
      active = Math.min(W, B);
    const useClip = o.alpha > 0 && head.clip !== null;
    // one dropout seed per worker per step, drawn whatever the batch size, so the Rng advances the same way
    const seeds = Array.from({ length: W }, () => t.rng.nextU32());
    // the batch into shared memory
    const q = batch.queries;
    this.fit({ features: batch.features.length, queries: q?.length ?? 0, targets: batch.targets.length, pooled: B * D });
    const v = this.views;
    v.features.set(batch.features);
    if (q) v.queries.set(q);
    v.targets.set(batch.targets);
    if (batch.logitOffset) v.offset.set(batch.logitOffset);
    if (useClip) {
      // the CLIP-loss weights the main thread uses, from the shared master
      this.layout.forEach((e, k) => {
        if (e.clip) head.params.list[k].data.set(this.weights.subarray(e.w, e.w + e.n));
      });
      if (this.pooledLocal.length < B * D) {
        this.pooledLocal = new Float32Array(B * D);
        this.dPooledLocal = new Float32Array(B * D);
      }
    }
    // phase 1: forward + backward on every worker (the InfoNCE on this thread mid-way)
    const gen = ++this.gen;
    const asl = await this.run('step', gen, step, active, B, batch.captions, (w, row0, nb) => {
      const msg: StepMessage = {
        type: 'step',
        gen,
        step,
        seed: seeds[w],
        B: nb,
        T,
        row0,
        L,
        queryLength: q?.length ?? 0,
        hasQueries: !!q,
        hasOffset: !!batch.logitOffset,
        alpha: o.alpha,
        beta: o.beta,
        asl: o.asl,
        useClip,
        batch: this.batch,
        fault:
          this.fault && this.fault.worker === w && this.fault.step === step && this.fault.kind !== 'throw-in-update'
            ? this.fault.kind
            : undefined,
      };
      return msg;
    });
    this.lastActive = active;
    if (!useClip && head.clip) {
      for (const e of this.layout) if (e.clip && e.g >= 0) this.grads[0].fill(0, e.g, e.g + e.n);
    }
    let aslSum = 0;
    for (const a of asl) aslSum += a;
    const clip = useClip ? this.clipLoss[0] : 0;
    const losses: StepLosses = { loss: o.beta * aslSum + o.alpha * clip, asl: aslSum, clip };
    const { lr, beta1 } = t.checkLoss(step, losses);
    // phase 2: every worker sums the gradients over its shard and takes the Adam + EMA step there
    const ugen = ++this.gen;
    await this.run('update', ugen, step, W, B, undefined, (w) => {
      const msg: UpdateMessage = {
        type: 'update',
        gen: ugen,
        t: step + 1,
        lr,
        beta1,
        active,
        fault:
          this.fault && this.fault.worker === w && this.fault.step === step && this.fault.kind === 'throw-in-update' ? 'throw' : undefined,
      };
      return msg;
    });
    t.adam.step = step + 1;
    // what Adam does not touch (fixed buffers) is averaged here, as Adam.update does
    t.ema?.updateExcept(new Set(t.adam.params.map((p) => p.name)));
    this.stale = true;
    head.version++;
    return { ...losses, step, lr, beta1 };
  }

  /** Posts one message per worker (images split in order for a step) and waits for every reply. */
  private async run(
    kind: Phase['kind'],
    gen: number,
    step: number,
    count: number,
    B: number,
    captions: Float32Array | undefined,
    message: (w: number, row0: number, nb: number) => StepMessage | UpdateMessage,
  ): Promise<number[]> {
    const asl = new Array<number>(count).fill(0);
    const done = new Promise<void>((resolve, reject) => {
      this.phase = { kind, gen, step, expect: count, got: 0, pooled: 0, asl, B, captions, resolve, reject };
    });
    for (const w of this.pool) w.ref();
    try {
      for (let w = 0, row0 = 0; w < count; w++) {
        const nb = Math.floor(B / count) + (w < B % count ? 1 : 0);
        this.pool[w].postMessage(message(w, row0, nb));
        row0 += nb;
      }
      await done;
    } finally {
      this.phase = null;
      if (!this.failure) for (const w of this.pool) w.unref();
    }
    return asl;
  }

  private onMessage(i: number, m: WorkerReply): void {
    if (m.type === 'ready') return;
    if (m.type === 'error') {
      this.fail(i, m.message);
      return;
    }
    const p = this.phase;
    if (!p || m.gen !== p.gen) return;
    try {
      if (m.type === 'pooled') {
        if (++p.pooled === p.expect) this.clipStep(p);
      } else if (m.type === 'done' || m.type === 'updated') {
        if (m.type === 'done') p.asl[i] = m.asl;
        if (++p.got === p.expect) p.resolve();
      }
    } catch (e) {
      this.fail(-1, `the main thread's part of the step failed: ${(e as Error).stack ?? e}`);
    }
  }

  /** The InfoNCE over the whole batch from the gathered pooled features; its gradients go to the workers (dPooled) and to slot 0. */
  private clipStep(p: Phase): void {
    const t = this.trainer,
      head = t.head,
      D = head.config.dModel;
    const n = p.B * D;
    const pooled = this.pooledLocal.subarray(0, n),
      dPooled = this.dPooledLocal.subarray(0, n);
    pooled.set(this.views.pooled.subarray(0, n)); // ORT reads our own arrays only
    this.clipLoss[0] = head.clip!.forwardBackward(head.backend, pooled, p.captions!, p.B, dPooled, t.opts.alpha);
    this.views.dPooled.set(dPooled);
    this.layout.forEach((e, k) => {
      if (e.clip && e.g >= 0) this.grads[0].set(head.params.list[k].grad!, e.g);
    });
    Atomics.store(this.ctrl, 0, p.gen);
    Atomics.notify(this.ctrl, 0);
  }

  private fail(i: number, cause: string): void {
    if (this.failure || this.closing) return;
    const who = i >= 0 ? `training worker ${i} of ${this.workers}` : 'data-parallel training';
    const p = this.phase;
    const at = p ? ` at step ${p.step}` : '';
    const consequence =
      p?.kind === 'update'
        ? 'during the update: the weights are partly updated; resume from the last checkpoint'
        : 'the step was not applied';
    this.failure = new ClipDecoderError('WORKER_FAILED', `${who} failed${at}: ${cause}; ${consequence}`, 'workers');
    Atomics.store(this.ctrl, 1, 1);
    Atomics.notify(this.ctrl, 0);
    p?.reject(this.failure);
    void this.close();
  }

  /** Stops the workers. The Trainer (this.trainer) stays usable on the main thread, its head up to date. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.phase?.reject(new ClipDecoderError('WORKER_FAILED', 'the training workers were closed during a step', 'workers'));
    await Promise.all(this.pool.map((w) => w.terminate()));
    if (!this.failure || this.failure.message.includes('was not applied')) this.syncHead();
  }
}
