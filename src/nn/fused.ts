// Fused element-wise kernels for the training step. Each one is a composition of the plain layers in
// activations.ts / layernorm.ts / linear.ts done in a single pass over memory (the step is bound by these
// passes once ORT does the matmuls); nn-fused.test.ts checks every one against the plain layers.
import { like, type Buf } from './tensor.ts';

/** Arguments of addLayerNormForward: r = x + dropout(y); out = LayerNorm(r). */
export interface AddLayerNormForwardArgs {
  out: Buf; // [R, C]  LN(r)
  r: Buf; // [R, C]    x + dropout(y), saved for the backward (may alias y or out)
  mean: Buf; // [R]    saved
  rstd: Buf; // [R]    saved
  x: Buf; // [xRows, C] the residual path
  y: Buf; // [yRows, C] the branch, dropped
  /** Rows of x (default R): fewer rows are broadcast over the R rows, block by block (queries shared by images). */
  xRows?: number;
  /** Rows of y (default R), likewise. */
  yRows?: number;
  keep: Uint8Array | null; // [R, C] keep mask of y; null: no dropout (r = x + y)
  scale: number; // 1/(1 − p)
  weight: Buf; // [C]
  bias: Buf; // [C]
  R: number;
  C: number;
  eps: number;
}

/**
 * r = x + dropout(y) and out = LayerNorm(r), row by row (the row stays in L1 between the two). Saves r, mean,
 * rstd for the backward pass. Statistics in float64 from one pass of Σx and Σx² (LayerNorm inputs here are
 * O(1), far from cancellation trouble).
 */
export function addLayerNormForward(a: AddLayerNormForwardArgs): void {
  const { out, r, mean, rstd, x, y, keep, scale: s, weight: w, bias: b, R, C, eps } = a;
  const xRows = a.xRows ?? R,
    yRows = a.yRows ?? R;
  for (let row = 0; row < R; row++) {
    const o = row * C,
      xo = (row % xRows) * C,
      yo = (row % yRows) * C;
    const xr = x.subarray(xo, xo + C),
      yr = y.subarray(yo, yo + C),
      rr = r.subarray(o, o + C);
    let sum = 0,
      sq = 0;
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

/** Arguments of addLayerNormBackward: the forward's saved r, mean, rstd, keep, and the incoming gradient(s). */
export interface AddLayerNormBackwardArgs {
  dres: Buf; // [R, C] out: ∂/∂x, the residual path (may alias dout or dout2)
  dbranch: Buf | null; // [R, C] out: ∂/∂y = keep · scale · dres, the dropped branch
  branchBias: Float64Array | null; // [C] += Σ_rows dbranch: the bias gradient of the layer that produced y
  dweight: Float64Array; // [C] += LayerNorm weight gradient
  dbias: Float64Array; // [C] += LayerNorm bias gradient
  dout: Buf; // [R, C] incoming gradient
  dout2: Buf | null; // [R, C] a second incoming gradient (two paths into one output), added to dout
  r: Buf; // [R, C] saved
  mean: Buf; // [R]
  rstd: Buf; // [R]
  keep: Uint8Array | null;
  scale: number;
  weight: Buf; // [C]
  R: number;
  C: number;
}

/**
 * Backward of addLayerNormForward. The incoming gradient is dout (+ dout2 when given). Writes dr (the
 * gradient of x) into dres and keep·s·dr (the gradient of y) into dbranch; accumulates Σ_rows dbranch into
 * branchBias and the LayerNorm's dweight, dbias.
 */
export function addLayerNormBackward(a: AddLayerNormBackwardArgs): void {
  const { dres, dbranch, keep, scale: s, branchBias, dweight: dw, dbias: db, dout, dout2, r, mean, rstd, weight: w, R, C } = a;
  const sum = like(dout, C); // the row's total incoming gradient when there are two
  // Per-row views with loops bounded by their length let V8 drop most bounds checks (~25 % faster).
  for (let row = 0; row < R; row++) {
    const o = row * C,
      mu = mean[row],
      rs = rstd[row];
    const xr = r.subarray(o, o + C);
    let g = dout.subarray(o, o + C);
    if (dout2) {
      const g2 = dout2.subarray(o, o + C);
      for (let c = 0; c < sum.length; c++) sum[c] = g[c] + g2[c];
      g = sum;
    }
    let sumD = 0,
      sumDX = 0;
    for (let c = 0; c < g.length; c++) {
      const x = (xr[c] - mu) * rs,
        gc = g[c],
        dxh = gc * w[c];
      sumD += dxh;
      sumDX += dxh * x;
      dw[c] += gc * x;
      db[c] += gc;
    }
    // dx = rstd · (dxhat − mean(dxhat) − x̂ · mean(dxhat · x̂)); branches hoisted out of the inner loops
    const mD = sumD / C,
      mDX = sumDX / C;
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
      const so = (h * R + r) * hd,
        d = r * W + h * hd;
      for (let j = 0; j < hd; j++) {
        const v = src[so + j];
        dst[d + j] = v;
        acc[j] += v;
      }
    }
    for (let j = 0; j < hd; j++) bias[h * hd + j] = acc[j];
  }
}

/** Arguments of adamEmaKernel: one tensor's weights, gradient, moments and EMA shadow, and this step's scalars. */
export interface AdamEmaArgs {
  w: Float32Array; // weights, updated in place
  g: Float32Array; // gradient
  m: Float32Array; // first moment, updated
  v: Float32Array; // second moment, updated
  ema: Float32Array | null; // EMA shadow, updated (null: no EMA)
  emaDecay: number;
  weightDecay: number; // coupled L2 (0 for tensors that are not decayed)
  beta1: number;
  beta2: number;
  stepSize: number; // lr / (1 − β1^t)
  bc2sqrt: number; // sqrt(1 − β2^t)
  eps: number;
}

/** Adam step (torch's, coupled L2) fused with the EMA update of the same tensor: one pass instead of two. */
export function adamEmaKernel(a: AdamEmaArgs): void {
  const { w, g, m, v, ema, emaDecay, weightDecay: wd, beta1: b1, beta2: b2, stepSize, bc2sqrt, eps } = a;
  const c1 = 1 - b1,
    c2 = 1 - b2,
    ce = 1 - emaDecay,
    inv = 1 / bc2sqrt;
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
