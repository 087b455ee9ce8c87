// CLIP-Decoder+ (docs/method.md §7): the head as a correction to CLIP, not a replacement. Every score is
//   logit = w_global · cos(image embedding, label embedding) + w_local · head logit + bias
// with one weight set for the labels the head was trained on and one for every other label (the head is
// reliable on the first and only transfers to the second). Plain CLIP is the case w_local = 0; the weights are
// fitted on validation by logistic regression, so they are also the calibration: sigmoid(logit) is a
// probability. One label embedding serves both streams: it is the head's query and CLIP's text side.
import { ClipDecoderError } from '../errors.ts';

export interface StreamWeights {
  global: number;
  local: number;
  bias: number;
}

export interface Fusion {
  /** Labels the head was trained on (its ASL targets). */
  trained: StreamWeights;
  /** Labels the head never trained on (zero-shot), and every label when there is no head. */
  novel: StreamWeights;
  /** The default decision threshold on sigmoid(logit), chosen on validation (best micro-F1). */
  threshold: number;
}

/** cos(image_b, label_l) [B, L]: image embeddings [B, E] as the model gives them, label embeddings [L, E] unit-norm. */
export function globalScores(imageEmbeds: Float32Array, B: number, labelEmbeds: Float32Array, L: number, E: number): Float32Array {
  if (imageEmbeds.length !== B * E || labelEmbeds.length !== L * E) {
    throw new ClipDecoderError(
      'INPUT_INVALID',
      `global stream: ${imageEmbeds.length} image values for B=${B} × E=${E}, ${labelEmbeds.length} label values for L=${L} × E=${E}`,
      'imageEmbeds',
    );
  }
  const out = new Float32Array(B * L);
  for (let b = 0; b < B; b++) {
    const img = imageEmbeds.subarray(b * E, (b + 1) * E);
    let n2 = 0;
    for (let e = 0; e < E; e++) n2 += img[e]! * img[e]!;
    const inv = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
    for (let l = 0; l < L; l++) {
      let dot = 0;
      const o = l * E;
      for (let e = 0; e < E; e++) dot += img[e]! * labelEmbeds[o + e]!;
      out[b * L + l] = dot * inv;
    }
  }
  return out;
}

/** The fused logits [B, L]; `local` null (no head) uses the global stream alone; trained[l] = 1 for head-trained labels. */
export function fuseLogits(
  global: Float32Array,
  local: Float32Array | null,
  B: number,
  L: number,
  trained: Uint8Array,
  fusion: Pick<Fusion, 'trained' | 'novel'>,
): Float32Array {
  const out = new Float32Array(B * L);
  for (let l = 0; l < L; l++) {
    const w = trained[l] ? fusion.trained : fusion.novel;
    for (let b = 0; b < B; b++) {
      const i = b * L + l;
      out[i] = w.global * global[i]! + (local ? w.local * local[i]! : 0) + w.bias;
    }
  }
  return out;
}

/** Which of `labels` the head was trained on, as a mask. */
export function trainedMask(labels: readonly string[], headLabels: readonly string[] | null): Uint8Array {
  const set = new Set(headLabels ?? []);
  return Uint8Array.from(labels, (l) => (set.has(l) ? 1 : 0));
}

export const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));

/**
 * Logistic regression by Newton's method: weights w (one per feature, then a bias) minimising the mean binary
 * cross-entropy of sigmoid(Σ w_k x_k + b) against y, with a small L2 on the feature weights. Features are
 * columns of equal length; rows are (image, label) pairs. A handful of parameters: converges in ~10 steps.
 */
export function fitLogistic(features: readonly Float32Array[], y: Uint8Array, l2 = 1e-6, maxIter = 50): number[] {
  const k = features.length + 1;
  const n = y.length;
  if (n === 0) throw new ClipDecoderError('INPUT_INVALID', 'fitting a calibration needs at least one (image, label) pair', 'validation');
  for (const f of features) if (f.length !== n) throw new ClipDecoderError('INPUT_INVALID', 'feature columns differ in length', 'features');
  const w = new Array<number>(k).fill(0);
  const x = (i: number, j: number) => (j < features.length ? features[j]![i]! : 1);
  let prev = Infinity;
  for (let iter = 0; iter < maxIter; iter++) {
    const g = new Float64Array(k);
    const h = new Float64Array(k * k);
    let loss = 0;
    for (let i = 0; i < n; i++) {
      let z = w[k - 1]!;
      for (let j = 0; j < k - 1; j++) z += w[j]! * x(i, j);
      const p = sigmoid(z);
      const t = y[i]!;
      loss -= t ? Math.log(Math.max(p, 1e-12)) : Math.log(Math.max(1 - p, 1e-12));
      const r = p - t;
      const s = Math.max(p * (1 - p), 1e-12);
      for (let a = 0; a < k; a++) {
        const xa = x(i, a);
        g[a] += r * xa;
        for (let c = a; c < k; c++) h[a * k + c] += s * xa * x(i, c);
      }
    }
    for (let a = 0; a < k; a++) {
      g[a] = g[a]! / n + (a < k - 1 ? l2 * w[a]! : 0);
      for (let c = a; c < k; c++) {
        const v = h[a * k + c]! / n + (a === c && a < k - 1 ? l2 : 0) + (a === c ? 1e-12 : 0);
        h[a * k + c] = v;
        h[c * k + a] = v;
      }
    }
    const step = solve(h, g, k);
    for (let a = 0; a < k; a++) w[a] = w[a]! - step[a]!;
    loss /= n;
    if (Math.abs(prev - loss) < 1e-10) break;
    prev = loss;
  }
  if (!w.every(Number.isFinite))
    throw new ClipDecoderError('INPUT_INVALID', 'calibration did not converge (non-finite weights)', 'validation');
  return w;
}

/** Solves A x = b for a small symmetric positive-definite A (Gaussian elimination with partial pivoting). */
function solve(A: Float64Array, b: Float64Array, k: number): Float64Array {
  const m = Float64Array.from(A);
  const x = Float64Array.from(b);
  for (let c = 0; c < k; c++) {
    let p = c;
    for (let r = c + 1; r < k; r++) if (Math.abs(m[r * k + c]!) > Math.abs(m[p * k + c]!)) p = r;
    if (p !== c) {
      for (let j = 0; j < k; j++) [m[c * k + j], m[p * k + j]] = [m[p * k + j]!, m[c * k + j]!];
      [x[c], x[p]] = [x[p]!, x[c]!];
    }
    const d = m[c * k + c]! || 1e-12;
    for (let r = c + 1; r < k; r++) {
      const f = m[r * k + c]! / d;
      if (f === 0) continue;
      for (let j = c; j < k; j++) m[r * k + j] = m[r * k + j]! - f * m[c * k + j]!;
      x[r] = x[r]! - f * x[c]!;
    }
  }
  for (let c = k - 1; c >= 0; c--) {
    let s = x[c]!;
    for (let j = c + 1; j < k; j++) s -= m[c * k + j]! * x[j]!;
    x[c] = s / (m[c * k + c]! || 1e-12);
  }
  return x;
}

/** The (image, label) pairs of some label columns, as feature columns and targets. */
function pairs(
  global: Float32Array,
  local: Float32Array | null,
  targets: Uint8Array,
  B: number,
  L: number,
  columns: readonly number[],
): { g: Float32Array; h: Float32Array | null; y: Uint8Array } {
  const n = B * columns.length;
  const g = new Float32Array(n);
  const h = local ? new Float32Array(n) : null;
  const y = new Uint8Array(n);
  let k = 0;
  for (let b = 0; b < B; b++)
    for (const l of columns) {
      g[k] = global[b * L + l]!;
      if (h) h[k] = local![b * L + l]!;
      y[k++] = targets[b * L + l]!;
    }
  return { g, h, y };
}

/**
 * Fits one weight set on the given label columns of validation scores: global + local (+ bias), or global alone
 * (local null), or local alone (useGlobal false: a head calibrated without CLIP's score).
 */
export function fitStreams(
  global: Float32Array,
  local: Float32Array | null,
  targets: Uint8Array,
  B: number,
  L: number,
  columns: readonly number[],
  useGlobal = true,
): StreamWeights {
  const { g, h, y } = pairs(global, local, targets, B, L, columns);
  if (useGlobal && h) {
    const [wg, wl, b] = fitLogistic([g, h], y);
    return { global: wg!, local: wl!, bias: b! };
  }
  if (h) {
    const [wl, b] = fitLogistic([h], y);
    return { global: 0, local: wl!, bias: b! };
  }
  const [wg, b] = fitLogistic([g], y);
  return { global: wg!, local: 0, bias: b! };
}

/** The threshold on probabilities that maximises micro-F1 over all pairs, and that F1. */
export function bestThreshold(probs: Float32Array, targets: Uint8Array): { threshold: number; f1: number } {
  const order = Array.from(probs.keys()).sort((a, b) => probs[b]! - probs[a]!);
  let positives = 0;
  for (let i = 0; i < targets.length; i++) positives += targets[i]!;
  let tp = 0;
  let best = { threshold: 1, f1: 0 };
  for (let r = 0; r < order.length; r++) {
    tp += targets[order[r]!]!;
    // predicted positive: the r + 1 highest; break ties by taking all equal scores together
    if (r + 1 < order.length && probs[order[r + 1]!] === probs[order[r]!]) continue;
    const f1 = positives > 0 ? (2 * tp) / (r + 1 + positives) : 0;
    if (f1 > best.f1) {
      const next = r + 1 < order.length ? probs[order[r + 1]!]! : 0;
      best = { threshold: (probs[order[r]!]! + next) / 2, f1 };
    }
  }
  return best;
}

/**
 * The whole fit on validation scores [B, L]: trained-label weights on the columns the head was trained on
 * (trained[l] = 1), novel-label weights on the others (held-out, pseudo-unseen labels: the zero-shot case), and
 * the threshold with the best micro-F1 over every pair. local null: plain CLIP (one weight set, every column).
 * useGlobal false: the head's logit alone, calibrated.
 */
export function fitFusion(
  global: Float32Array,
  local: Float32Array | null,
  targets: Uint8Array,
  B: number,
  L: number,
  trained: Uint8Array,
  useGlobal = true,
): Fusion {
  const cols = (want: number) => Array.from(trained.keys()).filter((j) => (local ? trained[j] === want : true));
  const novel = fitStreams(global, local, targets, B, L, cols(0), useGlobal);
  const weights = { trained: local ? fitStreams(global, local, targets, B, L, cols(1), useGlobal) : novel, novel };
  const z = fuseLogits(global, local, B, L, trained, weights);
  return { ...weights, threshold: bestThreshold(z.map(sigmoid), targets).threshold };
}
