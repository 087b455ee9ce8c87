// Mean over tokens and row-wise L2 normalisation (the CLIP-loss branch).
import type { Buf } from './tensor.ts';

/** out[B, D] = mean over t of x[B, T, D]. */
export function meanTokensForward(out: Buf, x: Buf, B: number, T: number, D: number): void {
  const inv = 1 / T;
  for (let b = 0; b < B; b++) {
    const ob = b * D;
    for (let d = 0; d < D; d++) out[ob + d] = 0;
    for (let t = 0; t < T; t++) {
      const xo = (b * T + t) * D;
      for (let d = 0; d < D; d++) out[ob + d] += x[xo + d];
    }
    for (let d = 0; d < D; d++) out[ob + d] *= inv;
  }
}

/** dx[B, T, D] += dout[B, D] / T (accumulates: the memory also gets gradient from the attention). */
export function meanTokensBackward(dx: Buf, dout: Buf, B: number, T: number, D: number): void {
  const inv = 1 / T;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const xo = (b * T + t) * D;
      for (let d = 0; d < D; d++) dx[xo + d] += dout[b * D + d] * inv;
    }
  }
}

export const L2_EPS = 1e-12;

/** y[R, C] = x / max(‖x‖, 1e-12) per row; norms[R] saved for the backward pass. */
export function l2NormalizeForward(y: Buf, norms: Buf, x: Buf, R: number, C: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let s = 0;
    for (let c = 0; c < C; c++) s += x[o + c] * x[o + c];
    const nrm = Math.max(Math.sqrt(s), L2_EPS);
    norms[r] = nrm;
    for (let c = 0; c < C; c++) y[o + c] = x[o + c] / nrm;
  }
}

/** dx = (dy − y · (y·dy)) / ‖x‖ per row (overwrites). */
export function l2NormalizeBackward(dx: Buf, dy: Buf, y: Buf, norms: Buf, R: number, C: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    const nrm = norms[r];
    if (nrm <= L2_EPS) {
      for (let c = 0; c < C; c++) dx[o + c] = dy[o + c] / L2_EPS;
      continue;
    }
    let dot = 0;
    for (let c = 0; c < C; c++) dot += y[o + c] * dy[o + c];
    for (let c = 0; c < C; c++) dx[o + c] = (dy[o + c] - y[o + c] * dot) / nrm;
  }
}
