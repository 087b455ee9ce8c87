// Linear layer, PyTorch layout: W [O, I], b [O].
import type { MatmulBackend } from './matmul.ts';
import type { Buf } from './tensor.ts';

/** out[R, O] = x[R, I] · Wᵀ + b, optionally followed by ReLU (fused into the GEMM by the ORT backend). */
export function linearForward(
  be: MatmulBackend,
  out: Buf,
  x: Buf,
  w: Buf,
  b: Buf | null,
  R: number,
  I: number,
  O: number,
  relu = false,
): void {
  be.matmul(out, x, [R, I], w, [O, I], { transB: true, bias: b ?? undefined, relu });
}

/**
 * dx[R, I] = dout · W;  dW[O, I] = doutᵀ · x;  db[O] = Σ_r dout.  All overwrite; pass null to skip one
 * (dx of the first layer: the frozen CLIP features need no gradient).
 */
export function linearBackward(
  be: MatmulBackend,
  dx: Buf | null,
  dw: Buf | null,
  db: Buf | null,
  dout: Buf,
  x: Buf,
  w: Buf,
  R: number,
  I: number,
  O: number,
): void {
  if (dx) be.matmul(dx, dout, [R, O], w, [O, I]);
  if (dw) be.matmul(dw, dout, [R, O], x, [R, I], { transA: true });
  if (db) sumRows(db, dout, R, O);
}

/** out[C] = Σ_r x[r, C] (overwrites). */
export function sumRows(out: Buf, x: Buf, R: number, C: number): void {
  const acc = new Float64Array(C);
  for (let r = 0; r < R; r++) {
    const o = r * C;
    for (let c = 0; c < C; c++) acc[c] += x[o + c];
  }
  for (let c = 0; c < C; c++) out[c] = acc[c];
}
