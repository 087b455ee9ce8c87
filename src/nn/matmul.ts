// Matrix products behind one interface, so the layers never care who multiplies: ONNX Runtime single-op
// sessions (ort-matmul.ts, the fast path) or the pure-TS kernel below (tiny shapes, Float64Array, fallback).
//
// Semantics are ONNX MatMul's with Gemm's extras: out = [ReLU](alpha · op(A) · op(B) (+ bias)), where A is stored as
// aDims = [...batchA, rowsA, colsA] (op(A) = Aᵀ when transA), likewise B, and the leading batch dims broadcast
// numpy-style. bias (length N) is only allowed for rank-2 products.
import { ClipDecoderError } from '../errors.ts';
import type { Buf } from './tensor.ts';

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  bias?: Buf;
  /** Apply ReLU to the result (rank-2 only; ORT fuses it into the GEMM's output stage). */
  relu?: boolean;
}

export interface MatmulBackend {
  readonly name: string;
  matmul(out: Buf, a: Buf, aDims: readonly number[], b: Buf, bDims: readonly number[], opts?: MatmulOptions): void;
  dispose(): void;
}

/** The shape of one product, resolved from the stored dims. */
export interface MatmulPlan {
  m: number;
  n: number;
  k: number;
  /** Output batch dims (broadcast of A's and B's). */
  batch: number[];
  batchCount: number;
  /** Per output batch: offsets (in elements) of its A and B matrices. */
  aOffsets: Int32Array;
  bOffsets: Int32Array;
  outDims: number[];
}

export function planMatmul(aDims: readonly number[], bDims: readonly number[], transA: boolean, transB: boolean): MatmulPlan {
  if (aDims.length < 2 || bDims.length < 2) throw new Error(`matmul needs rank ≥ 2, got [${aDims}] and [${bDims}]`);
  const ra = aDims.length,
    rb = bDims.length;
  const m = transA ? aDims[ra - 1] : aDims[ra - 2];
  const ka = transA ? aDims[ra - 2] : aDims[ra - 1];
  const kb = transB ? bDims[rb - 1] : bDims[rb - 2];
  const n = transB ? bDims[rb - 2] : bDims[rb - 1];
  if (ka !== kb) throw new Error(`matmul inner dims differ: [${aDims}]${transA ? 'ᵀ' : ''} · [${bDims}]${transB ? 'ᵀ' : ''}`);
  const aB = aDims.slice(0, ra - 2),
    bB = bDims.slice(0, rb - 2);
  const rank = Math.max(aB.length, bB.length);
  const pa = [...Array(rank - aB.length).fill(1), ...aB],
    pb = [...Array(rank - bB.length).fill(1), ...bB];
  const batch: number[] = [];
  for (let i = 0; i < rank; i++) {
    if (pa[i] !== pb[i] && pa[i] !== 1 && pb[i] !== 1) throw new Error(`matmul batch dims do not broadcast: [${aDims}] vs [${bDims}]`);
    batch.push(Math.max(pa[i], pb[i]));
  }
  let batchCount = 1;
  for (const d of batch) batchCount *= d;
  const aOffsets = new Int32Array(batchCount),
    bOffsets = new Int32Array(batchCount);
  const aMat = m * ka,
    bMat = kb * n;
  for (let idx = 0; idx < batchCount; idx++) {
    let rem = idx,
      ao = 0,
      bo = 0,
      aStride = 1,
      bStride = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const i = rem % batch[d];
      rem = Math.floor(rem / batch[d]);
      if (pa[d] !== 1) ao += i * aStride;
      if (pb[d] !== 1) bo += i * bStride;
      aStride *= pa[d];
      bStride *= pb[d];
    }
    aOffsets[idx] = ao * aMat;
    bOffsets[idx] = bo * bMat;
  }
  return { m, n, k: ka, batch, batchCount, aOffsets, bOffsets, outDims: [...batch, m, n] };
}

/** FLOPs of one product (2 per multiply-add), the unit the benchmark counts in. */
export function matmulFlops(p: MatmulPlan): number {
  return 2 * p.batchCount * p.m * p.n * p.k;
}

const BLOCK_I = 32;
const BLOCK_P = 128;

/**
 * Pure-TS kernel: i/p-blocked so a 128-row panel of B stays in cache across 32 rows of A. Accumulates in the
 * buffers' own precision (double for Float64Array, which is what the gradient checks rely on).
 */
export class TsMatmul implements MatmulBackend {
  readonly name = 'ts';

  matmul(out: Buf, a: Buf, aDims: readonly number[], b: Buf, bDims: readonly number[], opts: MatmulOptions = {}): void {
    const transA = !!opts.transA,
      transB = !!opts.transB,
      alpha = opts.alpha ?? 1;
    const p = planMatmul(aDims, bDims, transA, transB);
    checkOut(out, p);
    if (opts.bias && (p.outDims.length !== 2 || opts.bias.length !== p.n)) throw new Error('matmul bias needs rank 2 and length N');
    if (opts.relu && p.outDims.length !== 2) throw new Error('matmul relu needs rank 2');
    const { m, n, k } = p;
    for (let bi = 0; bi < p.batchCount; bi++) {
      gemmOne(out, bi * m * n, a, p.aOffsets[bi], b, p.bOffsets[bi], m, n, k, transA, transB, alpha, opts.bias);
    }
    if (opts.relu) for (let i = 0; i < m * n; i++) if (out[i] < 0) out[i] = 0;
  }

  dispose(): void {}
}

export function checkOut(out: Buf, p: MatmulPlan): void {
  const need = p.batchCount * p.m * p.n;
  if (out.length < need) throw new ClipDecoderError('INPUT_INVALID', `matmul output buffer holds ${out.length} values, needs ${need}`);
}

function gemmOne(
  out: Buf,
  oo: number,
  a: Buf,
  ao: number,
  b: Buf,
  bo: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  bias?: Buf,
): void {
  // A(i, p) = a[ao + i*sai + p*sap]
  const sai = transA ? 1 : k,
    sap = transA ? m : 1;
  if (transB) {
    // B(p, j) = b[bo + j*k + p]: rows of B are contiguous in p, so take dot products.
    const arow = new Float64Array(k);
    for (let i = 0; i < m; i++) {
      for (let p0 = 0; p0 < k; p0++) arow[p0] = a[ao + i * sai + p0 * sap];
      for (let j = 0; j < n; j++) {
        let s = 0;
        const bj = bo + j * k;
        for (let p0 = 0; p0 < k; p0++) s += arow[p0] * b[bj + p0];
        out[oo + i * n + j] = alpha * s + (bias ? bias[j] : 0);
      }
    }
    return;
  }
  // B(p, j) = b[bo + p*n + j]: accumulate rows of B scaled by A(i, p) (i-k-j order, blocked over i and p).
  out.fill(0, oo, oo + m * n);
  for (let i0 = 0; i0 < m; i0 += BLOCK_I) {
    const i1 = Math.min(m, i0 + BLOCK_I);
    for (let p0 = 0; p0 < k; p0 += BLOCK_P) {
      const p1 = Math.min(k, p0 + BLOCK_P);
      for (let i = i0; i < i1; i++) {
        const orow = oo + i * n;
        for (let pp = p0; pp < p1; pp++) {
          const aip = a[ao + i * sai + pp * sap];
          if (aip === 0) continue;
          const brow = bo + pp * n;
          for (let j = 0; j < n; j++) out[orow + j] += aip * b[brow + j];
        }
      }
    }
  }
  if (alpha !== 1 || bias) {
    for (let i = 0; i < m; i++) {
      const orow = oo + i * n;
      for (let j = 0; j < n; j++) out[orow + j] = alpha * out[orow + j] + (bias ? bias[j] : 0);
    }
  }
}
