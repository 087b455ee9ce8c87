// Multi-label ranking metrics, exactly as the NUS-WIDE zero-shot literature defines them (LESA/BiAM/MKT):
//   AP (per label): sort images by score, AP = (1/#pos) Σ_{positives at rank r} precision@r (non-interpolated);
//                   a label without positives has AP 0 in the mean (the mean over labels with positives is
//                   reported too).
//   P/R/F1@K (micro): each image's K highest-scoring labels are its predictions (strict top-K: exactly K, ties
//                   broken by lower label index), P = TP/(images·K), R = TP/(all positives), F1 = 2PR/(P+R).
// Ties in AP are broken the same way: equal scores rank by lower image index (a stable sort), so results are
// deterministic and match numpy's `argsort(-s, kind="stable")`. All values are fractions in [0, 1].
// Inputs: scores Float32Array [N, L] row-major, targets Uint8Array [N, L] (1 = positive).
import { ClipDecoderError } from '../errors.ts';

export interface TopKResult {
  k: number;
  precision: number;
  recall: number;
  f1: number;
  truePositives: number;
}

const TWO_POW_21 = 2097152;

/** Checks shapes and finiteness; names the first bad entry. */
export function checkScores(scores: Float32Array, targets: Uint8Array, n: number, l: number, labels?: readonly string[]): void {
  if (scores.length !== n * l)
    throw new ClipDecoderError('INPUT_INVALID', `scores hold ${scores.length} values, expected ${n} images × ${l} labels`, 'scores');
  if (targets.length !== n * l)
    throw new ClipDecoderError('INPUT_INVALID', `targets hold ${targets.length} values, expected ${n} images × ${l} labels`, 'targets');
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i]!)) {
      const label = labels?.[i % l] ?? `column ${i % l}`;
      throw new ClipDecoderError('INPUT_INVALID', `score of image ${Math.floor(i / l)} for label "${label}" is NaN`, label);
    }
  }
}

/**
 * The rank order of one score column: image indices by descending score, ties by ascending index. Packs an
 * order-preserving 32-bit key of each float32 score with the image index into one float64 (exact below 2^53),
 * so a plain numeric typed-array sort does the work; beyond 2^21 images it falls back to a comparator sort.
 */
export function rankOrder(column: Float32Array): Uint32Array {
  const n = column.length;
  const order = new Uint32Array(n);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const keyOf = (s: number): number => {
    f[0] = s === 0 ? 0 : s; // -0 ranks with +0
    const bits = u[0]!;
    const asc = bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0; // ascending in the score
    return 0xffffffff - asc; // descending
  };
  if (n <= TWO_POW_21) {
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) packed[i] = keyOf(column[i]!) * TWO_POW_21 + i;
    packed.sort();
    for (let i = 0; i < n; i++) order[i] = packed[i]! % TWO_POW_21;
    return order;
  }
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    keys[i] = keyOf(column[i]!);
    order[i] = i;
  }
  order.sort((a, b) => keys[a]! - keys[b]! || a - b);
  return order;
}

/** Average precision of one label given its rank order and target column. 0 when it has no positive. */
export function averagePrecisionFromOrder(order: Uint32Array, target: Uint8Array): number {
  let tp = 0;
  let sum = 0;
  for (let r = 0; r < order.length; r++) {
    if (target[order[r]!]) {
      tp++;
      sum += tp / (r + 1);
    }
  }
  return tp === 0 ? 0 : sum / tp;
}

/** One column of a row-major [N, L] matrix. */
function column<T extends Float32Array | Uint8Array>(m: T, n: number, l: number, j: number, out: T): T {
  for (let i = 0; i < n; i++) out[i] = m[i * l + j]!;
  return out;
}

export interface LabelAP {
  /** Column index in the scores matrix. */
  column: number;
  ap: number;
  positives: number;
}

/**
 * AP of one column without sorting all images: only the positives are sorted (by the same packed key as
 * rankOrder), then each negative is placed among them by binary search; the negatives ranked above the j-th
 * positive give its rank. O(N log P) instead of O(N log N), and no N-sized sort.
 */
export function averagePrecision(s: Float32Array, t: Uint8Array): number {
  const n = s.length;
  let p = 0;
  for (let i = 0; i < n; i++) p += t[i]!;
  if (p === 0) return 0;
  if (n > TWO_POW_21) return averagePrecisionFromOrder(rankOrder(s), t);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const pk = new Float64Array(p); // packed keys of the positives: ascending = better rank first
  let q = 0;
  for (let i = 0; i < n; i++) {
    if (!t[i]) continue;
    const v = s[i]!;
    f[0] = v === 0 ? 0 : v;
    const bits = u[0]!;
    pk[q++] = (0xffffffff - (bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0)) * TWO_POW_21 + i;
  }
  pk.sort();
  const above = new Uint32Array(p + 1); // above[m]: negatives ranked after exactly m positives
  for (let i = 0; i < n; i++) {
    if (t[i]) continue;
    const v = s[i]!;
    f[0] = v === 0 ? 0 : v;
    const bits = u[0]!;
    const key = (0xffffffff - (bits & 0x80000000 ? ~bits >>> 0 : (bits | 0x80000000) >>> 0)) * TWO_POW_21 + i;
    let lo = 0;
    let hi = p;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pk[mid]! < key) lo = mid + 1;
      else hi = mid;
    }
    above[lo]! += 1;
  }
  let negativesAbove = 0;
  let sum = 0;
  for (let j = 0; j < p; j++) {
    negativesAbove += above[j]!; // negatives that rank above the (j+1)-th positive
    sum += (j + 1) / (j + 1 + negativesAbove);
  }
  return sum / p;
}

/** AP of each listed column (default: all). Columns are gathered in blocks so the row-major reads stay local. */
export function averagePrecisions(scores: Float32Array, targets: Uint8Array, n: number, l: number, columns?: readonly number[]): LabelAP[] {
  const cols = columns ?? Array.from({ length: l }, (_, j) => j);
  const B = Math.max(1, Math.min(64, cols.length));
  const s = new Float32Array(B * n); // [B, N]: block of columns, each contiguous
  const t = new Uint8Array(B * n);
  const out: LabelAP[] = [];
  for (let b0 = 0; b0 < cols.length; b0 += B) {
    const nb = Math.min(B, cols.length - b0);
    for (let i = 0; i < n; i++) {
      const row = i * l;
      for (let c = 0; c < nb; c++) {
        const j = cols[b0 + c]!;
        s[c * n + i] = scores[row + j]!;
        t[c * n + i] = targets[row + j]!;
      }
    }
    for (let c = 0; c < nb; c++) {
      const sc = s.subarray(c * n, (c + 1) * n);
      const tc = t.subarray(c * n, (c + 1) * n);
      let positives = 0;
      for (let i = 0; i < n; i++) positives += tc[i]!;
      out.push({ column: cols[b0 + c]!, ap: averagePrecision(sc, tc), positives });
    }
  }
  return out;
}

export interface MeanAP {
  /** Mean over all labels, a label without positives counting 0. */
  mAP: number;
  /** Mean over labels with at least one positive. */
  mAPWithPositives: number;
  labels: number;
  labelsWithPositives: number;
}

export function meanAP(aps: readonly LabelAP[]): MeanAP {
  let sum = 0;
  let withPos = 0;
  for (const a of aps) {
    sum += a.ap;
    if (a.positives > 0) withPos++;
  }
  return {
    mAP: aps.length === 0 ? 0 : sum / aps.length,
    mAPWithPositives: withPos === 0 ? 0 : sum / withPos, // labels without positives add 0 to the sum
    labels: aps.length,
    labelsWithPositives: withPos,
  };
}

/**
 * Micro P/R/F1 at each K over the listed columns (ranked among themselves, ties by lower position in
 * `columns`). With fewer than K columns every column is predicted and P divides by that number.
 * `rows` restricts the images (default all).
 */
export function topKMetrics(
  scores: Float32Array,
  targets: Uint8Array,
  n: number,
  l: number,
  ks: readonly number[],
  columns?: readonly number[],
  rows?: readonly number[],
): TopKResult[] {
  const cols = columns ?? Array.from({ length: l }, (_, j) => j);
  const kMax = Math.min(Math.max(0, ...ks), cols.length);
  const images = rows ?? Array.from({ length: n }, (_, i) => i);
  const topIdx = new Int32Array(kMax); // positions in cols, best first
  const topVal = new Float64Array(kMax);
  const tp = new Float64Array(kMax + 1); // tp[k] = true positives among the first k predictions, summed over images
  let positives = 0;
  for (const i of images) {
    const base = i * l;
    let filled = 0;
    for (let c = 0; c < cols.length; c++) {
      const j = cols[c]!;
      positives += targets[base + j]!;
      let v = scores[base + j]!;
      if (v === 0) v = 0;
      // Insert if strictly better than the current last (an equal score never displaces a lower index).
      if (filled < kMax) filled++;
      else if (!(v > topVal[kMax - 1]!)) continue;
      let p = filled - 1;
      while (p > 0 && v > topVal[p - 1]!) {
        topVal[p] = topVal[p - 1]!;
        topIdx[p] = topIdx[p - 1]!;
        p--;
      }
      topVal[p] = v;
      topIdx[p] = c;
    }
    let hits = 0;
    for (let p = 0; p < kMax; p++) {
      hits += targets[base + cols[topIdx[p]!]!]!;
      tp[p + 1] += hits;
    }
  }
  return ks.map((k) => {
    const kk = Math.min(k, cols.length);
    const truePositives = tp[kk]!;
    const predicted = images.length * kk;
    const precision = predicted === 0 ? 0 : truePositives / predicted;
    const recall = positives === 0 ? 0 : truePositives / positives;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { k, precision, recall, f1, truePositives };
  });
}

/** Precision and recall after each positive in the ranking of one column (for PR curves). */
export function precisionRecallCurve(
  scores: Float32Array,
  targets: Uint8Array,
  n: number,
  l: number,
  j: number,
): { precision: number[]; recall: number[] } {
  const s = column(scores, n, l, j, new Float32Array(n));
  const t = column(targets, n, l, j, new Uint8Array(n));
  let positives = 0;
  for (let i = 0; i < n; i++) positives += t[i]!;
  const order = rankOrder(s);
  const precision: number[] = [];
  const recall: number[] = [];
  let tp = 0;
  for (let r = 0; r < n; r++) {
    if (t[order[r]!]) {
      tp++;
      precision.push(tp / (r + 1));
      recall.push(tp / positives);
    }
  }
  return { precision, recall };
}
