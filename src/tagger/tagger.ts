// The product in one object: a CLIP model plus a trained CLIP-Decoder head. Give it images and any labels; it
// answers an independent probability per label per image, and on request the head's attention over the patch
// grid. Everything image-independent about a label set (text embeddings, query projection, LN1, the attention
// Q projection) is computed once and cached, so large vocabularies cost little per image.
//
// Scoring (`Tagger.mode`), from one ONNX run per batch that gives the patch tokens and the image embedding:
//   fused     a calibration (head folder's calibration.json, or TaggerOptions.calibration): CLIP-Decoder+,
//             sigmoid(w_global · cos(image, label) + w_local · head logit + bias) with the `trained` weights
//             for the head's trained labels and `novel` for the rest (src/head/fusion.ts); calibrated.
//   residual  a residual head (hyperParameters.residual = {scale, bias}) without calibration: scored as it was
//             trained, sigmoid(head logit + scale · cos + bias).
//   head      an older head, neither: sigmoid(head logit).
//   clip      head "none" / null: plain CLIP, the fused formula with w_local = 0 when a calibration is given (or
//             the model folder carries calibration.json), else sigmoid(s·cos + b) with the model's own s and b
//             (src/clip/logits.ts).
// The label embeddings scored against the image are exactly the head's queries.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ClipModel } from '../clip/model.ts';
import type { ModelDtype } from '../clip/family.ts';
import { DEFAULT_TEMPLATES, embedLabels } from '../clip/prompts.ts';
import type { ImageSource } from '../clip/preprocess.ts';
import { ClipDecoderError } from '../errors.ts';
import { checkLabels, type LabelLimits } from '../labels.ts';
import { CALIBRATION_FILE, clipFingerprint, readCalibration, residualWeights, type Calibration } from '../head/calibration.ts';
import { fuseLogits, globalScores, trainedMask, type Fusion } from '../head/fusion.ts';
import type { ClipDecoderHead, PreparedLabels } from '../head/head.ts';
import { OrtMatmul } from '../nn/ort-matmul.ts';
import { loadCheckpoint, type CheckpointMeta } from '../train/checkpoint.ts';

import { DEFAULT_HEAD, DEFAULT_MODEL } from './defaults.ts';

export { DEFAULT_HEAD, DEFAULT_MODEL };

export interface TaggerOptions {
  /** CLIP model folder or hub id (default: the bundled pico-CLIP). */
  model?: string;
  /**
   * Head checkpoint folder (default: the bundled head), or null / "none": plain CLIP scoring without a head,
   * calibrated when a calibration is available, else sigmoid(s·cos + b) with the model's own logit scale and
   * bias (SigLIP: its calibrated probabilities; CLIP: its temperature and no bias, so a ranking rather than
   * calibrated probabilities, see src/clip/logits.ts).
   */
  head?: string | null;
  /**
   * Calibration file (src/head/calibration.ts) to score with; default: `calibration.json` in the head folder,
   * or for plain CLIP in the model folder, when there is one. It must have been fitted for this model and head.
   */
  calibration?: string;
  /** ONNX weights of the model: fp32 (default), fp16, q8 (`_quantized`), ... */
  dtype?: ModelDtype;
  /** CPU threads for ONNX Runtime (default: all cores). */
  threads?: number;
  /** Images with more pixels are refused. */
  pixelLimit?: number;
  /** How many label sets to keep prepared (default 16). */
  labelCacheSize?: number;
  /** Image files with more bytes are refused; only regular files are read (default 100 MiB). */
  maxFileBytes?: number;
  /** Limits on a label set: count and characters per label (defaults in src/labels.ts). */
  labelLimits?: LabelLimits;
}

export interface TagOptions {
  /** Keep only the K most probable labels per image. */
  top?: number;
  /** Keep only labels with probability ≥ p; 'calibrated': the calibration's threshold (an error without one). */
  threshold?: number | 'calibrated';
  /** Also return each label's attention over the patch grid. */
  attention?: boolean;
  /** Images per ONNX run (default 16). */
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface LabelProbability {
  label: string;
  probability: number;
  /** Attention over the patch grid [gridHeight × gridWidth], row-major (when asked for). */
  attention?: Float32Array;
}

/** How a Tagger scores (see the top of this file). */
export type Scoring = 'fused' | 'residual' | 'head' | 'clip';

/** Which scoring produced a result: what every output (JSON lines, HTTP answers) records. */
export interface ScoringMode {
  scoring: Scoring;
  /** Whether the probabilities come from a calibration fitted on validation data. */
  calibrated: boolean;
}

export interface TagResult {
  /** Position of the image in the input. */
  index: number;
  /** File path, or a description of a buffer. */
  source: string;
  /** Labels by decreasing probability (after top/threshold). */
  labels: LabelProbability[];
  /** The scoring that produced the probabilities (the Tagger's mode). */
  mode: ScoringMode;
  error?: ClipDecoderError;
}

/** A label set prepared once (text embeddings and the head's image-independent part), reused for every image. */
export interface LabelSet {
  labels: string[];
  /** The head's image-independent part (null without a head). */
  prepared: PreparedLabels | null;
  /** Label embeddings [N, E] (kept for plain scoring). */
  embeds: Float32Array;
}

/** The head option that selects plain zero-shot scoring. */
export const NO_HEAD = 'none';

/** How the score is formed: one weight set per stream (fusion.ts), for the head's trained labels and the rest. */
type Weights = Pick<Fusion, 'trained' | 'novel'>;

interface TaggerScoring {
  mode: ScoringMode;
  weights: Weights | null;
  calibration: Calibration | null;
  calibrationPath: string | null;
}

function describe(src: ImageSource): string {
  return typeof src === 'string' ? src : `<image of ${src.byteLength} bytes>`;
}

export class Tagger {
  readonly model: ClipModel;
  /** The CLIP-Decoder head; null in plain mode (head "none"). */
  readonly head: ClipDecoderHead | null;
  readonly meta: CheckpointMeta;
  /** The head checkpoint folder; null in plain mode. */
  readonly headDir: string | null;
  /** Patch grid of the attention maps. */
  readonly grid: { height: number; width: number };
  /** How probabilities are formed (see the top of this file). */
  readonly mode: ScoringMode;
  /** The calibration scored with, and its file; null without one. */
  readonly calibration: Calibration | null;
  readonly calibrationPath: string | null;
  /** Stream weights of fused / residual scoring; null for head-only and uncalibrated plain scoring. */
  private readonly weights: Weights | null;
  private readonly labelSets = new Map<string, Promise<LabelSet>>();
  private readonly labelCacheSize: number;
  private readonly maxFileBytes?: number;
  private readonly labelLimits: LabelLimits;

  private constructor(
    model: ClipModel,
    head: ClipDecoderHead | null,
    meta: CheckpointMeta,
    options: TaggerOptions,
    scoring: TaggerScoring,
  ) {
    this.model = model;
    this.head = head;
    this.headDir = head ? (options.head ?? DEFAULT_HEAD) : null;
    this.meta = meta;
    this.mode = scoring.mode;
    this.weights = scoring.weights;
    this.calibration = scoring.calibration;
    this.calibrationPath = scoring.calibrationPath;
    this.labelCacheSize = options.labelCacheSize ?? 16;
    this.maxFileBytes = options.maxFileBytes;
    this.labelLimits = options.labelLimits ?? {};
    const { imageSize, patchSize } = model.folder;
    this.grid = { height: imageSize.height / patchSize, width: imageSize.width / patchSize };
  }

  static async load(options: TaggerOptions = {}): Promise<Tagger> {
    if (options.head === NO_HEAD || options.head === null) {
      const model = await ClipModel.load(options.model ?? DEFAULT_MODEL, {
        threads: options.threads,
        pixelLimit: options.pixelLimit,
        dtype: options.dtype,
      });
      try {
        await model.checkEmbeddingOutputs('plain CLIP scoring (--head none)');
        const inFolder = join(model.folder.dir, CALIBRATION_FILE);
        const calibrationPath = options.calibration ?? (existsSync(inFolder) ? inFolder : null);
        const meta: CheckpointMeta = { labels: [], clipModel: '', promptTemplates: [...DEFAULT_TEMPLATES] };
        if (calibrationPath === null) {
          await model.logitParams(); // fail now, not on the first image, if the folder lacks them
          const scoring = { mode: { scoring: 'clip', calibrated: false } as const, weights: null, calibration: null, calibrationPath };
          return new Tagger(model, null, meta, options, scoring);
        }
        const calibration = await readCalibration(calibrationPath, {
          modelFingerprint: await clipFingerprint(model, false),
          modelId: model.id,
          headDigest: null,
        });
        const scoring = { mode: { scoring: 'clip', calibrated: true } as const, weights: calibration.fusion, calibration, calibrationPath };
        return new Tagger(model, null, meta, options, scoring);
      } catch (e) {
        await model.dispose();
        throw e;
      }
    }
    const headDir = options.head ?? DEFAULT_HEAD;
    if (!options.head && !existsSync(headDir)) {
      throw new ClipDecoderError(
        'MODEL_NOT_FOUND',
        `no --head given and the bundled head ${headDir} is not there: train one with \`clip-decoder train\` and pass --head`,
        '--head',
      );
    }
    const ck = await loadCheckpoint(headDir, new OrtMatmul({ threads: options.threads }));
    const keepCls = ck.meta.extra?.keepCls === true;
    const model = await ClipModel.load(options.model ?? DEFAULT_MODEL, {
      threads: options.threads,
      pixelLimit: options.pixelLimit,
      keepCls,
      dtype: options.dtype,
    });
    const cfg = ck.head.config;
    if (cfg.mode !== 'zero-shot') {
      throw new ClipDecoderError(
        'CHECKPOINT_INVALID',
        `${headDir}: a closed-set head cannot score arbitrary labels; use a zero-shot (CLIP-Decoder) head`,
        headDir,
      );
    }
    if (cfg.inputDim !== model.tokenDim || cfg.queryDim !== model.embedDim) {
      await model.dispose();
      throw new ClipDecoderError(
        'HEAD_MODEL_MISMATCH',
        `${headDir} expects ${cfg.inputDim}-wide image tokens and ${cfg.queryDim}-wide text embeddings (trained with ${ck.meta.clipModel}), ` +
          `but ${model.folder.dir} gives ${model.tokenDim} and ${model.embedDim}: pass the matching --model`,
        headDir,
      );
    }
    try {
      // A head records the fingerprint of its CLIP (checkpoints saved before it existed do not: not checked).
      let fingerprint: string | undefined;
      if (ck.meta.clipFingerprint !== undefined) {
        fingerprint = await clipFingerprint(model, keepCls);
        if (fingerprint !== ck.meta.clipFingerprint) {
          throw new ClipDecoderError(
            'HEAD_MODEL_MISMATCH',
            `${headDir} was trained with CLIP model ${ck.meta.clipModel} (fingerprint ${ck.meta.clipFingerprint.slice(0, 12)}…), ` +
              `but the loaded model is ${model.id} at ${model.folder.dir} (fingerprint ${fingerprint.slice(0, 12)}…): its features differ; pass the matching --model`,
            headDir,
          );
        }
      }
      const residual = residualWeights(ck.meta, headDir);
      const inFolder = join(headDir, CALIBRATION_FILE);
      const calibrationPath = options.calibration ?? (existsSync(inFolder) ? inFolder : null);
      let scoring: TaggerScoring;
      if (calibrationPath !== null) {
        const calibration = await readCalibration(calibrationPath, {
          modelFingerprint: fingerprint ?? (await clipFingerprint(model, keepCls)),
          modelId: model.id,
          headDigest: ck.weightsSha256,
        });
        scoring = { mode: { scoring: 'fused', calibrated: true }, weights: calibration.fusion, calibration, calibrationPath };
      } else if (residual) {
        scoring = {
          mode: { scoring: 'residual', calibrated: false },
          weights: residual,
          calibration: null,
          calibrationPath,
        };
      } else {
        scoring = { mode: { scoring: 'head', calibrated: false }, weights: null, calibration: null, calibrationPath };
      }
      if (scoring.weights) await model.checkEmbeddingOutputs(`${scoring.mode.scoring} scoring (the head plus CLIP's own score)`);
      return new Tagger(model, ck.head, ck.meta, options, scoring);
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }

  /** The stream weights scored with (fused: the calibration's; residual: its recorded rule); null otherwise. */
  get fusionWeights(): Weights | null {
    return this.weights;
  }

  /** The calibration's decision threshold; null without a calibration. */
  get threshold(): number | null {
    return this.calibration?.fusion.threshold ?? null;
  }

  /** One line saying how this tagger scores, for logs and stderr. */
  describeMode(): string {
    const cal = this.calibrationPath ? `calibrated by ${this.calibrationPath}, threshold ${this.threshold}` : 'uncalibrated';
    const head = this.headDir ? `head ${this.headDir}` : 'no head';
    switch (this.mode.scoring) {
      case 'fused':
        return `CLIP-Decoder+ (${this.model.id} + ${head}: CLIP's score fused with the head's, ${cal})`;
      case 'residual':
        return `CLIP-Decoder+ residual (${this.model.id} + ${head}: head logit + CLIP's scaled cosine as trained, ${cal})`;
      case 'head':
        return `CLIP-Decoder (${this.model.id} + ${head}: the head's logits alone, ${cal})`;
      default:
        return `plain CLIP (${this.model.id}, ${head}: ${this.mode.calibrated ? `w·cos + b, ${cal}` : "the model's own s·cos + b, uncalibrated"})`;
    }
  }

  /** A threshold option resolved to a number: 'calibrated' is the calibration's (an error without one). */
  resolveThreshold(threshold: number | 'calibrated' | undefined, flag = '--threshold'): number | undefined {
    if (threshold !== 'calibrated') return threshold;
    if (this.threshold === null) {
      throw new ClipDecoderError(
        'BAD_PARAMETER',
        `${flag} without a value uses the calibration's threshold, but ${this.headDir ? `the head ${this.headDir}` : 'plain CLIP'} has no calibration ` +
          `(no ${CALIBRATION_FILE} in its folder, no --calibration): give ${flag} a probability`,
        flag,
      );
    }
    return this.threshold;
  }

  /** The prompt templates the head was trained with. */
  get templates(): readonly string[] {
    return this.meta.promptTemplates.length ? this.meta.promptTemplates : DEFAULT_TEMPLATES;
  }

  /** Encodes a label set once (text model + head's image-independent part); cached by content. */
  prepareLabels(labels: readonly string[]): Promise<LabelSet> {
    const clean = checkLabels(labels, this.labelLimits);
    const key = clean.join('\u0000');
    let set = this.labelSets.get(key);
    if (set) {
      // Refresh its place in the LRU order.
      this.labelSets.delete(key);
      this.labelSets.set(key, set);
      return set;
    }
    set = (async () => {
      const queries = await embedLabels(this.model, clean, {
        templates: this.templates,
        normalize: this.meta.extra?.normalizeQueries !== false,
      });
      return { labels: clean, prepared: this.head ? this.head.prepareLabels(clean, queries) : null, embeds: queries };
    })();
    set.catch(() => this.labelSets.delete(key));
    this.labelSets.set(key, set);
    while (this.labelSets.size > this.labelCacheSize) this.labelSets.delete(this.labelSets.keys().next().value!);
    return set;
  }

  /** Tags images as they are encoded, in input order; a bad image yields its error and the rest go on. */
  async *tagStream(images: readonly ImageSource[], labels: readonly string[], options: TagOptions = {}): AsyncGenerator<TagResult> {
    if (!this.head && options.attention) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        'attention maps come from the head: there are none with head "none" (plain zero-shot scoring)',
        '--explain',
      );
    }
    const threshold = this.resolveThreshold(options.threshold);
    // The vision session opens while the label set is encoded (a cold start runs both models once).
    if (images.length > 0) this.model.preload('vision');
    const { labels: names, prepared, embeds } = await this.prepareLabels(labels);
    const L = names.length;
    const T = this.model.numTokens;
    const E = this.model.embedDim;
    const gridCells = this.grid.height * this.grid.width;
    const pending: { index: number; source: ImageSource; tokens: Float32Array; imageEmbed: Float32Array }[] = [];
    const flush = async function* (this: Tagger): AsyncGenerator<TagResult> {
      if (pending.length === 0) return;
      const B = pending.length;
      const C = this.model.tokenDim;
      let pred: { logits: Float32Array; attention?: Float32Array };
      const images = new Float32Array(B * E);
      pending.forEach((p, b) => images.set(p.imageEmbed, b * E));
      if (this.head) {
        const features = new Float32Array(B * T * C);
        pending.forEach((p, b) => features.set(p.tokens, b * T * C));
        pred = this.head.predict(features, B, T, prepared!, { attention: options.attention });
      } else if (!this.weights) {
        pred = { logits: await this.model.plainLogits(images, embeds) };
      } else {
        pred = { logits: new Float32Array(0) };
      }
      if (this.weights) {
        // CLIP's own score against the head's queries (the global stream), fused with the head's (local) logits.
        const global = globalScores(images, B, embeds, L, E);
        const local = this.head ? pred.logits : null;
        pred.logits = fuseLogits(global, local, B, L, trainedMask(names, this.head?.trainedLabels ?? null), this.weights);
      }
      for (let b = 0; b < B; b++) {
        const out: LabelProbability[] = [];
        for (let l = 0; l < L; l++) {
          const probability = 1 / (1 + Math.exp(-pred.logits[b * L + l]!));
          const item: LabelProbability = { label: names[l]!, probability };
          if (pred.attention) {
            // Drop the CLS token's weight so the map is exactly the patch grid.
            const off = (b * L + l) * T + (T - gridCells);
            item.attention = pred.attention.slice(off, off + gridCells);
          }
          out.push(item);
        }
        out.sort((x, y) => y.probability - x.probability);
        let kept = threshold !== undefined ? out.filter((x) => x.probability >= threshold) : out;
        if (options.top !== undefined) kept = kept.slice(0, options.top);
        yield { index: pending[b]!.index, source: describe(pending[b]!.source), labels: kept, mode: this.mode };
      }
      pending.length = 0;
    }.bind(this);

    const batchSize = options.batchSize ?? 16;
    for await (const r of this.model.encodeImages(images as ImageSource[], {
      batchSize,
      onProgress: options.onProgress,
      maxFileBytes: this.maxFileBytes,
    })) {
      if (r.error) {
        yield* flush();
        yield { index: r.index, source: describe(r.source), labels: [], mode: this.mode, error: r.error };
        continue;
      }
      pending.push({ index: r.index, source: r.source, tokens: r.tokens, imageEmbed: r.imageEmbed });
      if (pending.length >= batchSize) yield* flush();
    }
    yield* flush();
  }

  /** Tags one image (→ one result) or several (→ one result each, in order). */
  async tag(image: ImageSource, labels: readonly string[], options?: TagOptions): Promise<TagResult>;
  async tag(images: readonly ImageSource[], labels: readonly string[], options?: TagOptions): Promise<TagResult[]>;
  async tag(
    input: ImageSource | readonly ImageSource[],
    labels: readonly string[],
    options: TagOptions = {},
  ): Promise<TagResult | TagResult[]> {
    const many = Array.isArray(input);
    const list = (many ? input : [input]) as ImageSource[];
    const results: TagResult[] = [];
    for await (const r of this.tagStream(list, labels, options)) results.push(r);
    return many ? results : results[0]!;
  }

  async dispose(): Promise<void> {
    await this.model.dispose();
  }
}
