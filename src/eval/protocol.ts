// The zero-shot protocols on a scores matrix: ZSL ranks only the unseen labels, GZSL ranks seen and unseen
// labels together, both on all the evaluation images (images without an unseen positive stay in, as in
// BiAM/MKT; the official ML-Decoder evaluation drops them, available here as an option). Labels are looked up
// by name, so the column order of the scores never has to match the targets'.
import { ClipDecoderError } from '../errors.ts';
import { averagePrecisions, checkScores, meanAP, topKMetrics } from './metrics.ts';
import type { MeanAP, TopKResult } from './metrics.ts';

export interface ScoresInput {
  /** [N, L] row-major, L = labels.length */
  scores: Float32Array;
  /** Column names of `scores` and `targets`. */
  labels: readonly string[];
  /** [N, L] row-major, 1 = positive */
  targets: Uint8Array;
  /** Number of images N. */
  images: number;
}

export interface ProtocolMetrics extends MeanAP {
  images: number;
  topK: TopKResult[];
}

export interface LabelResult {
  label: string;
  unseen: boolean;
  ap: number;
  positives: number;
}

export interface ProtocolResult {
  zsl: ProtocolMetrics | null;
  gzsl: ProtocolMetrics;
  perLabel: LabelResult[];
}

export interface ProtocolOptions {
  ks?: readonly number[];
  /** Leave out of ZSL the images without an unseen positive (ML-Decoder's evaluation). Default false. */
  dropImagesWithoutUnseen?: boolean;
}

function columnsOf(input: ScoresInput, names: readonly string[]): number[] {
  const index = new Map<string, number>();
  input.labels.forEach((l, j) => index.set(l, j));
  return names.map((name) => {
    const j = index.get(name);
    if (j === undefined) throw new ClipDecoderError('INPUT_INVALID', `the scores have no column for label "${name}"`, name);
    return j;
  });
}

/** Metrics when ranking only `names` (each is a column of the input). */
export function evaluateLabelSet(
  input: ScoresInput,
  names: readonly string[],
  options: ProtocolOptions & { rows?: readonly number[] } = {},
): ProtocolMetrics {
  const { scores, targets, images: n } = input;
  const l = input.labels.length;
  checkScores(scores, targets, n, l, input.labels);
  const cols = columnsOf(input, names);
  const ks = options.ks ?? [3, 5];
  let aps: ReturnType<typeof averagePrecisions>;
  if (options.rows && options.rows.length !== n) {
    // Restrict to a subset of images: copy those rows.
    const m = options.rows.length;
    const s = new Float32Array(m * l);
    const t = new Uint8Array(m * l);
    options.rows.forEach((i, r) => {
      s.set(scores.subarray(i * l, (i + 1) * l), r * l);
      t.set(targets.subarray(i * l, (i + 1) * l), r * l);
    });
    aps = averagePrecisions(s, t, m, l, cols);
  } else {
    aps = averagePrecisions(scores, targets, n, l, cols);
  }
  return {
    ...meanAP(aps),
    images: options.rows?.length ?? n,
    topK: topKMetrics(scores, targets, n, l, ks, cols, options.rows),
  };
}

/** ZSL: rank the unseen labels only. */
export function evaluateZsl(input: ScoresInput, unseen: readonly string[], options: ProtocolOptions = {}): ProtocolMetrics {
  let rows: number[] | undefined;
  if (options.dropImagesWithoutUnseen) {
    const cols = columnsOf(input, unseen);
    const l = input.labels.length;
    rows = [];
    for (let i = 0; i < input.images; i++) if (cols.some((j) => input.targets[i * l + j])) rows.push(i);
  }
  return evaluateLabelSet(input, unseen, { ...options, rows });
}

/** GZSL: rank seen and unseen labels together. */
export function evaluateGzsl(
  input: ScoresInput,
  seen: readonly string[],
  unseen: readonly string[],
  options: ProtocolOptions = {},
): ProtocolMetrics {
  return evaluateLabelSet(input, [...seen, ...unseen], options);
}

/** Both protocols and the per-label AP (a label's AP does not depend on which other labels are ranked, so it is computed once). */
export function evaluateProtocol(
  input: ScoresInput,
  seen: readonly string[],
  unseen: readonly string[],
  options: ProtocolOptions = {},
): ProtocolResult {
  const { scores, targets, images: n } = input;
  const l = input.labels.length;
  checkScores(scores, targets, n, l, input.labels);
  const ks = options.ks ?? [3, 5];
  const all = [...seen, ...unseen];
  const cols = columnsOf(input, all);
  const aps = averagePrecisions(scores, targets, n, l, cols);
  const gzsl: ProtocolMetrics = { ...meanAP(aps), images: n, topK: topKMetrics(scores, targets, n, l, ks, cols) };
  let zsl: ProtocolMetrics | null = null;
  if (unseen.length > 0) {
    zsl = options.dropImagesWithoutUnseen
      ? evaluateZsl(input, unseen, options)
      : { ...meanAP(aps.slice(seen.length)), images: n, topK: topKMetrics(scores, targets, n, l, ks, cols.slice(seen.length)) };
  }
  const unseenSet = new Set(unseen);
  const perLabel = aps.map((a, k) => ({ label: all[k]!, unseen: unseenSet.has(all[k]!), ap: a.ap, positives: a.positives }));
  return { zsl, gzsl, perLabel };
}
