// Training a head on a dataset: batches of cached image features, seen-label targets and seen-label captions go
// through the Trainer; after each epoch the EMA head is scored on the validation images with the pseudo-unseen
// labels held out (model selection never looks at the test split); the best epoch is kept as a checkpoint, the
// latest as a resumable one. Only seen labels ever reach the loss.
import { existsSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import type { ClipDecoderHead } from '../head/head.ts';
import { defaultHeadConfig, type HeadConfig } from '../head/config.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import { createRng, shuffleInPlace } from '../data/random.ts';
import type { FeatureSource } from '../features/cache.ts';
import { viewKey } from '../features/extract.ts';
import { evaluateProtocol, type ProtocolResult } from '../eval/protocol.ts';
import { globalScores } from '../head/fusion.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { lineChartSvg } from '../eval/svg.ts';
import { saveCheckpoint, type CheckpointMeta } from './checkpoint.ts';
import { autoEmaDecay, FIT_DEFAULTS } from './defaults.ts';
import { Trainer, type TrainerOptions } from './trainer.ts';
import { ParallelTrainer, validateWorkers } from './parallel.ts';

/** The training images: cache ids, seen-label targets and the caption embedding of each image. */
export interface FitTrainData {
  ids: string[];
  /** Augmented views per image in the cache beyond the plain one (one is drawn per epoch). */
  extraViews: number;
  labels: string[];
  targets: Uint8Array; // [N, L]
  /** Query embeddings of `labels` [L, E]. */
  queries: Float32Array;
  /** Caption embeddings [N, E] for the CLIP loss (captions of seen labels only); absent when alpha = 0. */
  captions?: Float32Array;
}

/**
 * A residual head (CLIP-Decoder+): the loss sees scale · cos(image, label) + bias + head logit, CLIP's own
 * calibrated score plus the head's correction; validation scores the same sum. Needs CLIP label queries.
 */
export interface ResidualStream {
  scale: number;
  bias: number;
}

/** Images + labels scored after each epoch (validation) or at the end (test). */
export interface FitEvalData {
  ids: string[];
  seen: string[];
  unseen: string[];
  targets: Uint8Array; // [N, seen + unseen]
  /** Query embeddings of seen then unseen labels [L, E]. */
  queries: Float32Array;
}

export { autoEmaDecay, FIT_DEFAULTS } from './defaults.ts';

export interface FitOptions {
  outDir: string;
  /** Default FIT_DEFAULTS.epochs; when resuming, the run's own. */
  epochs?: number;
  /** Default FIT_DEFAULTS.batchSize; when resuming, the run's own. */
  batchSize?: number;
  /** Default FIT_DEFAULTS.seed; when resuming, the run's own. */
  seed?: number;
  /** Trainer options (lr, weight decay, EMA, alpha, beta...); when resuming, any given must equal the run's. */
  trainer?: Partial<Omit<TrainerOptions, 'totalSteps' | 'seed'>>;
  /** Head architecture over defaults (input/query widths are taken from the data); when resuming, as above. */
  head?: Partial<HeadConfig>;
  /** Written into the checkpoints. */
  meta: Omit<CheckpointMeta, 'labels' | 'hyperParameters' | 'metrics'> & { hyperParameters?: Record<string, unknown> };
  /** Continue from outDir/last; without one, a new run starts (and onLog says so). */
  resume?: boolean;
  /** Also save outDir/last every this many steps within an epoch (default: by time only). */
  checkpointEverySteps?: number;
  /** Also save outDir/last when this many minutes passed since the last save (default 5; 0: off). */
  checkpointEveryMinutes?: number;
  /** How the caller's user names each option (e.g. {'head.dModel': '--d-model'}), for messages. */
  optionNames?: Readonly<Record<string, string>>;
  onLog?: (line: string) => void;
  /** Called after every optimisation step (the CLI draws its progress bar from it). */
  onProgress?: (p: TrainProgress) => void;
  /** Stop after this many epochs in this call (tests use it to simulate an interruption). */
  stopAfterEpochs?: number;
  /** Stop after this many steps in this call, without saving (tests: a kill mid-epoch). */
  stopAfterSteps?: number;
  /** Train as a residual on CLIP's global score (see ResidualStream); when resuming, must equal the run's. */
  residual?: ResidualStream;
  /**
   * ASL on a random subset of this many labels per step (DualCoOp's trick for large label sets: the step's cost
   * is linear in labels); default: every label. Drawn from (seed, epoch, step), so a resumed run draws the same.
   */
  labelsPerStep?: number;
  /**
   * Worker threads for data-parallel steps (train/parallel.ts; 1 … cores, default 1: the step runs on this
   * thread). Results differ from 1 worker by float summation order and dropout draws; a resume is bit-for-bit
   * for the same count.
   */
  workers?: number;
}

export interface TrainProgress {
  /** Optimiser steps done in the run (including those before a resume). */
  step: number;
  totalSteps: number;
  /** The step this call started from (0, or where it resumed). */
  startStep: number;
  /** 1-based epoch the step belongs to. */
  epoch: number;
  epochs: number;
  /** This step's loss. */
  loss: number;
}

export interface EpochLog {
  epoch: number;
  step: number;
  loss: number;
  asl: number;
  clip: number;
  seconds: number;
  val: { zslMAP: number | null; gzslMAP: number | null };
}

export interface FitResult {
  bestEpoch: number;
  bestScore: number;
  epochs: EpochLog[];
  bestDir: string;
  lastDir: string;
  secondsPerEpoch: number;
}

const LOG_FILE = 'training-log.json';

/** Where a run stands, kept in outDir/last's config.json (extra.progress) so a resume needs no other file. */
interface RunProgress {
  epochs: EpochLog[];
  best: { epoch: number; score: number | null };
  /** Loss sums of the current epoch's steps so far (a mid-epoch checkpoint). */
  epochSums: { loss: number; asl: number; clip: number };
}

/** The settings of the run saved in outDir/last (undefined when there is none), without loading its weights. */
export function savedRunSettings(
  outDir: string,
): { epochs?: number; batchSize?: number; seed?: number; extraViews?: number; templates?: string[]; queries?: string } | undefined {
  const path = join(outDir, 'last', 'config.json');
  if (!existsSync(path)) return undefined;
  try {
    const cfg = JSON.parse(readFileSync(path, 'utf8')) as {
      hyperParameters?: Record<string, unknown>;
      promptTemplates?: unknown;
      extra?: { queries?: unknown };
    };
    const hp = cfg.hyperParameters ?? {};
    const num = (k: string) => (typeof hp[k] === 'number' ? (hp[k] as number) : undefined);
    return {
      epochs: num('epochs'),
      batchSize: num('batchSize'),
      seed: num('seed'),
      extraViews: num('extraViews'),
      templates: Array.isArray(cfg.promptTemplates) ? cfg.promptTemplates.map(String) : undefined,
      queries: typeof cfg.extra?.queries === 'string' ? cfg.extra.queries : undefined,
    };
  } catch {
    return undefined; // loadCheckpoint reports the damage with its own message
  }
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/** The entries that were given: undefined ones must not override defaults when spread. */
function given<T extends object>(o: T | undefined): Partial<T> {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The validation score that selects the epoch: ZSL mAP on the held-out labels (GZSL mAP if there are none). */
export function selectionScore(r: ProtocolResult): number {
  return r.zsl ? r.zsl.mAP : r.gzsl.mAP;
}

/** Scores [N, L] of images from the cache for a label set (EMA or live head). */
export function scoreFromCache(
  head: ClipDecoderHead,
  cache: FeatureSource,
  ids: readonly string[],
  labels: readonly string[],
  queries: Float32Array,
  batchSize = 64,
  residual?: ResidualStream,
): Float32Array {
  const { numTokens: T, tokenDim: C, embedDim: E } = cache.meta;
  const L = labels.length;
  const prepared = head.prepareLabels(labels, queries);
  const out = new Float32Array(ids.length * L);
  const features = new Float32Array(batchSize * T * C);
  const embeds = new Float32Array(batchSize * E);
  for (let s = 0; s < ids.length; s += batchSize) {
    const n = Math.min(batchSize, ids.length - s);
    for (let b = 0; b < n; b++)
      cache.read(ids[s + b]!, { tokens: features.subarray(b * T * C, (b + 1) * T * C), imageEmbed: embeds.subarray(b * E, (b + 1) * E) });
    const { logits } = head.predict(features.subarray(0, n * T * C), n, T, prepared);
    if (residual) addResidual(logits, embeds.subarray(0, n * E), n, queries, L, E, residual);
    out.set(logits, s * L);
  }
  return out;
}

/** logits += scale · cos(image, label) + bias, in place [B, L]. */
function addResidual(
  logits: Float32Array,
  embeds: Float32Array,
  B: number,
  queries: Float32Array,
  L: number,
  E: number,
  r: ResidualStream,
): void {
  const g = globalScores(embeds, B, queries, L, E);
  for (let i = 0; i < B * L; i++) logits[i] += r.scale * g[i]! + r.bias;
}

export function evaluateHead(head: ClipDecoderHead, cache: FeatureSource, data: FitEvalData, residual?: ResidualStream): ProtocolResult {
  const labels = [...data.seen, ...data.unseen];
  const scores = scoreFromCache(head, cache, data.ids, labels, data.queries, 64, residual);
  return evaluateProtocol({ scores, labels, targets: data.targets, images: data.ids.length }, data.seen, data.unseen);
}

function checkNoLeak(train: FitTrainData, val: FitEvalData | null): void {
  const held = new Set(val?.unseen ?? []);
  const leak = train.labels.find((l) => held.has(l));
  if (leak)
    throw new ClipDecoderError('DATASET_INVALID', `label "${leak}" is a training target but is held out as unseen for validation`, leak);
}

/** Checks what fitHead trains on: no leak, images and queries present, every image in the cache. */
function checkFitInputs(cache: FeatureSource, train: FitTrainData, val: FitEvalData | null): void {
  checkNoLeak(train, val);
  const L = train.labels.length;
  if (train.ids.length === 0) throw new ClipDecoderError('DATASET_INVALID', 'no training images', 'train');
  if (L === 0 || train.queries.length % L !== 0) {
    throw new ClipDecoderError('INPUT_INVALID', `query embeddings hold ${train.queries.length} values for ${L} labels`, 'queries');
  }
  for (const id of [...train.ids, ...(val?.ids ?? [])]) {
    if (!cache.has(id))
      throw new ClipDecoderError('CACHE_MISMATCH', `${cache.dir}: no features for image "${id}"; run \`clip-decoder extract\` first`, id);
  }
}

/** A run opened for training: a new one, or the one in OUT/last resumed (its settings checked), and its schedule. */
interface OpenRun {
  trainer: Trainer;
  progress: RunProgress;
  epochs: number;
  /** The batch size asked for, and the one used (at most the number of training images). */
  batchSize: number;
  B: number;
  stepsPerEpoch: number;
  totalSteps: number;
  seed: number;
  alpha: number;
  /** The run's residual stream and label-subset size (a resumed run's own when not given). */
  residual?: ResidualStream;
  labelsPerStep?: number;
}

async function openRun(
  cache: FeatureSource,
  train: FitTrainData,
  backend: MatmulBackend,
  opts: FitOptions,
  lastDir: string,
  log: (s: string) => void,
): Promise<OpenRun> {
  const N = train.ids.length,
    L = train.labels.length;
  const { tokenDim: C, embedDim: E } = cache.meta;
  const flag = (k: string) => opts.optionNames?.[k] ?? k;
  const resuming = Boolean(opts.resume) && existsSync(join(lastDir, 'config.json'));
  if (opts.resume && !resuming) log(`resume: nothing to resume in ${lastDir} (no checkpoint yet); starting a new run`);
  let trainer: Trainer;
  let progress: RunProgress = { epochs: [], best: { epoch: -1, score: null }, epochSums: { loss: 0, asl: 0, clip: 0 } };
  let epochs: number, batchSize: number, seed: number;
  let residual = opts.residual;
  let labelsPerStep = opts.labelsPerStep;
  if (resuming) {
    const { trainer: t, meta } = await Trainer.resume(lastDir, backend);
    trainer = t;
    const hp = meta.hyperParameters ?? {};
    // not given: the run's own (a residual run resumed without --residual is still residual)
    residual = opts.residual ?? (hp.residual as ResidualStream | undefined);
    labelsPerStep = opts.labelsPerStep ?? (hp.labelsPerStep as number | undefined);
    // Options given must equal the run's: a changed schedule or architecture would silently be another run.
    const diffs: string[] = [];
    const check = (key: string, given: unknown, saved: unknown) => {
      if (given !== undefined && !same(given, saved))
        diffs.push(`${flag(key)} ${JSON.stringify(given)} (the run has ${JSON.stringify(saved)})`);
    };
    check('epochs', opts.epochs, hp.epochs);
    check('batchSize', opts.batchSize, hp.batchSize);
    check('seed', opts.seed, trainer.opts.seed);
    check('extraViews', train.extraViews, hp.extraViews ?? 0);
    for (const [k, v] of Object.entries(opts.trainer ?? {}))
      check(`trainer.${k}`, v, (trainer.opts as unknown as Record<string, unknown>)[k]);
    for (const [k, v] of Object.entries(opts.head ?? {}))
      check(`head.${k}`, v, (trainer.head.config as unknown as Record<string, unknown>)[k]);
    check('residual', opts.residual, hp.residual);
    check('labelsPerStep', opts.labelsPerStep, hp.labelsPerStep);
    if (diffs.length) {
      throw new ClipDecoderError(
        'RESUME_MISMATCH',
        `resume: ${lastDir} is a run with other settings: ${diffs.join(', ')}; drop these to continue it, or train into a new output folder`,
        diffs[0]!.split(' ')[0],
      );
    }
    epochs = typeof hp.epochs === 'number' ? hp.epochs : FIT_DEFAULTS.epochs;
    batchSize = typeof hp.batchSize === 'number' ? hp.batchSize : FIT_DEFAULTS.batchSize;
    seed = trainer.opts.seed;
    if (!same(meta.labels, train.labels)) {
      throw new ClipDecoderError(
        'RESUME_MISMATCH',
        `resume: ${lastDir} was trained on other labels (${meta.labels.length}, now ${L}: did the dataset, its split, --final or --train-on-unseen change?); train into a new output folder`,
        'labels',
      );
    }
    const saved = (meta.extra as { progress?: RunProgress } | undefined)?.progress;
    progress = saved ?? (await progressFromLog(opts.outDir, lastDir, trainer.step));
    log(
      `resuming at step ${trainer.step} (epoch ${progress.epochs.length}${trainer.step > (progress.epochs.at(-1)?.step ?? 0) ? ', mid-epoch' : ''})`,
    );
  } else {
    epochs = opts.epochs ?? FIT_DEFAULTS.epochs;
    batchSize = opts.batchSize ?? FIT_DEFAULTS.batchSize;
    seed = opts.seed ?? FIT_DEFAULTS.seed;
  }
  const B = Math.min(batchSize, N);
  const stepsPerEpoch = Math.floor(N / B); // drop the last partial batch, as the official loader does
  const totalSteps = stepsPerEpoch * epochs;
  if (resuming && trainer!.opts.totalSteps !== totalSteps) {
    throw new ClipDecoderError(
      'RESUME_MISMATCH',
      `resume: ${lastDir} is a run of ${trainer!.opts.totalSteps} steps, but ${N} training images in batches of ${B} for ${epochs} epochs make ${totalSteps}: the training set changed; train into a new output folder`,
      'dataset',
    );
  }
  const alpha = resuming ? trainer!.opts.alpha : (opts.trainer?.alpha ?? 1);
  if (alpha > 0 && !train.captions)
    throw new ClipDecoderError('INPUT_INVALID', 'alpha > 0 needs caption embeddings for the CLIP loss', 'captions');
  if (!resuming) {
    const config = defaultHeadConfig({
      inputDim: C,
      queryDim: queryDim(train),
      captionDim: E,
      clipProjDim: alpha > 0 ? (opts.head?.clipProjDim ?? E) : 0,
      ...opts.head,
    });
    // Without an explicit EMA decay, scale it to the run: 0.9997 over 95 steps would keep the initial weights.
    trainer = Trainer.create(config, backend, {
      ...opts.trainer,
      emaDecay: opts.trainer?.emaDecay ?? autoEmaDecay(totalSteps),
      seed,
      totalSteps,
    });
  }
  trainer!.head.trainedLabels = train.labels;
  return { trainer: trainer!, progress, epochs, batchSize, B, stepsPerEpoch, totalSteps, seed, alpha, residual, labelsPerStep };
}

/**
 * Trains (or resumes) a head; returns the per-epoch log and where the best and last checkpoints are. Without
 * validation data (a final run on all training images) the last epoch counts as the best.
 */
export async function fitHead(
  cache: FeatureSource,
  train: FitTrainData,
  val: FitEvalData | null,
  backend: MatmulBackend,
  fitOpts: FitOptions,
): Promise<FitResult> {
  const workers = validateWorkers(fitOpts.workers ?? 1, fitOpts.optionNames?.workers ?? 'workers');
  const pool: { trainer?: ParallelTrainer } = {};
  try {
    return await fitRun(cache, train, val, backend, fitOpts, workers, pool);
  } finally {
    await pool.trainer?.close();
  }
}

async function fitRun(
  cache: FeatureSource,
  train: FitTrainData,
  val: FitEvalData | null,
  backend: MatmulBackend,
  fitOpts: FitOptions,
  workers: number,
  pool: { trainer?: ParallelTrainer },
): Promise<FitResult> {
  const opts: FitOptions = { ...fitOpts, trainer: given(fitOpts.trainer), head: given(fitOpts.head) };
  checkFitInputs(cache, train, val);
  const L = train.labels.length;
  const { numTokens: T, tokenDim: C, embedDim: E } = cache.meta;
  const lastDir = join(opts.outDir, 'last');
  const bestDir = join(opts.outDir, 'best');
  const log = (s: string) => opts.onLog?.(s);
  const run = await openRun(cache, train, backend, opts, lastDir, log);
  const { epochs, batchSize, B, stepsPerEpoch, totalSteps, seed, alpha } = run;
  if (workers > 1) pool.trainer = await ParallelTrainer.create(run.trainer, { workers });
  const tr = pool.trainer ?? run.trainer;
  let progress = run.progress;

  const features = new Float32Array(B * T * C);
  const captions = train.captions ? new Float32Array(B * E) : undefined;
  const { residual } = run;
  if (residual && queryDim(train) !== E)
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `a residual head needs CLIP label queries (${E}-d), not ${queryDim(train)}-d ones`,
      'residual',
    );
  // The labels of each step: all of them, or a random subset of K (labelsPerStep).
  const K = Math.min(opts.labelsPerStep ?? L, L);
  if (!(Number.isInteger(K) && K > 0))
    throw new ClipDecoderError('INPUT_INVALID', `labelsPerStep must be a positive integer, got ${opts.labelsPerStep}`, 'labelsPerStep');
  const Q = queryDim(train);
  const stepQueries = K < L ? new Float32Array(K * Q) : train.queries;
  const targets = new Float32Array(B * K);
  const embeds = new Float32Array(B * E);
  const offset = residual ? new Float32Array(B * K) : undefined;
  const allLabels = Array.from({ length: L }, (_, l) => l);
  const meta = (metrics: Record<string, unknown>, extra?: Record<string, unknown>): CheckpointMeta => ({
    ...opts.meta,
    ...(extra ? { extra: { ...opts.meta.extra, ...extra } } : {}),
    labels: train.labels,
    hyperParameters: {
      ...opts.meta.hyperParameters,
      epochs,
      batchSize,
      extraViews: train.extraViews,
      ...(residual ? { residual } : {}),
      ...(K < L ? { labelsPerStep: K } : {}),
      ...tr.opts,
      asl: tr.opts.asl,
    },
    metrics,
  });
  const saveLast = (metrics: Record<string, unknown>) => tr.save(lastDir, meta(metrics, { progress }));
  const everySteps = opts.checkpointEverySteps ?? Infinity;
  const everyMs = (opts.checkpointEveryMinutes ?? FIT_DEFAULTS.checkpointEveryMinutes) * 60_000 || Infinity;
  let lastSave = { step: tr.step, at: performance.now() };
  const startStep = tr.step;
  const startEpoch = Math.floor(tr.step / stepsPerEpoch);
  let ran = 0;
  let stepsRun = 0;
  let stopped = false;
  for (let epoch = startEpoch; epoch < epochs && !stopped; epoch++) {
    if (opts.stopAfterEpochs !== undefined && ran >= opts.stopAfterEpochs) break;
    const t0 = performance.now();
    // The order and the view of each image depend only on (seed, epoch): a resumed run sees the same batches.
    const rng = createRng(seed * 1_000_003 + epoch);
    const order = shuffleInPlace(
      train.ids.map((_, i) => i),
      rng,
    );
    // Resuming mid-epoch: replay the view draws of the batches already done, so the rest match.
    const firstStep = tr.step - epoch * stepsPerEpoch;
    if (train.extraViews > 0) for (let k = 0; k < firstStep * B; k++) rng.int(train.extraViews + 1);
    let sums = firstStep > 0 ? { ...progress.epochSums } : { loss: 0, asl: 0, clip: 0 };
    for (let s = firstStep; s < stepsPerEpoch; s++) {
      if (opts.stopAfterSteps !== undefined && stepsRun >= opts.stopAfterSteps) {
        stopped = true;
        break;
      }
      const cols = K < L ? stepLabels(allLabels, K, seed, epoch, s) : allLabels;
      if (K < L) cols.forEach((l, k) => stepQueries.set(train.queries.subarray(l * Q, (l + 1) * Q), k * Q));
      for (let b = 0; b < B; b++) {
        const i = order[s * B + b]!;
        const view = train.extraViews > 0 ? rng.int(train.extraViews + 1) : 0;
        cache.read(viewKey(train.ids[i]!, view), {
          tokens: features.subarray(b * T * C, (b + 1) * T * C),
          imageEmbed: embeds.subarray(b * E, (b + 1) * E),
        });
        cols.forEach((l, k) => (targets[b * K + k] = train.targets[i * L + l]!));
        if (captions) captions.set(train.captions!.subarray(i * E, (i + 1) * E), b * E);
      }
      if (offset) {
        offset.fill(0);
        addResidual(offset, embeds, B, stepQueries, K, E, residual!);
      }
      const r = await tr.trainStep({
        features,
        B,
        T,
        queries: stepQueries,
        targets,
        captions: alpha > 0 ? captions : undefined,
        logitOffset: offset,
      });
      sums = { loss: sums.loss + r.loss, asl: sums.asl + r.asl, clip: sums.clip + r.clip };
      stepsRun++;
      opts.onProgress?.({ step: tr.step, totalSteps, startStep, epoch: epoch + 1, epochs, loss: r.loss });
      // A checkpoint within the epoch (the epoch's end saves one anyway): at most this much work is lost to a kill.
      if (s + 1 < stepsPerEpoch && (tr.step - lastSave.step >= everySteps || performance.now() - lastSave.at >= everyMs)) {
        progress = { ...progress, epochSums: sums };
        await saveLast({ epoch, step: tr.step });
        lastSave = { step: tr.step, at: performance.now() };
      }
    }
    if (stopped) break;
    const evalHead = tr.emaHead();
    const result = val ? evaluateHead(evalHead, cache, val, residual) : null;
    const score = result ? selectionScore(result) : epoch;
    const entry: EpochLog = {
      epoch: epoch + 1,
      step: tr.step,
      loss: sums.loss / stepsPerEpoch,
      asl: sums.asl / stepsPerEpoch,
      clip: sums.clip / stepsPerEpoch,
      seconds: (performance.now() - t0) / 1000,
      val: { zslMAP: result?.zsl ? result.zsl.mAP * 100 : null, gzslMAP: result ? result.gzsl.mAP * 100 : null },
    };
    const history = [...progress.epochs, entry];
    log(
      `epoch ${entry.epoch}/${epochs}  loss ${entry.loss.toFixed(3)} (asl ${entry.asl.toFixed(3)}, clip ${entry.clip.toFixed(3)})  ` +
        `val ZSL mAP ${entry.val.zslMAP?.toFixed(2) ?? '-'}  GZSL mAP ${entry.val.gzslMAP?.toFixed(2) ?? '-'}  ${entry.seconds.toFixed(1)} s`,
    );
    let best = progress.best;
    if (score > (best.score ?? -Infinity)) {
      best = { epoch: entry.epoch, score };
      // The best epoch's EMA weights, as a plain (non-resumable) checkpoint for tagging and evaluation.
      evalHead.trainedLabels = train.labels;
      await saveCheckpoint(bestDir, evalHead, meta({ validation: entry.val, epoch: entry.epoch }));
    }
    progress = { epochs: history, best, epochSums: { loss: 0, asl: 0, clip: 0 } };
    // last/ is the commit point of the epoch; the log and curves are reports derived from it.
    await saveLast({ validation: entry.val, epoch: entry.epoch });
    lastSave = { step: tr.step, at: performance.now() };
    await writeFileAtomic(join(opts.outDir, LOG_FILE), `${JSON.stringify({ epochs: history, best }, null, 2)}\n`);
    await writeFileAtomic(join(opts.outDir, 'training-curves.svg'), curvesSvg(history));
    ran++;
  }
  const done = progress.epochs;
  const secondsPerEpoch = done.length ? done.reduce((s, e) => s + e.seconds, 0) / done.length : 0;
  return { bestEpoch: progress.best.epoch, bestScore: progress.best.score ?? -Infinity, epochs: done, bestDir, lastDir, secondsPerEpoch };
}

const queryDim = (train: FitTrainData) => train.queries.length / train.labels.length;

/** K label columns of one step, drawn without replacement from (seed, epoch, step) alone. */
function stepLabels(all: readonly number[], K: number, seed: number, epoch: number, step: number): number[] {
  const rng = createRng((seed * 1_000_003 + epoch) * 65_537 + step + 0x5eed);
  const a = [...all];
  for (let i = 0; i < K; i++) {
    const j = i + rng.int(a.length - i);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a.slice(0, K);
}

/** The progress of a run whose checkpoint predates extra.progress: from training-log.json, which must then be whole. */
async function progressFromLog(outDir: string, lastDir: string, step: number): Promise<RunProgress> {
  const path = join(outDir, LOG_FILE);
  let prior: { epochs: EpochLog[]; best: { epoch: number; score: number } };
  try {
    prior = JSON.parse(await readFile(path, 'utf8'));
    if (!Array.isArray(prior.epochs) || typeof prior.best?.epoch !== 'number') throw new Error('no epochs or best epoch');
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'is missing' : `is unreadable (${(e as Error).message})`;
    throw new ClipDecoderError(
      'CHECKPOINT_INVALID',
      `resume: ${path} ${why}, and ${lastDir} was saved by an older clip-decoder that kept the run's progress only there; train into a new output folder`,
      path,
    );
  }
  return { epochs: prior.epochs.filter((e) => e.step <= step), best: prior.best, epochSums: { loss: 0, asl: 0, clip: 0 } };
}

function curvesSvg(epochs: readonly EpochLog[]): string {
  return lineChartSvg(
    [
      {
        title: 'training loss (per batch)',
        series: [
          { name: 'total', points: epochs.map((e) => [e.epoch, e.loss]) },
          { name: 'ASL', points: epochs.map((e) => [e.epoch, e.asl]) },
          { name: 'CLIP', points: epochs.map((e) => [e.epoch, e.clip]) },
        ],
      },
      {
        title: 'validation mAP (%)',
        series: [
          { name: 'ZSL (held-out labels)', points: epochs.filter((e) => e.val.zslMAP !== null).map((e) => [e.epoch, e.val.zslMAP!]) },
          { name: 'GZSL', points: epochs.filter((e) => e.val.gzslMAP !== null).map((e) => [e.epoch, e.val.gzslMAP!]) },
        ],
      },
    ],
    'epoch',
  );
}
