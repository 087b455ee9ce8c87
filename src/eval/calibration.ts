// How far probabilities can be read as probabilities: the reliability of (image, label) probabilities in
// equal-width bins, the expected calibration error, and precision / recall / F1 at a threshold (micro, over
// every pair). Used by the experiments' report and the calibration of the bundled head.

export interface ReliabilityBin {
  lo: number;
  hi: number;
  count: number;
  /** Mean predicted probability in the bin. */
  meanProb: number;
  /** Fraction of the bin's pairs that are positive. */
  fracPos: number;
}

export interface Reliability {
  bins: ReliabilityBin[];
  /** Expected calibration error: Σ_bins (count / n) · |meanProb − fracPos|. */
  ece: number;
}

export function reliability(probs: Float32Array, targets: Uint8Array, bins = 15): Reliability {
  const count = new Float64Array(bins);
  const sumP = new Float64Array(bins);
  const pos = new Float64Array(bins);
  for (let i = 0; i < probs.length; i++) {
    const b = Math.min(bins - 1, Math.max(0, Math.floor(probs[i]! * bins)));
    count[b]! += 1;
    sumP[b]! += probs[i]!;
    pos[b]! += targets[i]!;
  }
  let ece = 0;
  const out: ReliabilityBin[] = [];
  for (let b = 0; b < bins; b++) {
    const c = count[b]!;
    const bin = { lo: b / bins, hi: (b + 1) / bins, count: c, meanProb: c ? sumP[b]! / c : 0, fracPos: c ? pos[b]! / c : 0 };
    out.push(bin);
    if (c) ece += (c / probs.length) * Math.abs(bin.meanProb - bin.fracPos);
  }
  return { bins: out, ece };
}

export interface ThresholdMetrics {
  threshold: number;
  precision: number;
  recall: number;
  f1: number;
}

/** Micro precision / recall / F1 of "probability ≥ threshold" over every pair. */
export function f1AtThreshold(probs: Float32Array, targets: Uint8Array, threshold: number): ThresholdMetrics {
  let tp = 0,
    fp = 0,
    fn = 0;
  for (let i = 0; i < probs.length; i++) {
    const p = probs[i]! >= threshold;
    if (p && targets[i]) tp++;
    else if (p) fp++;
    else if (targets[i]) fn++;
  }
  const precision = tp + fp ? tp / (tp + fp) : 0;
  const recall = tp + fn ? tp / (tp + fn) : 0;
  return { threshold, precision, recall, f1: precision + recall ? (2 * precision * recall) / (precision + recall) : 0 };
}
