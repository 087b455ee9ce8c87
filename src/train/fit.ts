// Training a head on a dataset: batches of cached image features, seen-label targets and seen-label captions go
// through the Trainer; after each epoch the EMA head is scored on the validation images with the pseudo-unseen
// labels held out (model selection never looks at the test split); the best epoch is kept as a checkpoint, the
// latest as a resumable one. Only seen labels ever reach the loss.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import type { ClipDecoderHead } from '../head/head.ts';
import { defaultHeadConfig, type HeadConfig } from '../head/config.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import { createRng, shuffleInPlace } from '../data/random.ts';
import { FeatureCache } from '../features/cache.ts';
import { viewKey } from '../features/extract.ts';
import { evaluateProtocol, type ProtocolResult } from '../eval/protocol.ts';
import { writeFileAtomic } from '../util/fs.ts';
import { lineChartSvg } from '../eval/svg.ts';
import { saveCheckpoint, type CheckpointMeta } from './checkpoint.ts';
import { Trainer, type TrainerOptions } from './trainer.ts';

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

/** Images + labels scored after each epoch (validation) or at the end (test). */
export interface FitEvalData {
  ids: string[];
  seen: string[];
  unseen: string[];
  targets: Uint8Array; // [N, seen + unseen]
  /** Query embeddings of seen then unseen labels [L, E]. */
  queries: Float32Array;
}

export interface FitOptions {
  outDir: string;
  epochs: number;
  batchSize: number;
  seed: number;
  /** Trainer options (lr, weight decay, EMA, alpha, beta...). */
  trainer?: Partial<Omit<TrainerOptions, 'totalSteps' | 'seed'>>;
  /** Head architecture over defaults (input/query widths are taken from the data). */
  head?: Partial<HeadConfig>;
  /** Written into the checkpoints. */
  meta: Omit<CheckpointMeta, 'labels' | 'hyperParameters' | 'metrics'> & { hyperParameters?: Record<string, unknown> };
  /** Continue from outDir/last if it is there. */
  resume?: boolean;
  onLog?: (line: string) => void;
  /** Stop after this many epochs in this call (tests use it to simulate an interruption). */
  stopAfterEpochs?: number;
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

/** The validation score that selects the epoch: ZSL mAP on the held-out labels (GZSL mAP if there are none). */
export function selectionScore(r: ProtocolResult): number {
  return r.zsl ? r.zsl.mAP : r.gzsl.mAP;
}

/** Scores [N, L] of images from the cache for a label set (EMA or live head). */
export function scoreFromCache(head: ClipDecoderHead, cache: FeatureCache, ids: readonly string[], labels: readonly string[], queries: Float32Array, batchSize = 64): Float32Array {
  const { numTokens: T, tokenDim: C } = cache.meta;
  const L = labels.length;
  const prepared = head.prepareLabels(labels, queries);
  const out = new Float32Array(ids.length * L);
  const features = new Float32Array(batchSize * T * C);
  const embed = new Float32Array(cache.meta.embedDim);
  for (let s = 0; s < ids.length; s += batchSize) {
    const n = Math.min(batchSize, ids.length - s);
    for (let b = 0; b < n; b++) cache.read(ids[s + b]!, { tokens: features.subarray(b * T * C, (b + 1) * T * C), imageEmbed: embed });
    const { logits } = head.predict(features.subarray(0, n * T * C), n, T, prepared);
    out.set(logits, s * L);
  }
  return out;
}

export function evaluateHead(head: ClipDecoderHead, cache: FeatureCache, data: FitEvalData): ProtocolResult {
  const labels = [...data.seen, ...data.unseen];
  const scores = scoreFromCache(head, cache, data.ids, labels, data.queries);
  return evaluateProtocol({ scores, labels, targets: data.targets, images: data.ids.length }, data.seen, data.unseen);
}

function checkNoLeak(train: FitTrainData, val: FitEvalData | null): void {
  const held = new Set(val?.unseen ?? []);
  const leak = train.labels.find((l) => held.has(l));
  if (leak) throw new ClipDecoderError('DATASET_INVALID', `label "${leak}" is a training target but is held out as unseen for validation`, leak);
}

/**
 * Trains (or resumes) a head; returns the per-epoch log and where the best and last checkpoints are. Without
 * validation data (a final run on all training images) the last epoch counts as the best.
 */
export async function fitHead(cache: FeatureCache, train: FitTrainData, val: FitEvalData | null, backend: MatmulBackend, opts: FitOptions): Promise<FitResult> {
  checkNoLeak(train, val);
  const N = train.ids.length, L = train.labels.length;
  const { numTokens: T, tokenDim: C, embedDim: E } = cache.meta;
  if (N === 0) throw new ClipDecoderError('DATASET_INVALID', 'no training images', 'train');
  if (L === 0 || train.queries.length % L !== 0) {
    throw new ClipDecoderError('INPUT_INVALID', `query embeddings hold ${train.queries.length} values for ${L} labels`, 'queries');
  }
  const queryDim = train.queries.length / L;
  for (const id of [...train.ids, ...(val?.ids ?? [])]) {
    if (!cache.has(id)) throw new ClipDecoderError('CACHE_MISMATCH', `${cache.dir}: no features for image "${id}"; run \`clip-decoder extract\` first`, id);
  }
  const B = Math.min(opts.batchSize, N);
  const stepsPerEpoch = Math.floor(N / B); // drop the last partial batch, as the official loader does
  const totalSteps = stepsPerEpoch * opts.epochs;
  const alpha = opts.trainer?.alpha ?? 1;
  if (alpha > 0 && !train.captions) throw new ClipDecoderError('INPUT_INVALID', 'alpha > 0 needs caption embeddings for the CLIP loss', 'captions');
  const lastDir = join(opts.outDir, 'last');
  const bestDir = join(opts.outDir, 'best');
  const log = (s: string) => opts.onLog?.(s);

  let trainer: Trainer;
  let epochs: EpochLog[] = [];
  let best = { epoch: -1, score: -Infinity };
  if (opts.resume && existsSync(join(lastDir, 'config.json'))) {
    ({ trainer } = await Trainer.resume(lastDir, backend));
    const prior = JSON.parse(await readFile(join(opts.outDir, LOG_FILE), 'utf8')) as { epochs: EpochLog[]; best: typeof best };
    epochs = prior.epochs.filter((e) => e.step <= trainer.step);
    best = prior.best;
    log(`resuming at step ${trainer.step} (epoch ${epochs.length})`);
  } else {
    const config = defaultHeadConfig({ inputDim: C, queryDim, captionDim: E, clipProjDim: alpha > 0 ? (opts.head?.clipProjDim ?? E) : 0, ...opts.head });
    trainer = Trainer.create(config, backend, { ...opts.trainer, seed: opts.seed, totalSteps });
  }
  trainer.head.trainedLabels = train.labels;

  const features = new Float32Array(B * T * C);
  const embed = new Float32Array(E);
  const targets = new Float32Array(B * L);
  const captions = train.captions ? new Float32Array(B * E) : undefined;
  const meta = (metrics: Record<string, unknown>): CheckpointMeta => ({
    ...opts.meta,
    labels: train.labels,
    hyperParameters: { ...opts.meta.hyperParameters, epochs: opts.epochs, batchSize: B, ...trainer.opts, asl: trainer.opts.asl },
    metrics,
  });
  const startEpoch = Math.floor(trainer.step / stepsPerEpoch);
  let ran = 0;
  for (let epoch = startEpoch; epoch < opts.epochs; epoch++) {
    if (opts.stopAfterEpochs !== undefined && ran >= opts.stopAfterEpochs) break;
    const t0 = performance.now();
    // The order and the view of each image depend only on (seed, epoch): a resumed run sees the same batches.
    const rng = createRng(opts.seed * 1_000_003 + epoch);
    const order = shuffleInPlace(train.ids.map((_, i) => i), rng);
    let sums = { loss: 0, asl: 0, clip: 0 };
    for (let s = 0; s < stepsPerEpoch; s++) {
      targets.fill(0);
      for (let b = 0; b < B; b++) {
        const i = order[s * B + b]!;
        const view = train.extraViews > 0 ? rng.int(train.extraViews + 1) : 0;
        cache.read(viewKey(train.ids[i]!, view), { tokens: features.subarray(b * T * C, (b + 1) * T * C), imageEmbed: embed });
        for (let l = 0; l < L; l++) targets[b * L + l] = train.targets[i * L + l]!;
        if (captions) captions.set(train.captions!.subarray(i * E, (i + 1) * E), b * E);
      }
      const r = trainer.trainStep({ features, B, T, queries: train.queries, targets, captions: alpha > 0 ? captions : undefined });
      sums = { loss: sums.loss + r.loss, asl: sums.asl + r.asl, clip: sums.clip + r.clip };
    }
    const evalHead = trainer.emaHead();
    const result = val ? evaluateHead(evalHead, cache, val) : null;
    const score = result ? selectionScore(result) : epoch;
    const entry: EpochLog = {
      epoch: epoch + 1,
      step: trainer.step,
      loss: sums.loss / stepsPerEpoch,
      asl: sums.asl / stepsPerEpoch,
      clip: sums.clip / stepsPerEpoch,
      seconds: (performance.now() - t0) / 1000,
      val: { zslMAP: result?.zsl ? result.zsl.mAP * 100 : null, gzslMAP: result ? result.gzsl.mAP * 100 : null },
    };
    epochs.push(entry);
    log(
      `epoch ${entry.epoch}/${opts.epochs}  loss ${entry.loss.toFixed(3)} (asl ${entry.asl.toFixed(3)}, clip ${entry.clip.toFixed(3)})  ` +
        `val ZSL mAP ${entry.val.zslMAP?.toFixed(2) ?? '-'}  GZSL mAP ${entry.val.gzslMAP?.toFixed(2) ?? '-'}  ${entry.seconds.toFixed(1)} s`,
    );
    if (score > best.score) {
      best = { epoch: entry.epoch, score };
      // The best epoch's EMA weights, as a plain (non-resumable) checkpoint for tagging and evaluation.
      evalHead.trainedLabels = train.labels;
      await saveCheckpoint(bestDir, evalHead, meta({ validation: entry.val, epoch: entry.epoch }));
    }
    await trainer.save(lastDir, meta({ validation: entry.val, epoch: entry.epoch }));
    await writeFileAtomic(join(opts.outDir, LOG_FILE), `${JSON.stringify({ epochs, best }, null, 2)}\n`);
    await writeFileAtomic(join(opts.outDir, 'training-curves.svg'), curvesSvg(epochs));
    ran++;
  }
  const secondsPerEpoch = epochs.length ? epochs.reduce((s, e) => s + e.seconds, 0) / epochs.length : 0;
  return { bestEpoch: best.epoch, bestScore: best.score, epochs, bestDir, lastDir, secondsPerEpoch };
}

function curvesSvg(epochs: readonly EpochLog[]): string {
  return lineChartSvg(
    [
      { title: 'training loss (per batch)', series: [{ name: 'total', points: epochs.map((e) => [e.epoch, e.loss]) }, { name: 'ASL', points: epochs.map((e) => [e.epoch, e.asl]) }, { name: 'CLIP', points: epochs.map((e) => [e.epoch, e.clip]) }] },
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
