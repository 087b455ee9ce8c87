// Element-wise layers: ReLU and dropout. Dropout masks come from a seeded Rng (or are passed in, to replay
// PyTorch's); a mask is a Uint8Array of keep flags and kept values are scaled by 1/(1−p).
import type { Buf } from './tensor.ts';

/** out = max(x, 0); out may alias x. */
export function reluForward(out: Buf, x: Buf, n: number): void {
  for (let i = 0; i < n; i++) {
    const v = x[i];
    out[i] = v > 0 ? v : 0;
  }
}

/** dx = dout where y > 0 (y = the ReLU's output); dx may alias dout. */
export function reluBackward(dx: Buf, dout: Buf, y: Buf, n: number): void {
  for (let i = 0; i < n; i++) dx[i] = y[i] > 0 ? dout[i] : 0;
}

/** out = x · keep · scale; out may alias x. */
export function dropoutForward(out: Buf, x: Buf, keep: Uint8Array, scale: number, n: number): void {
  for (let i = 0; i < n; i++) out[i] = keep[i] ? x[i] * scale : 0;
}

/** dx = dout · keep · scale; dx may alias dout. */
export function dropoutBackward(dx: Buf, dout: Buf, keep: Uint8Array, scale: number, n: number): void {
  for (let i = 0; i < n; i++) dx[i] = keep[i] ? dout[i] * scale : 0;
}

export function dropoutScale(p: number): number {
  return p > 0 ? 1 / (1 - p) : 1;
}
