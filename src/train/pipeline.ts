// Dataset → trained head → test report, in one call: make sure the features are cached, build the queries (CLIP
// text embeddings of prompts, or word vectors learned from text alone) and the seen-label captions, fit with
// validation-based selection, then score the test split with the best checkpoint. The CLI's `train` and the
// experiments both call this; plain CLIP zero-shot scoring (no head) lives here too, as the baseline.
import { join } from 'node:path';
import { ClipModel } from '../clip/model.ts';
import { DEFAULT_TEMPLATES, embedLabels, l2normalizeRows } from '../clip/prompts.ts';
import { ClipDecoderError } from '../errors.ts';
import { loadDataset } from '../data/load.ts';
import { evaluationSet, splitItems, targetMatrix, trainingSet, type Dataset, type EvaluationSet, type TrainingSet } from '../data/types.ts';
import { evaluateAndWriteReport, type EvalReport } from '../eval/report.ts';
import type { ScoreTable } from '../eval/scores.ts';
import { CALIBRATION_FILE, CALIBRATION_FORMAT, CALIBRATION_VERSION, clipFingerprint, writeCalibration } from '../head/calibration.ts';
import type { CacheDtype, FeatureSource } from '../features/cache.ts';
import {
  datasetExtractItems,
  datasetFingerprint,
  extractFeatures,
  extractKeys,
  modelFingerprint,
  sourceStamp,
  type ExtractItem,
  type ExtractSummary,
} from '../features/extract.ts';
import { holdsUnmergedShards, openFeatures, ShardedFeatures } from '../scale/sharded-cache.ts';
import { assignShard, beginShard, shardName, type ShardSpec } from '../scale/shard.ts';
import type { HeadConfig } from '../head/config.ts';
import { OrtMatmul } from '../nn/ort-matmul.ts';
import { labelVectors, trainWordVectors } from '../text/wordvec.ts';
import { loadCheckpoint, type LoadedCheckpoint } from './checkpoint.ts';
import { fitHead, savedRunSettings, scoreFromCache, type FitResult, type ResidualStream, type TrainProgress } from './fit.ts';
import { fitFusion, fitStreams, globalScores, trainedMask, type Fusion, type StreamWeights } from '../head/fusion.ts';
import type { TrainerOptions } from './trainer.ts';

export type QuerySource = 'clip' | 'wordvec';

export interface TrainRunOptions {
  /** Dataset folder/file, or a loaded dataset. */
  dataset: string | Dataset;
  /** CLIP model folder (features + text embeddings). */
  model: string | ClipModel;
  cacheDir: string;
  /** How a new feature cache stores values (default: the existing cache's, else float32). */
  cacheDtype?: CacheDtype;
  outDir: string;
  /** Label queries: CLIP text embeddings (CLIP-Decoder) or text-only word vectors (ML-Decoder baseline). */
  queries?: QuerySource;
  /** Texts the word vectors learn from (queries = 'wordvec'); default: the training images' seen-label captions. */
  wordvecCorpus?: readonly string[];
  wordvecDim?: number;
  templates?: string[];
  /**
   * Epochs, batch size, seed and views: leave undefined for the defaults (FIT_DEFAULTS, 0 views), or, with
   * `resume`, for the resumed run's own values; values given that differ from that run's are refused
   * (RESUME_MISMATCH), as are differing `trainer` and `head` options.
   */
  epochs?: number;
  batchSize?: number;
  seed?: number;
  /** Augmented views per training image (features extracted once, one view drawn per epoch). */
  extraViews?: number;
  trainer?: Partial<Omit<TrainerOptions, 'totalSteps' | 'seed'>>;
  head?: Partial<HeadConfig>;
  /** Upper bound, not zero-shot: the unseen labels are training targets too. */
  trainOnUnseen?: boolean;
  /**
   * CLIP-Decoder+ residual training: the head learns a correction to CLIP's own score, scale · cos + bias fitted
   * on the training images' seen labels (logistic regression) before the first step. The head's output layer
   * starts at zero (head.zeroOutput, unless given), so the untrained head is plain CLIP.
   */
  residual?: boolean;
  /**
   * What the CLIP loss pulls the head's pooled embedding towards: the caption of the image's seen labels (the
   * paper), or CLIP's own image embedding of it (knowledge-preserving distillation: the head keeps CLIP's view).
   */
  clipTarget?: 'captions' | 'image';
  /** ASL on a random subset of this many labels per step (see FitOptions.labelsPerStep). */
  labelsPerStep?: number;
  /** Score the test split with the best checkpoint and write outDir/test-report (default true). */
  testReport?: boolean;
  /** Worker threads for data-parallel steps (see FitOptions.workers). */
  workers?: number;
  /**
   * Final run: train on train + validation with every seen label for exactly `epochs` epochs (chosen earlier on
   * validation) and keep the last epoch; no per-epoch selection.
   */
  final?: boolean;
  /** Continue the run in outDir/last; when there is none, a new run starts and onLog says so. */
  resume?: boolean;
  /** Save outDir/last every this many steps within an epoch, besides each epoch's end (default: by time only). */
  checkpointEverySteps?: number;
  /** Save outDir/last when this many minutes passed since the last save (default 5; 0: off). */
  checkpointEveryMinutes?: number;
  /** Stop after this many epochs in this call (simulates an interruption in tests). */
  stopAfterEpochs?: number;
  /** Stop after this many steps in this call, without saving (simulates a kill in tests). */
  stopAfterSteps?: number;
  /** How the caller names each option in messages, e.g. {'head.dModel': '--d-model'} (the CLI's flags). */
  optionNames?: Readonly<Record<string, string>>;
  onLog?: (line: string) => void;
  /** Called after every training step (steps, loss); the CLI draws its progress bar from it. */
  onProgress?: (p: TrainProgress) => void;
  onExtractProgress?: (done: number, total: number) => void;
}

export interface TrainRunResult {
  extract: ExtractSummary;
  fit: FitResult;
  test: EvalReport;
  reportDir: string;
  seconds: number;
}

export { autoEmaDecay, FIT_DEFAULTS } from './fit.ts';

/** "a photo of dog, pet and animal" from an image's training labels. */
export function captionOf(labels: readonly string[], template = DEFAULT_TEMPLATES[0]!): string {
  const words = labels.length <= 1 ? labels.join('') : `${labels.slice(0, -1).join(', ')} and ${labels[labels.length - 1]}`;
  return template.replace('{label}', words);
}

/** The caption of each training image from its training targets only (never an unseen label). */
export function trainingCaptions(set: TrainingSet): string[] {
  const L = set.labels.length;
  return set.ids.map((_, i) => captionOf(set.labels.filter((_, l) => set.targets[i * L + l] === 1)));
}

export interface EnsureFeaturesOptions {
  /** Extract only this shard's images, into CACHE/shard-i-of-n/ with its manifest (src/scale/shard.ts). */
  shard?: ShardSpec;
  /** How the cache stores values (default: the existing cache's, else float32). */
  dtype?: CacheDtype;
}

/**
 * Ensures every image of the dataset has features in the cache (train images with extra views), or, with a
 * shard, every image of that shard in its own cache under CACHE, whose manifest says complete once it is.
 */
export async function ensureFeatures(
  model: ClipModel,
  dataset: Dataset,
  cacheDir: string,
  extraViews: number,
  onProgress?: (d: number, t: number) => void,
  onError?: (m: string) => void,
  options: EnsureFeaturesOptions = {},
): Promise<ExtractSummary> {
  const all = datasetExtractItems(dataset, extraViews);
  const { shard } = options;
  // The shards of a sharded extract, not merged: read as they are (checked complete, of this model and dataset).
  if (!shard && holdsUnmergedShards(cacheDir)) return checkShards(model, dataset, cacheDir, all);
  const items = shard ? assignShard(all, (it) => it.id, shard) : all;
  const dir = shard ? join(cacheDir, shardName(shard)) : cacheDir;
  let finish: (() => Promise<void>) | undefined;
  const summary = await extractFeatures(model, items, {
    cacheDir: dir,
    datasetFingerprint: datasetFingerprint(dataset.items),
    seed: 0,
    dtype: options.dtype,
    onProgress,
    onError: (e) => onError?.(e.message),
    onCacheOpen: async (meta) => {
      if (!shard) return;
      finish = await beginShard(
        dir,
        'cache',
        shard,
        {
          modelId: meta.modelId,
          modelFingerprint: meta.modelFingerprint,
          datasetFingerprint: meta.datasetFingerprint,
          dtype: meta.dtype ?? 'float32',
          keepCls: meta.keepCls,
          views: extraViews,
          tokens: `${meta.numTokens}x${meta.tokenDim}`,
          embedDim: meta.embedDim,
        },
        extractKeys(all),
        extractKeys(items),
      );
    },
  });
  if (summary.failed > 0) {
    throw new ClipDecoderError(
      'DATASET_INVALID',
      `${summary.failed} image(s) of ${dataset.name} could not be read (named above); fix or remove them and rerun`,
      dataset.name,
    );
  }
  await finish?.();
  return summary;
}

/**
 * ensureFeatures over a folder of shards not merged yet: they must be complete, of this model and dataset, and hold
 * every record of it from the image files as they are now (a shard cannot be extended from here: say which to rerun).
 */
async function checkShards(model: ClipModel, dataset: Dataset, cacheDir: string, all: ExtractItem[]): Promise<ExtractSummary> {
  const t0 = performance.now();
  const shards = await ShardedFeatures.open(cacheDir, { datasetFingerprint: datasetFingerprint(dataset.items) });
  try {
    const fp = await modelFingerprint(model, shards.meta.keepCls);
    if (fp !== shards.meta.modelFingerprint)
      throw new ClipDecoderError(
        'CACHE_MISMATCH',
        `${cacheDir}: the shards were extracted with another model or preprocessing (${shards.meta.modelId}, fingerprint ${shards.meta.modelFingerprint.slice(0, 12)} ≠ ${fp.slice(0, 12)} of ${model.id}); use another --cache folder`,
        cacheDir,
      );
    const keys = extractKeys(all);
    const missing = keys.filter((k) => !shards.has(k));
    if (missing.length > 0)
      throw new ClipDecoderError(
        'SHARD_MISMATCH',
        `${cacheDir}: the shards lack ${missing.length} record(s) this run needs (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}; other --views?); extract them with the shards' settings`,
        cacheDir,
      );
    const changed = all.filter((it) => shards.sourceOf(it.id) !== sourceStamp(it.path));
    if (changed.length > 0)
      throw new ClipDecoderError(
        'SHARD_INCOMPLETE',
        `${cacheDir}: ${changed.length} image(s) changed since their shard was extracted (${changed
          .slice(0, 3)
          .map((it) => it.path)
          .join(', ')}); rerun the shards' commands (they recompute what changed), or merge and run unsharded`,
        cacheDir,
      );
    return { total: keys.length, computed: 0, changed: 0, skipped: keys.length, failed: 0, seconds: (performance.now() - t0) / 1000 };
  } finally {
    shards.close();
  }
}

/** The word vectors of a run with `queries: 'wordvec'` (deterministic for a corpus, dimension and seed). */
export function runWordVectors(corpus: readonly string[], dim = 64, seed?: number): ReturnType<typeof trainWordVectors> {
  return trainWordVectors(corpus, { dim, seed, epochs: 3 });
}

/** Unit-norm word-vector queries of labels (the ML-Decoder baseline's). */
export function wordVectorQueries(wordvec: ReturnType<typeof trainWordVectors>, labels: readonly string[]): Float32Array {
  return l2normalizeRows(labelVectors(wordvec, labels).vectors, wordvec.dim);
}

async function queryEmbeddings(
  model: ClipModel,
  labels: readonly string[],
  opts: TrainRunOptions,
  wordvec: ReturnType<typeof trainWordVectors> | undefined,
): Promise<Float32Array> {
  if (wordvec) return wordVectorQueries(wordvec, labels);
  return embedLabels(model, labels, { templates: opts.templates });
}

/** The cached CLIP image embeddings of `ids` [N, E], as the model gave them. */
export function cachedImageEmbeds(cache: FeatureSource, ids: readonly string[]): Float32Array {
  const E = cache.meta.embedDim;
  const tokens = new Float32Array(cache.meta.numTokens * cache.meta.tokenDim);
  const embeds = new Float32Array(ids.length * E);
  ids.forEach((id, i) => cache.read(id, { tokens, imageEmbed: embeds.subarray(i * E, (i + 1) * E) }));
  return embeds;
}

/** Scores [N, L] of plain CLIP zero-shot: cosine of the cached image embedding and each label's prompt embedding. */
export function clipZeroShotScores(cache: FeatureSource, ids: readonly string[], labelEmbeds: Float32Array, L: number): Float32Array {
  return globalScores(cachedImageEmbeds(cache, ids), ids.length, labelEmbeds, L, cache.meta.embedDim);
}

/**
 * Fits the fusion of CLIP's score and a trained head's on the validation split (its held-out labels stand for
 * the labels the head never saw) and writes it as the head's calibration.json, which tagging then uses.
 */
export async function calibrateOnValidation(
  model: ClipModel,
  cache: FeatureSource,
  best: LoadedCheckpoint,
  headDir: string,
  val: EvaluationSet,
  queries: Float32Array,
  datasetName: string,
): Promise<Fusion> {
  const B = val.ids.length,
    L = val.labels.length;
  const local = scoreFromCache(best.head, cache, val.ids, val.labels, queries);
  const global = clipZeroShotScores(cache, val.ids, queries, L);
  const fusion = fitFusion(global, local, val.targets, B, L, trainedMask(val.labels, best.meta.labels));
  await writeCalibration(join(headDir, CALIBRATION_FILE), {
    format: CALIBRATION_FORMAT,
    version: CALIBRATION_VERSION,
    clipModel: { id: model.id, fingerprint: await clipFingerprint(model, false) },
    head: { sha256: best.weightsSha256 },
    fusion,
    fittedOn: { dataset: datasetName, split: 'val', images: B, pairs: B * L, heldOutLabels: val.unseen.length },
  });
  return fusion;
}

/** The global stream of a residual head: scale · cos + bias fitted to the training targets (logistic regression). */
export function fitResidualStream(cache: FeatureSource, set: TrainingSet, labelEmbeds: Float32Array): ResidualStream {
  const L = set.labels.length;
  const g = clipZeroShotScores(cache, set.ids, labelEmbeds, L);
  const w = fitStreams(
    g,
    null,
    Uint8Array.from(set.targets),
    set.ids.length,
    L,
    Array.from({ length: L }, (_, l) => l),
  );
  return { scale: w.global, bias: w.bias };
}

/** Plain CLIP zero-shot on the test split (baseline (a)): no training. */
export async function evaluateClipZeroShot(opts: {
  dataset: string | Dataset;
  model: string | ClipModel;
  cacheDir: string;
  outDir: string;
  templates?: string[];
}): Promise<EvalReport> {
  const dataset = typeof opts.dataset === 'string' ? loadDataset(opts.dataset) : opts.dataset;
  const model = typeof opts.model === 'string' ? await ClipModel.load(opts.model) : opts.model;
  await ensureFeatures(model, dataset, opts.cacheDir, 0);
  const cache = await openFeatures(opts.cacheDir, { datasetFingerprint: datasetFingerprint(dataset.items) });
  try {
    const test: EvaluationSet = evaluationSet(dataset, 'final');
    const emb = await embedLabels(model, test.labels, { templates: opts.templates });
    const table: ScoreTable = { ids: test.ids, labels: test.labels, scores: clipZeroShotScores(cache, test.ids, emb, test.labels.length) };
    return (await evaluateAndWriteReport(table, dataset, opts.outDir)).report;
  } finally {
    cache.close();
  }
}

/**
 * The label-query settings of a run: a resumed run keeps its own templates and query source (they decide the
 * query embeddings before its checkpoint loads); given ones that differ are refused by name.
 */
function querySettings(opts: TrainRunOptions): TrainRunOptions {
  const saved = opts.resume ? savedRunSettings(opts.outDir) : undefined;
  if (!saved) return opts;
  const diffs: string[] = [];
  if (opts.templates !== undefined && saved.templates && JSON.stringify(opts.templates) !== JSON.stringify(saved.templates))
    diffs.push(`--template ${JSON.stringify(opts.templates)} (the run has ${JSON.stringify(saved.templates)})`);
  if (opts.queries !== undefined && saved.queries && opts.queries !== saved.queries)
    diffs.push(`--queries ${opts.queries} (the run has ${saved.queries})`);
  if (diffs.length) {
    throw new ClipDecoderError(
      'RESUME_MISMATCH',
      `resume: ${join(opts.outDir, 'last')} is a run with other settings: ${diffs.join(', ')}; drop these to continue it, or train into a new output folder`,
      diffs[0]!.split(' ')[0],
    );
  }
  return {
    ...opts,
    templates: opts.templates ?? saved.templates,
    queries: opts.queries ?? (saved.queries as QuerySource | undefined),
    extraViews: opts.extraViews ?? saved.extraViews,
  };
}

/** A run trained without its test report (testReport: false): the caller scores the test split itself. */
export type TrainOnlyResult = Omit<TrainRunResult, 'test' | 'reportDir'>;

export async function trainOnDataset(options: TrainRunOptions & { testReport: false }): Promise<TrainOnlyResult>;
export async function trainOnDataset(options: TrainRunOptions): Promise<TrainRunResult>;
export async function trainOnDataset(options: TrainRunOptions): Promise<TrainRunResult | TrainOnlyResult> {
  const t0 = performance.now();
  const opts = querySettings(options);
  const log = (s: string) => opts.onLog?.(s);
  const dataset = typeof opts.dataset === 'string' ? loadDataset(opts.dataset) : opts.dataset;
  const model = typeof opts.model === 'string' ? await ClipModel.load(opts.model) : opts.model;
  // Views decide which features to extract, so a resumed run's own value is needed before its checkpoint loads.
  const extraViews = opts.extraViews ?? 0;
  const extract = await ensureFeatures(model, dataset, opts.cacheDir, extraViews, opts.onExtractProgress, (m) => log(m), {
    dtype: opts.cacheDtype,
  });
  if (extract.computed > 0) log(`features: ${extract.computed} computed, ${extract.skipped} cached, ${extract.seconds.toFixed(1)} s`);
  // ensureFeatures has checked the cache's model fingerprint; the dataset's is checked again on opening.
  const cache = await openFeatures(opts.cacheDir, { datasetFingerprint: datasetFingerprint(dataset.items) });
  try {
    // Model selection: train on the training part without the pseudo-unseen labels, select on validation.
    // A final run trains on train + validation with all seen labels.
    const train = trainingSet(dataset, opts.final ? 'final' : 'select');
    const val = opts.final ? null : evaluationSet(dataset, 'select');
    const test = evaluationSet(dataset, 'final');
    // Upper bound (trainOnUnseen): the test's unseen labels become targets as well; not a zero-shot result.
    const labels = opts.trainOnUnseen ? [...train.labels, ...dataset.split.unseen] : train.labels;
    const trainItems = opts.final ? [...splitItems(dataset, 'train'), ...splitItems(dataset, 'val')] : splitItems(dataset, 'train');
    const targets = opts.trainOnUnseen ? targetMatrix(trainItems, labels) : train.targets;
    const captions = trainingCaptions({ ids: train.ids, labels: train.labels, targets: train.targets });
    const wantClipLoss = (opts.trainer?.alpha ?? 1) > 0;
    let captionEmbeds: Float32Array | undefined;
    if (wantClipLoss && opts.clipTarget === 'image') {
      // distillation: each image's own CLIP embedding, unit-norm, stands in for its caption
      captionEmbeds = l2normalizeRows(cachedImageEmbeds(cache, train.ids), model.embedDim);
    } else if (wantClipLoss) {
      const unique = [...new Set(captions)];
      const emb = l2normalizeRows(await model.encodeTexts(unique), model.embedDim);
      const row = new Map(unique.map((c, i) => [c, i]));
      captionEmbeds = new Float32Array(captions.length * model.embedDim);
      captions.forEach((c, i) =>
        captionEmbeds!.set(emb.subarray(row.get(c)! * model.embedDim, (row.get(c)! + 1) * model.embedDim), i * model.embedDim),
      );
    }
    const wordvec = opts.queries === 'wordvec' ? runWordVectors(opts.wordvecCorpus ?? captions, opts.wordvecDim, opts.seed) : undefined;
    if (wordvec) {
      const oov = labelVectors(wordvec, [...test.labels]).outOfVocabulary;
      log(
        `word vectors: ${wordvec.vocab.size} words, ${oov.length} of ${test.labels.length} labels outside the vocabulary (trigram fallback)`,
      );
    }
    const trainQueries = await queryEmbeddings(model, labels, opts, wordvec);
    if (opts.residual && wordvec)
      throw new ClipDecoderError(
        'INPUT_INVALID',
        'a residual head adds CLIP scores: it needs CLIP label queries, not word vectors',
        '--queries',
      );
    // A resumed run keeps its saved stream (fitting again would give the same numbers, but the check is by value).
    const residual = opts.residual ? fitResidualStream(cache, { ids: train.ids, labels, targets }, trainQueries) : undefined;
    if (residual) log(`global stream: ${residual.scale.toFixed(3)} · cos + ${residual.bias.toFixed(3)} (fitted on the training targets)`);
    const valQueries = val ? await queryEmbeddings(model, val.labels, opts, wordvec) : undefined; // seen, then held out
    const fit = await fitHead(
      cache,
      {
        ids: train.ids,
        extraViews,
        labels,
        targets,
        queries: trainQueries,
        captions: captionEmbeds,
      },
      val && {
        ids: val.ids,
        seen: val.seen,
        unseen: val.unseen,
        targets: val.targets,
        queries: valQueries!,
      },
      new OrtMatmul(),
      {
        outDir: opts.outDir,
        epochs: opts.epochs,
        batchSize: opts.batchSize,
        seed: opts.seed,
        trainer: opts.trainer,
        // a residual head starts as plain CLIP: its output layer at zero
        head: opts.residual ? { zeroOutput: true, ...opts.head } : opts.head,
        resume: opts.resume,
        checkpointEverySteps: opts.checkpointEverySteps,
        checkpointEveryMinutes: opts.checkpointEveryMinutes,
        stopAfterEpochs: opts.stopAfterEpochs,
        stopAfterSteps: opts.stopAfterSteps,
        residual,
        labelsPerStep: opts.labelsPerStep,
        workers: opts.workers,
        optionNames: opts.optionNames,
        onLog: opts.onLog,
        onProgress: opts.onProgress,
        meta: {
          clipModel: model.id,
          clipFingerprint: await clipFingerprint(model, false),
          promptTemplates: opts.templates ?? [...DEFAULT_TEMPLATES],
          extra: {
            queries: opts.queries ?? 'clip',
            keepCls: false,
            trainOnUnseen: Boolean(opts.trainOnUnseen),
            dataset: dataset.name,
            ...(opts.clipTarget === 'image' ? { clipTarget: 'image' } : {}),
          },
        },
      },
    );
    if (fit.bestEpoch < 0) throw new ClipDecoderError('INPUT_INVALID', 'no epoch was trained; raise --epochs', '--epochs');
    log(
      opts.final
        ? `trained ${fit.bestEpoch} epochs; scoring the test split`
        : `best epoch ${fit.bestEpoch} (validation ${(fit.bestScore * 100).toFixed(2)} mAP); scoring the test split`,
    );
    // CLIP-Decoder+: tagging with this head fuses it with CLIP's own score, by weights fitted here on validation
    const calibrate = val !== null && !wordvec;
    if (!calibrate && opts.testReport === false) return { extract, fit, seconds: (performance.now() - t0) / 1000 };
    const best = await loadCheckpoint(fit.bestDir, new OrtMatmul());
    if (calibrate) {
      const cal = await calibrateOnValidation(model, cache, best, fit.bestDir, val, valQueries!, dataset.name);
      const w = (x: StreamWeights) => `${x.global.toFixed(2)} · cos + ${x.local.toFixed(2)} · head + ${x.bias.toFixed(2)}`;
      log(
        `calibration (validation): trained labels ${w(cal.trained)}; other labels ${w(cal.novel)}; threshold ${cal.threshold.toFixed(3)}`,
      );
    }
    if (opts.testReport === false) return { extract, fit, seconds: (performance.now() - t0) / 1000 };
    // the run's stream: fitted here, or a resumed run's own
    const stream = residual ?? (best.meta.hyperParameters?.residual as ResidualStream | undefined);
    const scores = scoreFromCache(
      best.head,
      cache,
      test.ids,
      test.labels,
      await queryEmbeddings(model, test.labels, opts, wordvec),
      64,
      stream,
    );
    const reportDir = join(opts.outDir, 'test-report');
    const { report } = await evaluateAndWriteReport({ ids: test.ids, labels: test.labels, scores }, dataset, reportDir);
    return { extract, fit, test: report, reportDir, seconds: (performance.now() - t0) / 1000 };
  } finally {
    cache.close();
  }
}
