// The two losses of CLIP-Decoder (docs/method.md §2–3).
import type { Buf } from '../nn/tensor.ts';

export interface AslOptions {
  gammaNeg: number;
  gammaPos: number;
  clip: number;
  eps: number;
}

/** The values of the official ZSL scripts. */
export const ASL_DEFAULTS: Readonly<AslOptions> = { gammaNeg: 4, gammaPos: 0, clip: 0.05, eps: 1e-8 };

/**
 * Asymmetric loss, SUM over batch × labels, as the official AsymmetricLoss with
 * disable_torch_grad_focal_loss=True: with p = sigmoid(x) and p_neg = min(1 − p + clip, 1),
 *   loss = −Σ [y·log(max(p, eps)) + (1−y)·log(max(p_neg, eps))] · w,  w = (1 − pt)^(γ+·y + γ−·(1−y)),
 *   pt = p·y + p_neg·(1−y),
 * where w is a constant for the gradient (computed without autograd).
 * Writes dlogits = weight · ∂loss/∂logits (overwrites) when given; returns the unweighted loss.
 */
export function aslLoss(
  logits: Buf,
  targets: ArrayLike<number>,
  n: number,
  dlogits: Buf | null,
  weight = 1,
  o: AslOptions = ASL_DEFAULTS,
): number {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const x = logits[i],
      y = targets[i];
    const p = 1 / (1 + Math.exp(-x));
    const pnegRaw = 1 - p + o.clip;
    const pneg = o.clip > 0 ? Math.min(pnegRaw, 1) : 1 - p;
    const lp = Math.log(Math.max(p, o.eps)),
      ln = Math.log(Math.max(pneg, o.eps));
    let w = 1;
    if (o.gammaNeg > 0 || o.gammaPos > 0) {
      const pt = p * y + pneg * (1 - y);
      w = (1 - pt) ** (o.gammaPos * y + o.gammaNeg * (1 - y));
    }
    total -= (y * lp + (1 - y) * ln) * w;
    if (dlogits) {
      // d log(max(p, eps))/dx = 1 − p where p ≥ eps;  d log(max(p_neg, eps))/dx = −p(1−p)/p_neg where the
      // clamps pass the gradient (p_neg not clipped at 1, p_neg ≥ eps).
      const gp = p >= o.eps ? 1 - p : 0;
      const negPass = (o.clip > 0 ? pnegRaw <= 1 : true) && pneg >= o.eps;
      const gn = negPass ? (-p * (1 - p)) / pneg : 0;
      dlogits[i] = -weight * w * (y * gp + (1 - y) * gn);
    }
  }
  return total;
}

export interface InfoNceResult {
  loss: number;
  /** ∂loss/∂(log scale) */
  dLogScale: number;
}

/**
 * Symmetric InfoNCE over a batch of matched pairs: logits = s · zi zjᵀ [B, B] with s = exp(logScale), targets
 * on the diagonal, loss = (mean row-wise CE + mean column-wise CE) / 2. zi, zj are L2-normalised rows [B, P].
 * Writes dzi, dzj = weight · ∂loss/∂z (overwrite); returns the unweighted loss and weight · ∂loss/∂logScale.
 */
export function infoNceLoss(
  zi: Buf,
  zj: Buf,
  B: number,
  P: number,
  logScale: number,
  dzi: Buf | null,
  dzj: Buf | null,
  weight = 1,
): InfoNceResult {
  const s = Math.exp(logScale);
  const L = new Float64Array(B * B); // logits
  for (let a = 0; a < B; a++) {
    for (let b = 0; b < B; b++) {
      let d = 0;
      for (let k = 0; k < P; k++) d += zi[a * P + k] * zj[b * P + k];
      L[a * B + b] = s * d;
    }
  }
  // G = ∂loss/∂L = (softmax_rows(L) − I + softmax_cols(L) − I) / (2B)
  const G = new Float64Array(B * B);
  let loss = 0;
  for (let a = 0; a < B; a++) {
    let mx = -Infinity;
    for (let b = 0; b < B; b++) mx = Math.max(mx, L[a * B + b]);
    let se = 0;
    for (let b = 0; b < B; b++) se += Math.exp(L[a * B + b] - mx);
    const lse = mx + Math.log(se);
    loss += (lse - L[a * B + a]) / (2 * B);
    for (let b = 0; b < B; b++) G[a * B + b] += (Math.exp(L[a * B + b] - lse) - (a === b ? 1 : 0)) / (2 * B);
  }
  for (let b = 0; b < B; b++) {
    let mx = -Infinity;
    for (let a = 0; a < B; a++) mx = Math.max(mx, L[a * B + b]);
    let se = 0;
    for (let a = 0; a < B; a++) se += Math.exp(L[a * B + b] - mx);
    const lse = mx + Math.log(se);
    loss += (lse - L[b * B + b]) / (2 * B);
    for (let a = 0; a < B; a++) G[a * B + b] += (Math.exp(L[a * B + b] - lse) - (a === b ? 1 : 0)) / (2 * B);
  }
  let dLogScale = 0;
  for (let i = 0; i < B * B; i++) dLogScale += G[i] * L[i]; // ∂L/∂logScale = L
  if (dzi) {
    for (let a = 0; a < B; a++) {
      for (let k = 0; k < P; k++) {
        let acc = 0;
        for (let b = 0; b < B; b++) acc += G[a * B + b] * zj[b * P + k];
        dzi[a * P + k] = weight * s * acc;
      }
    }
  }
  if (dzj) {
    for (let b = 0; b < B; b++) {
      for (let k = 0; k < P; k++) {
        let acc = 0;
        for (let a = 0; a < B; a++) acc += G[a * B + b] * zi[a * P + k];
        dzj[b * P + k] = weight * s * acc;
      }
    }
  }
  return { loss, dLogScale: weight * dLogScale };
}
