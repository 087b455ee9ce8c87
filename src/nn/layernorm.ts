// LayerNorm over the last dimension, as torch.nn.LayerNorm (biased variance, eps inside the sqrt).

/**
 * out[R, C] = (x − mean) · rstd · w + b; saves mean[R] and rstd[R] for the backward pass.
 * out may alias x.
 */
export function layerNormForward(
  out: Float32Array | Float64Array,
  mean: Float32Array | Float64Array,
  rstd: Float32Array | Float64Array,
  x: Float32Array | Float64Array,
  w: Float32Array | Float64Array,
  b: Float32Array | Float64Array,
  R: number,
  C: number,
  eps: number,
): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += x[o + c];
    const mu = s / C;
    let v = 0;
    for (let c = 0; c < C; c++) {
      const d = x[o + c] - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / C + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < C; c++) out[o + c] = (x[o + c] - mu) * rs * w[c] + b[c];
  }
}

/**
 * dx[R, C] (overwrites; may alias dout), dw[C] and db[C] (accumulate, so zero them first or pass null).
 * x is the layer's input, mean/rstd from the forward pass.
 */
export function layerNormBackward(
  dx: Float32Array | Float64Array,
  dw: Float32Array | Float64Array | null,
  db: Float32Array | Float64Array | null,
  dout: Float32Array | Float64Array,
  x: Float32Array | Float64Array,
  mean: Float32Array | Float64Array,
  rstd: Float32Array | Float64Array,
  w: Float32Array | Float64Array,
  R: number,
  C: number,
): void {
  const dwAcc = new Float64Array(C),
    dbAcc = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const mu = mean[r],
      rs = rstd[r];
    // dxhat = dout · w;  dx = rstd · (dxhat − mean(dxhat) − xhat · mean(dxhat · xhat))
    let sumD = 0,
      sumDX = 0;
    for (let c = 0; c < C; c++) {
      const xh = (x[o + c] - mu) * rs;
      const g = dout[o + c];
      const dxh = g * w[c];
      sumD += dxh;
      sumDX += dxh * xh;
      dwAcc[c] += g * xh;
      dbAcc[c] += g;
    }
    const mD = sumD / C,
      mDX = sumDX / C;
    for (let c = 0; c < C; c++) {
      const xh = (x[o + c] - mu) * rs;
      dx[o + c] = rs * (dout[o + c] * w[c] - mD - xh * mDX);
    }
  }
  if (dw) for (let c = 0; c < C; c++) dw[c] += dwAcc[c];
  if (db) for (let c = 0; c < C; c++) db[c] += dbAcc[c];
}
