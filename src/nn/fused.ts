// Fused element-wise kernels for the training step. Each one is a composition of the plain layers in
// activations.ts / layernorm.ts / linear.ts done in a single pass over memory (the step is bound by these
// passes once ORT does the matmuls); nn-fused.test.ts checks every one against the plain layers.
import { like, type Buf } from './tensor.ts';

/**
 * r = x + dropout(y) and out = LayerNorm(r), row by row (the row stays in L1 between the two).
 * keep = null: no dropout (r = x + y). Saves r, mean, rstd for the backward pass. Statistics in float64
 * from one pass of Σx and Σx² (LayerNorm inputs here are O(1), far from cancellation trouble).
 */
export function addLayerNormForward(
  out: Buf, r: Buf, mean: Buf, rstd: Buf, x: Buf, y: Buf, keep: Uint8Array | null, s: number,
  w: Buf, b: Buf, R: number, C: number, eps: number,
): void {
  for (let row = 0; row < R; row++) {
    const o = row * C;
    const xr = x.subarray(o, o + C), yr = y.subarray(o, o + C), rr = r.subarray(o, o + C);
    let sum = 0, sq = 0;
    if (keep) {
      const kp = keep.subarray(o, o + C);
      for (let c = 0; c < rr.length; c++) {
        const v = xr[c] + yr[c] * kp[c] * s; // branchless dropout (see activations.ts)
        rr[c] = v;
        sum += v;
        sq += v * v;
      }
    } else {
      for (let c = 0; c < rr.length; c++) {
        const v = xr[c] + yr[c];
        rr[c] = v;
        sum += v;
        sq += v * v;
      }
    }
    const mu = sum / C;
    const rs = 1 / Math.sqrt(Math.max(sq / C - mu * mu, 0) + eps);
    mean[row] = mu;
    rstd[row] = rs;
    const or = out.subarray(o, o + C);
    for (let c = 0; c < or.length; c++) or[c] = (rr[c] - mu) * rs * w[c] + b[c];
  }
}

/**
 * Backward of addLayerNormForward. The incoming gradient is dout (+ dout2 when given, e.g. the two paths
 * into one LayerNorm output). Writes dr (the gradient of x, the residual path) into dres, and
 * keep·s·dr (the gradient of y, the dropped branch) into dbranch; accumulates Σ_rows dbranch into
 * branchBias (the bias gradient of the layer that produced y) and the LayerNorm's dw, db.
 * dres may alias dout.
 */
export function addLayerNormBackward(
  dres: Buf, dbranch: Buf | null, keep: Uint8Array | null, s: number, branchBias: Float64Array | null,
  dw: Float64Array, db: Float64Array, dout: Buf, dout2: Buf | null, r: Buf, mean: Buf, rstd: Buf, w: Buf, R: number, C: number,
): void {
  const sum = like(dout, C); // the row's total incoming gradient when there are two
  // Per-row views with loops bounded by their length let V8 drop most bounds checks (~25 % faster).
  for (let row = 0; row < R; row++) {
    const o = row * C, mu = mean[row], rs = rstd[row];
    const xr = r.subarray(o, o + C);
    let g = dout.subarray(o, o + C);
    if (dout2) {
      const g2 = dout2.subarray(o, o + C);
      for (let c = 0; c < sum.length; c++) sum[c] = g[c] + g2[c];
      g = sum;
    }
    let sumD = 0, sumDX = 0;
    for (let c = 0; c < g.length; c++) {
      const x = (xr[c] - mu) * rs, gc = g[c], dxh = gc * w[c];
      sumD += dxh;
      sumDX += dxh * x;
      dw[c] += gc * x;
      db[c] += gc;
    }
    // dx = rstd · (dxhat − mean(dxhat) − x̂ · mean(dxhat · x̂)); branches hoisted out of the inner loops
    const mD = sumD / C, mDX = sumDX / C;
    const dr = dres.subarray(o, o + C);
    if (!dbranch) {
      for (let c = 0; c < dr.length; c++) dr[c] = rs * (g[c] * w[c] - mD - (xr[c] - mu) * rs * mDX);
      continue;
    }
    const dbr = dbranch.subarray(o, o + C);
    if (keep) {
      const kp = keep.subarray(o, o + C);
      for (let c = 0; c < dr.length; c++) {
        const d = rs * (g[c] * w[c] - mD - (xr[c] - mu) * rs * mDX);
        dr[c] = d;
        dbr[c] = d * kp[c] * s;
      }
    } else {
      for (let c = 0; c < dr.length; c++) {
        const d = rs * (g[c] * w[c] - mD - (xr[c] - mu) * rs * mDX);
        dr[c] = d;
        dbr[c] = d;
      }
    }
    if (branchBias) for (let c = 0; c < dbr.length; c++) branchBias[c] += dbr[c];
  }
}

/**
 * Backward through dropout(ReLU(z)) given its output h (h > 0 exactly where the unit was kept and active):
 * dz = dh · s where h > 0, else 0, in place; accumulates Σ_rows dz into bias (the bias gradient of z's layer).
 */
export function dropoutReluBackward(dh: Buf, h: Buf, s: number, bias: Float64Array, R: number, C: number): void {
  for (let row = 0; row < R; row++) {
    const o = row * C;
    for (let c = 0; c < C; c++) {
      const v = Number(h[o + c] > 0) * dh[o + c] * s;
      dh[o + c] = v;
      bias[c] += v;
    }
  }
}

/** dst[R, Hp·hd] ← src[Hp, R, hd] and bias[Hp·hd] = Σ_rows dst (overwrites bias). */
export function headsToRowsSum(dst: Buf, src: Buf, bias: Buf, R: number, Hp: number, hd: number): void {
  const W = Hp * hd;
  const acc = new Float64Array(hd);
  for (let h = 0; h < Hp; h++) {
    acc.fill(0);
    for (let r = 0; r < R; r++) {
      const so = (h * R + r) * hd, d = r * W + h * hd;
      for (let j = 0; j < hd; j++) {
        const v = src[so + j];
        dst[d + j] = v;
        acc[j] += v;
      }
    }
    for (let j = 0; j < hd; j++) bias[h * hd + j] = acc[j];
  }
}

/**
 * Adam step (torch's, coupled L2) fused with the EMA update of the same tensor: one pass instead of two.
 * ema may be null.
 */
export function adamEmaKernel(
  w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, ema: Float32Array | null, emaDecay: number,
  wd: number, b1: number, b2: number, stepSize: number, bc2sqrt: number, eps: number,
): void {
  const c1 = 1 - b1, c2 = 1 - b2, ce = 1 - emaDecay, inv = 1 / bc2sqrt;
  const n = w.length;
  if (ema) {
    for (let i = 0; i < n; i++) {
      const gi = g[i] + wd * w[i];
      const mi = b1 * m[i] + c1 * gi;
      const vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] -= (stepSize * mi) / (Math.sqrt(vi) * inv + eps);
      ema[i] = emaDecay * ema[i] + ce * w[i]; // reads back the float32-rounded weight, as a separate EMA pass would
    }
  } else {
    for (let i = 0; i < n; i++) {
      const gi = g[i] + wd * w[i];
      const mi = b1 * m[i] + c1 * gi;
      const vi = b2 * v[i] + c2 * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] -= (stepSize * mi) / (Math.sqrt(vi) * inv + eps);
    }
  }
}
