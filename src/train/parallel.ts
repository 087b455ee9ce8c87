// Data-parallel training over worker threads: each worker holds a replica of the head with its own ONNX
// Runtime sessions and runs forward + backward on its share of the batch's images; the main thread keeps the
// one Trainer (weights, Adam moments, EMA, schedule, RNG), computes the CLIP loss over the whole batch from
// the workers' pooled image features mid-step, sums the workers' gradients and takes the Adam step.
//
// Exactness. Every loss term is a sum over images except the InfoNCE, which is computed here over the whole
// batch, so the step's gradient is the sum of the per-share gradients: with W workers it differs from the
// one-thread step only in float summation order. Each worker's dropout masks come from an Rng seeded by a
// draw from the trainer's Rng (W draws per step), so the trainer's RNG state is all a snapshot needs: a
// resumed run continues bit-for-bit for a fixed worker count.
//
// Memory. ONNX Runtime's binding refuses SharedArrayBuffer-backed arrays, so each worker copies the shared
// weights into its own parameters at the start of a step and its gradients into its shared slot at the end
// (one memcpy each way); the images travel by transfer (no copy), the pooled features by message, their
// gradient through shared memory, which the worker waits on with Atomics.wait.
//
// Failures. A worker that throws (it reports the error) or dies (its 'error' / 'exit' event) fails the step
// with a WORKER_FAILED error naming the worker and the cause; the others are stopped, the pool is closed, and
// the Trainer's state is left as it was before the step (no partial gradient is ever applied).
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { ClipDecoderError } from '../errors.ts';
import type { StepLosses, TrainBatch } from '../head/head.ts';
import type { AslOptions } from '../head/losses.ts';
import type { HeadConfig } from '../head/config.ts';
import type { CheckpointMeta, TrainingState } from './checkpoint.ts';
import type { StepReport, Trainer, TrainerOptions } from './trainer.ts';
import type { ClipDecoderHead } from '../head/head.ts';

export interface ParallelOptions {
  /** Worker threads (1 … cores). */
  workers: number;
  /** ONNX Runtime intra-op threads per worker (default: max(1, ⌊cores / workers⌋)). */
  threads?: number;
  /** Tests only: worker `worker` throws or exits (inside the step, after its forward) at step `step`. */
  fault?: { worker: number; step: number; kind: 'throw' | 'exit' };
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
// messages between the main thread and a worker

/** Main → worker, once. */
export interface InitMessage {
  type: 'init';
  index: number;
  config: HeadConfig;
  threads: number;
  names: string[];
  /** Every parameter and buffer, in head.params order, flat. */
  weights: SharedArrayBuffer;
  /** This worker's gradients of the trainable, non-CLIP parameters, in head.params order, flat. */
  grads: SharedArrayBuffer;
  /** Int32 [0] = the generation whose dPooled is ready, [1] = abort. */
  ctrl: SharedArrayBuffer;
  /** Float64 [0] = the step's CLIP loss. */
  clipLoss: SharedArrayBuffer;
}

/** Main → worker, once per step. */
export interface StepMessage {
  type: 'step';
  gen: number;
  step: number;
  seed: number;
  B: number;
  T: number;
  /** This worker's first image in the batch (its rows of dPooled). */
  row0: number;
  features: Float32Array;
  queries?: Float32Array;
  targets: Float32Array;
  logitOffset?: Float32Array;
  alpha: number;
  beta: number;
  asl: AslOptions;
  useClip: boolean;
  /** α·∂clip/∂pooled for the whole batch [B_total, D], written by the main thread mid-step. */
  dPooled: SharedArrayBuffer;
  fault?: 'throw' | 'exit';
}

/** Worker → main. */
export type WorkerReply =
  | { type: 'ready'; index: number }
  | { type: 'pooled'; gen: number; pooled: Float32Array }
  | { type: 'done'; gen: number; asl: number }
  | { type: 'error'; gen: number; message: string };

/** A worker script (eval'd) that registers tsx's ESM hooks and then imports the TypeScript entry at url. */
function tsxBootstrap(url: URL): string {
  const api = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
}

// ---------------------------------------------------------------------------------------------------------

interface Pending {
  gen: number;
  step: number;
  B: number;
  rows: Array<[number, number]>; // [row0, count] per active worker
  pooled: number; // replies received
  done: number;
  asl: number[];
  captions?: Float32Array;
  resolve: (asl: number[]) => void;
  reject: (e: Error) => void;
}

/**
 * A Trainer whose steps run on W worker threads. Same surface as Trainer for the training loop (head, opts,
 * step, emaHead, snapshot, save), but trainStep is async; call close() when done.
 */
export class ParallelTrainer {
  readonly trainer: Trainer;
  readonly workers: number;
  private readonly pool: Worker[];
  private readonly weights: Float32Array;
  private readonly grads: Float32Array[];
  private readonly ctrl: Int32Array;
  private readonly clipLoss: Float64Array;
  private readonly wOffsets: number[]; // per head.params.list entry
  private readonly gOffsets: number[]; // per entry: offset in a grad slot, or -1 (buffer or CLIP-branch parameter)
  private dPooledShared = new Float32Array(new SharedArrayBuffer(4));
  private pooled = new Float32Array(0);
  private dPooled = new Float32Array(0);
  private gen = 0;
  private pending: Pending | null = null;
  private failure: Error | null = null;
  private closing = false;
  private started = false;
  private readonly fault?: ParallelOptions['fault'];

  private constructor(trainer: Trainer, opts: ParallelOptions) {
    this.trainer = trainer;
    this.workers = opts.workers;
    this.fault = opts.fault;
    const head = trainer.head;
    const clipNames = new Set(head.clip?.params.map((p) => p.name) ?? []);
    let nw = 0,
      ng = 0;
    this.wOffsets = [];
    this.gOffsets = [];
    for (const p of head.params.list) {
      this.wOffsets.push(nw);
      nw += p.data.length;
      if (p.grad && !clipNames.has(p.name)) {
        this.gOffsets.push(ng);
        ng += p.data.length;
      } else this.gOffsets.push(-1);
    }
    this.weights = new Float32Array(new SharedArrayBuffer(4 * nw));
    this.grads = Array.from({ length: this.workers }, () => new Float32Array(new SharedArrayBuffer(4 * ng)));
    this.ctrl = new Int32Array(new SharedArrayBuffer(8));
    this.clipLoss = new Float64Array(new SharedArrayBuffer(8));
    this.pool = [];
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
    const head = this.trainer.head;
    const names = head.params.list.map((p) => p.name);
    const ready: Promise<void>[] = [];
    for (let i = 0; i < this.workers; i++) {
      const w = new Worker(entry, { eval: ext === '.ts' });
      this.pool.push(w);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const onReply = (m: WorkerReply) => {
            if (m.type === 'ready') resolve();
            else if (m.type === 'error') reject(new Error(`worker ${i}: ${m.message}`));
          };
          w.on('message', onReply);
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
        config: head.config,
        threads,
        names,
        weights: this.weights.buffer as SharedArrayBuffer,
        grads: this.grads[i].buffer as SharedArrayBuffer,
        ctrl: this.ctrl.buffer as SharedArrayBuffer,
        clipLoss: this.clipLoss.buffer as SharedArrayBuffer,
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

  get head(): ClipDecoderHead {
    return this.trainer.head;
  }
  get opts(): TrainerOptions {
    return this.trainer.opts;
  }
  get step(): number {
    return this.trainer.step;
  }
  emaHead(): ClipDecoderHead {
    return this.trainer.emaHead();
  }
  snapshot(): TrainingState {
    return this.trainer.snapshot();
  }
  save(dir: string, meta: CheckpointMeta): Promise<void> {
    return this.trainer.save(dir, meta);
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
    const C = head.config.inputDim,
      D = head.config.dModel;
    const W = this.workers,
      active = Math.min(W, B);
    const useClip = o.alpha > 0 && head.clip !== null;
    // one dropout seed per worker per step, drawn whatever the batch size, so the Rng advances the same way
    const seeds = Array.from({ length: W }, () => t.rng.nextU32());
    // the weights this step starts from
    head.params.list.forEach((p, k) => this.weights.set(p.data, this.wOffsets[k]));
    if (useClip && this.pooled.length < B * D) {
      this.pooled = new Float32Array(B * D);
      this.dPooled = new Float32Array(B * D);
      this.dPooledShared = new Float32Array(new SharedArrayBuffer(4 * B * D));
    }
    const gen = ++this.gen;
    const rows: Array<[number, number]> = [];
    for (let w = 0, b0 = 0; w < active; w++) {
      const nb = Math.floor(B / active) + (w < B % active ? 1 : 0);
      rows.push([b0, nb]);
      b0 += nb;
    }
    const done = new Promise<number[]>((resolve, reject) => {
      this.pending = { gen, step, B, rows, pooled: 0, done: 0, asl: new Array(active).fill(0), captions: batch.captions, resolve, reject };
    });
    for (const w of this.pool) w.ref();
    let asls: number[];
    try {
      for (let w = 0; w < active; w++) {
        const [b0, nb] = rows[w];
        const msg: StepMessage = {
          type: 'step',
          gen,
          step,
          seed: seeds[w],
          B: nb,
          T,
          row0: b0,
          features: batch.features.slice(b0 * T * C, (b0 + nb) * T * C),
          queries: batch.queries,
          targets: batch.targets.slice(b0 * L, (b0 + nb) * L),
          logitOffset: batch.logitOffset?.slice(b0 * L, (b0 + nb) * L),
          alpha: o.alpha,
          beta: o.beta,
          asl: o.asl,
          useClip,
          dPooled: this.dPooledShared.buffer as SharedArrayBuffer,
          fault: this.fault && this.fault.worker === w && this.fault.step === step ? this.fault.kind : undefined,
        };
        const transfer = [msg.features.buffer as ArrayBuffer, msg.targets.buffer as ArrayBuffer];
        if (msg.logitOffset) transfer.push(msg.logitOffset.buffer as ArrayBuffer);
        this.pool[w].postMessage(msg, transfer);
      }
      asls = await done;
    } finally {
      this.pending = null;
      if (!this.failure) for (const w of this.pool) w.unref();
    }
    // ∂loss/∂θ = Σ_workers (summed in worker order: deterministic)
    head.params.list.forEach((p, k) => {
      const off = this.gOffsets[k];
      if (off < 0) return;
      const g = p.grad!,
        n = g.length;
      g.set(this.grads[0].subarray(off, off + n));
      for (let w = 1; w < active; w++) {
        const s = this.grads[w];
        for (let i = 0; i < n; i++) g[i] += s[off + i];
      }
    });
    if (!useClip && head.clip) for (const q of head.clip.params) q.grad!.fill(0);
    let asl = 0;
    for (const a of asls) asl += a;
    const clip = useClip ? this.clipLoss[0] : 0;
    const losses: StepLosses = { loss: o.beta * asl + o.alpha * clip, asl, clip };
    return t.finishStep(step, losses);
  }

  private onMessage(i: number, m: WorkerReply): void {
    const p = this.pending;
    if (m.type === 'ready') return;
    if (m.type === 'error') {
      this.fail(i, m.message);
      return;
    }
    if (!p || m.gen !== p.gen) return;
    try {
      if (m.type === 'pooled') {
        const D = this.trainer.head.config.dModel;
        const [b0] = p.rows[i];
        this.pooled.set(m.pooled, b0 * D);
        if (++p.pooled === p.rows.length) this.clipStep(p);
      } else if (m.type === 'done') {
        p.asl[i] = m.asl;
        if (++p.done === p.rows.length) p.resolve(p.asl);
      }
    } catch (e) {
      this.fail(-1, `the main thread's part of the step failed: ${(e as Error).stack ?? e}`);
    }
  }

  /** The InfoNCE over the whole batch from the gathered pooled features; its gradient goes back to the workers. */
  private clipStep(p: Pending): void {
    const t = this.trainer,
      head = t.head,
      D = head.config.dModel;
    const n = p.B * D;
    const pooled = this.pooled.subarray(0, n),
      dPooled = this.dPooled.subarray(0, n);
    this.clipLoss[0] = head.clip!.forwardBackward(head.backend, pooled, p.captions!, p.B, dPooled, t.opts.alpha);
    this.dPooledShared.set(dPooled);
    Atomics.store(this.ctrl, 0, p.gen);
    Atomics.notify(this.ctrl, 0);
  }

  private fail(i: number, cause: string): void {
    if (this.failure || this.closing) return;
    const who = i >= 0 ? `training worker ${i} of ${this.workers}` : 'data-parallel training';
    const step = this.pending ? ` at step ${this.pending.step}` : '';
    this.failure = new ClipDecoderError('WORKER_FAILED', `${who} failed${step}: ${cause}; the step was not applied`, 'workers');
    Atomics.store(this.ctrl, 1, 1);
    Atomics.notify(this.ctrl, 0);
    this.pending?.reject(this.failure);
    void this.close();
  }

  /** Stops the workers. The Trainer (this.trainer) stays usable on the main thread. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.pending?.reject(new ClipDecoderError('WORKER_FAILED', 'the training workers were closed during a step', 'workers'));
    await Promise.all(this.pool.map((w) => w.terminate()));
  }
}
