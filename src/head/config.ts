// Architecture of an ML-Decoder / CLIP-Decoder head (docs/method.md §1).
import { ClipDecoderError } from '../errors.ts';

export type HeadMode = 'zero-shot' | 'closed-set';

export interface HeadConfig {
  mode: HeadMode;
  /** C: width of the image tokens. */
  inputDim: number;
  /** E: width of the label text embeddings (zero-shot queries). */
  queryDim: number;
  /** D: decoder width. */
  dModel: number;
  heads: number;
  ffnDim: number;
  dropout: number;
  layerNormEps: number;
  /** Closed-set only: number of classes N (0 in zero-shot mode). */
  numClasses: number;
  /** Closed-set only: number of fixed random queries K ≤ N. */
  numGroups: number;
  /** P: width of the CLIP-loss projections; 0 disables the CLIP-loss branch. */
  clipProjDim: number;
  /** Width of the caption text embeddings fed to the CLIP loss (usually E). */
  captionDim: number;
  /**
   * Start the output layer (fc) at zero, so the untrained head adds nothing: a residual head (CLIP-Decoder+,
   * docs/method.md §7) trained on top of CLIP's own logit starts as plain CLIP. Absent: xavier-normal (§1).
   */
  zeroOutput?: boolean;
}

/** The official hyper-parameters, for CLIP ViT-B/32 features (C = 768, E = 512). */
export function defaultHeadConfig(over: Partial<HeadConfig> = {}): HeadConfig {
  const cfg: HeadConfig = {
    mode: 'zero-shot',
    inputDim: 768,
    queryDim: 512,
    dModel: 768,
    heads: 8,
    ffnDim: 2048,
    dropout: 0.1,
    layerNormEps: 1e-5,
    numClasses: 0,
    numGroups: 0,
    clipProjDim: 512,
    captionDim: over.queryDim ?? 512,
    ...over,
  };
  if (cfg.mode === 'closed-set' && !over.numGroups) cfg.numGroups = Math.min(100, cfg.numClasses);
  validateHeadConfig(cfg);
  return cfg;
}

/** Closed-set group size g = ceil(N / K) (the official int(N / K + 0.999)). */
export function groupSize(cfg: HeadConfig): number {
  return Math.ceil(cfg.numClasses / cfg.numGroups);
}

export function validateHeadConfig(cfg: HeadConfig): void {
  const bad = (msg: string, subject: string): never => {
    throw new ClipDecoderError('INPUT_INVALID', `head config: ${msg}`, subject);
  };
  const posInt = (v: unknown, name: string) => {
    if (!Number.isInteger(v) || (v as number) <= 0) bad(`${name} must be a positive integer, got ${v}`, name);
  };
  if (cfg.mode !== 'zero-shot' && cfg.mode !== 'closed-set') bad(`mode must be 'zero-shot' or 'closed-set', got ${cfg.mode}`, 'mode');
  posInt(cfg.inputDim, 'inputDim');
  posInt(cfg.dModel, 'dModel');
  posInt(cfg.heads, 'heads');
  posInt(cfg.ffnDim, 'ffnDim');
  if (cfg.dModel % cfg.heads !== 0) bad(`dModel ${cfg.dModel} is not divisible by heads ${cfg.heads}`, 'heads');
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) bad(`dropout must be in [0, 1), got ${cfg.dropout}`, 'dropout');
  if (!(cfg.layerNormEps > 0)) bad(`layerNormEps must be > 0`, 'layerNormEps');
  if (cfg.mode === 'zero-shot') posInt(cfg.queryDim, 'queryDim');
  else {
    posInt(cfg.numClasses, 'numClasses');
    posInt(cfg.numGroups, 'numGroups');
    if (cfg.numGroups > cfg.numClasses) bad(`numGroups ${cfg.numGroups} exceeds numClasses ${cfg.numClasses}`, 'numGroups');
  }
  if (!Number.isInteger(cfg.clipProjDim) || cfg.clipProjDim < 0) bad(`clipProjDim must be an integer ≥ 0`, 'clipProjDim');
  if (cfg.clipProjDim > 0) posInt(cfg.captionDim, 'captionDim');
}
