// Multi-head cross-attention as torch.nn.MultiheadAttention computes it (packed in-projection W [3D, D] =
// [W_q; W_k; W_v], out-projection D→D, softmax over the memory tokens, scores scaled by 1/sqrt(head_dim),
// dropout on the attention weights), without masks.
//
// Layout: heads are kept "head-major", [H, rows, hd], which is exactly what one batched product of the input
// [rows, D] with the weight viewed as [H, hd, D] produces, so no transposes are needed for Q, K and V. With
// rows = B·N (queries) and B·T (memory), head h of image b is the slice [h·B + b] of a [H·B, N|T, hd] array.
import type { MatmulBackend } from './matmul.ts';
import { like, type Buf } from './tensor.ts';
import type { Rng } from './rng.ts';
import { sumRows } from './linear.ts';
import { headsToRowsSum } from './fused.ts';

export interface AttnDims {
  B: number; // images
  N: number; // queries per image
  T: number; // memory tokens per image
  D: number; // model width
  H: number; // heads
}

/** Parameters (or, with the same shapes, their gradients). */
export interface AttnWeights {
  inW: Buf; // [3D, D]
  inB: Buf; // [3D]
  outW: Buf; // [D, D]
  outB: Buf; // [D]
}

/** Activations kept for the backward pass, plus its scratch. Allocated once per shape and reused. */
export class AttnCache {
  /** Current shape; any shape within the allocated capacity may be set with setDims. */
  dims: AttnDims;
  private readonly cap: AttnDims;
  readonly qh: Buf; // [H, B·N, hd]   projected queries (+ bias)
  readonly kvh: Buf; // [2H, B·T, hd]  projected keys (heads 0..H−1) and values (H..2H−1)
  readonly p: Buf; // [H·B, N, T]     softmax weights
  readonly pd: Buf; // [H·B, N, T]    after attention dropout (aliases p when no dropout)
  readonly keep: Uint8Array; // [H·B·N·T]
  readonly oh: Buf; // [H·B, N, hd]   per-head outputs
  readonly o: Buf; // [B·N, D]        heads concatenated
  hasDropout = false;
  dropScale = 1;
  // backward scratch
  readonly dO: Buf; // [B·N, D]
  readonly doh: Buf; // [H·B, N, hd]
  readonly dp: Buf; // [H·B, N, T]
  readonly dqh: Buf; // [H·B, N, hd]
  readonly dkvh: Buf; // [2H, B·T, hd]
  readonly dQ: Buf; // [B·N, D]
  readonly dKV: Buf; // [B·T, 2D]

  constructor(dims: AttnDims, proto: Buf) {
    this.dims = { ...dims };
    this.cap = { ...dims };
    const { B, N, T, D, H } = dims;
    const hd = D / H;
    this.qh = like(proto, H * B * N * hd);
    this.kvh = like(proto, 2 * H * B * T * hd);
    this.p = like(proto, H * B * N * T);
    this.pd = like(proto, H * B * N * T);
    this.keep = new Uint8Array(H * B * N * T);
    this.oh = like(proto, H * B * N * hd);
    this.o = like(proto, B * N * D);
    this.dO = like(proto, B * N * D);
    this.doh = like(proto, H * B * N * hd);
    this.dp = like(proto, H * B * N * T);
    this.dqh = like(proto, H * B * N * hd);
    this.dkvh = like(proto, 2 * H * B * T * hd);
    this.dQ = like(proto, B * N * D);
    this.dKV = like(proto, B * T * 2 * D);
  }

  fits(d: AttnDims): boolean {
    const c = this.cap;
    return d.D === c.D && d.H === c.H && d.B * d.N <= c.B * c.N && d.B * d.T <= c.B * c.T && d.B * d.N * d.T <= c.B * c.N * c.T;
  }

  setDims(d: AttnDims): void {
    if (!this.fits(d)) throw new Error(`attention cache too small for ${JSON.stringify(d)}`);
    this.dims = { ...d };
  }
}

/**
 * out[Hp, R, hd] = x[R, D] · W[Hp·hd, D]ᵀ + b, split by head. W and b may be views into the packed
 * in-projection (rows 0..D for Q, D..3D for K and V).
 */
export function projectHeads(be: MatmulBackend, out: Buf, x: Buf, w: Buf, b: Buf, R: number, D: number, Hp: number, hd: number): void {
  be.matmul(out, x, [R, D], w, [Hp, hd, D], { transB: true });
  for (let h = 0; h < Hp; h++) {
    for (let r = 0; r < R; r++) {
      const o = (h * R + r) * hd;
      for (let j = 0; j < hd; j++) out[o + j] += b[h * hd + j];
    }
  }
}

/** dst[R, Hp·hd] ← src[Hp, R, hd] (concatenate heads). */
export function headsToRows(dst: Buf, src: Buf, R: number, Hp: number, hd: number): void {
  const W = Hp * hd;
  for (let h = 0; h < Hp; h++) {
    for (let r = 0; r < R; r++) {
      const s = (h * R + r) * hd,
        d = r * W + h * hd;
      for (let j = 0; j < hd; j++) dst[d + j] = src[s + j];
    }
  }
}

/** dst[Hp, R, hd] ← src[R, Hp·hd] (split heads). */
export function rowsToHeads(dst: Buf, src: Buf, R: number, Hp: number, hd: number): void {
  const W = Hp * hd;
  for (let h = 0; h < Hp; h++) {
    for (let r = 0; r < R; r++) {
      const d = (h * R + r) * hd,
        s = r * W + h * hd;
      for (let j = 0; j < hd; j++) dst[d + j] = src[s + j];
    }
  }
}

/** In place: p ← softmax(p) per row; and pd = keep·s·p when pd is given. */
export function softmaxDropoutRows(p: Buf, pd: Buf | null, keep: Uint8Array | null, s: number, R: number, C: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let mx = -Infinity;
    for (let c = 0; c < C; c++) if (p[o + c] > mx) mx = p[o + c];
    let sum = 0;
    for (let c = 0; c < C; c++) {
      const e = Math.exp(p[o + c] - mx);
      p[o + c] = e;
      sum += e;
    }
    const inv = 1 / sum;
    if (pd && keep) {
      for (let c = 0; c < C; c++) {
        const v = p[o + c] * inv;
        p[o + c] = v;
        pd[o + c] = v * keep[o + c] * s;
      }
    } else {
      for (let c = 0; c < C; c++) p[o + c] *= inv;
    }
  }
}

/** Row-wise softmax of x[R, C] into y (may alias). */
export function softmaxRows(y: Buf, x: Buf, R: number, C: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * C;
    let mx = -Infinity;
    for (let c = 0; c < C; c++) if (x[o + c] > mx) mx = x[o + c];
    let s = 0;
    for (let c = 0; c < C; c++) {
      const e = Math.exp(x[o + c] - mx);
      y[o + c] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let c = 0; c < C; c++) y[o + c] *= inv;
  }
}

export interface AttnForwardOptions {
  /** Dropout probability on the attention weights (training only). */
  dropout: number;
  rng?: Rng;
  /** Explicit keep mask [H·B·N·T] (replaces the rng draw; used to replay PyTorch's masks). */
  keep?: Uint8Array;
  /** c.qh holds [H, N, hd] queries shared by every image (inference with a prepared label set). */
  sharedQueries?: boolean;
}

/** K and V of every head from the memory m[B·T, D] into c.kvh [2H, B·T, hd]. */
export function attnProjectMemory(be: MatmulBackend, c: AttnCache, m: Buf, w: AttnWeights): void {
  const { B, T, D, H } = c.dims;
  projectHeads(be, c.kvh, m, w.inW.subarray(D * D), w.inB.subarray(D), B * T, D, 2 * H, D / H);
}

/** Q of every head from the queries t[R, D] into qh [H, R, hd]. */
export function attnProjectQueries(be: MatmulBackend, qh: Buf, t: Buf, w: AttnWeights, R: number, D: number, H: number): void {
  projectHeads(be, qh, t, w.inW.subarray(0, D * D), w.inB.subarray(0, D), R, D, H, D / H);
}

/**
 * Attention given projected queries in c.qh and projected memory in c.kvh:
 * out[B·N, D] = out_proj(concat_h softmax(q_h k_hᵀ / sqrt(hd)) v_h).
 */
export function attnForward(be: MatmulBackend, c: AttnCache, out: Buf, w: AttnWeights, opt: AttnForwardOptions): void {
  const { B, N, T, D, H } = c.dims;
  const hd = D / H;
  const HB = H * B;
  const scale = 1 / Math.sqrt(hd);
  const kh = c.kvh.subarray(0, HB * T * hd),
    vh = c.kvh.subarray(HB * T * hd);
  // scores [H·B, N, T] (or [H, B, N, T] with queries broadcast over images)
  const qDims = opt.sharedQueries ? [H, 1, N, hd] : [HB, N, hd];
  const kDims = opt.sharedQueries ? [H, B, T, hd] : [HB, T, hd];
  be.matmul(c.p, c.qh, qDims, kh, kDims, { transB: true, alpha: scale });
  c.hasDropout = opt.dropout > 0;
  if (c.hasDropout) {
    const keep = c.keep.subarray(0, HB * N * T);
    if (opt.keep) keep.set(opt.keep.subarray(0, keep.length));
    else if (opt.rng) opt.rng.fillKeepMask(keep, opt.dropout);
    else throw new Error('attention dropout needs an rng or a mask');
    c.dropScale = 1 / (1 - opt.dropout);
  }
  softmaxDropoutRows(c.p, c.hasDropout ? c.pd : null, c.hasDropout ? c.keep : null, c.dropScale, HB * N, T);
  const pd = c.hasDropout ? c.pd : c.p;
  be.matmul(c.oh, pd, [HB, N, T], vh, [HB, T, hd]); // [H·B, N, hd]
  headsToRows(c.o, c.oh, B * N, H, hd); // [B·N, D]
  be.matmul(out, c.o, [B * N, D], w.outW, [D, D], { transB: true, bias: w.outB });
}

/** Training forward: projects t[B·N, D] and m[B·T, D], then attends (c keeps what backward needs). */
export function crossAttentionForward(
  be: MatmulBackend,
  c: AttnCache,
  out: Buf,
  t: Buf,
  m: Buf,
  w: AttnWeights,
  opt: AttnForwardOptions,
): void {
  const { B, N, D, H } = c.dims;
  attnProjectQueries(be, c.qh, t, w, B * N, D, H);
  attnProjectMemory(be, c, m, w);
  attnForward(be, c, out, w, opt);
}

/** Attention weights averaged over heads, as MultiheadAttention returns them: out[B, N, T]. */
export function averageHeads(out: Buf, c: AttnCache): void {
  const { B, N, T, H } = c.dims;
  const per = B * N * T;
  for (let i = 0; i < per; i++) {
    let s = 0;
    for (let h = 0; h < H; h++) s += c.p[h * per + i];
    out[i] = s / H;
  }
}

/**
 * Backward of attnForward: dout[B·N, D] → the gradients of the projected queries (c.dqh [H·B, N, hd]) and of
 * the projected keys and values (c.dkvh [2H, B·T, hd]); the out-projection's gradients overwrite g.
 */
export function attnBackward(be: MatmulBackend, c: AttnCache, g: AttnWeights, dout: Buf, w: AttnWeights): void {
  const { B, N, T, D, H } = c.dims;
  const hd = D / H;
  const HB = H * B;
  const scale = 1 / Math.sqrt(hd);
  const kh = c.kvh.subarray(0, HB * T * hd),
    vh = c.kvh.subarray(HB * T * hd);
  const pd = c.hasDropout ? c.pd : c.p;
  // out-projection
  be.matmul(g.outW, dout, [B * N, D], c.o, [B * N, D], { transA: true });
  sumRows(g.outB, dout, B * N, D);
  be.matmul(c.dO, dout, [B * N, D], w.outW, [D, D]);
  rowsToHeads(c.doh, c.dO, B * N, H, hd);
  // through P·V
  be.matmul(c.dp, c.doh, [HB, N, hd], vh, [HB, T, hd], { transB: true }); // dPd [H·B, N, T]
  const dvh = c.dkvh.subarray(HB * T * hd),
    dkh = c.dkvh.subarray(0, HB * T * hd);
  be.matmul(dvh, pd, [HB, N, T], c.doh, [HB, N, hd], { transA: true }); // dV [H·B, T, hd]
  // through dropout and softmax: dS = P ⊙ (dP − Σ_t dP ⊙ P)
  const R = HB * N;
  const dropScale = c.dropScale;
  for (let r = 0; r < R; r++) {
    const o = r * T;
    if (c.hasDropout) for (let t = 0; t < T; t++) c.dp[o + t] *= c.keep[o + t] * dropScale;
    let dot = 0;
    for (let t = 0; t < T; t++) dot += c.dp[o + t] * c.p[o + t];
    for (let t = 0; t < T; t++) c.dp[o + t] = c.p[o + t] * (c.dp[o + t] - dot);
  }
  // through the scaled scores
  be.matmul(c.dqh, c.dp, [HB, N, T], kh, [HB, T, hd], { alpha: scale }); // dQ heads [H·B, N, hd]
  be.matmul(dkh, c.dp, [HB, N, T], c.qh, [HB, N, hd], { transA: true, alpha: scale }); // dK heads [H·B, T, hd]
}

/**
 * Backward of attnProjectQueries: c.dqh → dt[B·N, D] (the gradient of the queries before projection) and the
 * Q rows of the in-projection's gradients (concatenating heads and summing the bias in one pass).
 */
export function attnProjectQueriesBackward(be: MatmulBackend, c: AttnCache, dt: Buf, g: AttnWeights, t: Buf, w: AttnWeights): void {
  const { B, N, D, H } = c.dims;
  headsToRowsSum(c.dQ, c.dqh, g.inB.subarray(0, D), B * N, H, D / H); // [B·N, D]
  be.matmul(g.inW.subarray(0, D * D), c.dQ, [B * N, D], t, [B * N, D], { transA: true });
  be.matmul(dt, c.dQ, [B * N, D], w.inW.subarray(0, D * D), [D, D]);
}

/** Backward of attnProjectMemory: c.dkvh → dm[B·T, D] (overwrites) and the K and V rows of the in-projection's gradients. */
export function attnProjectMemoryBackward(be: MatmulBackend, c: AttnCache, dm: Buf, g: AttnWeights, m: Buf, w: AttnWeights): void {
  const { B, T, D, H } = c.dims;
  headsToRowsSum(c.dKV, c.dkvh, g.inB.subarray(D), B * T, 2 * H, D / H); // [B·T, 2D]
  be.matmul(g.inW.subarray(D * D), c.dKV, [B * T, 2 * D], m, [B * T, D], { transA: true });
  be.matmul(dm, c.dKV, [B * T, 2 * D], w.inW.subarray(D * D), [2 * D, D]);
}

/**
 * Backward of crossAttentionForward (per-image queries only). dout[B·N, D] → dq[B·N, D] (gradient of the
 * queries before projection), dm[B·T, D] (of the memory); parameter gradients overwrite g.
 */
export function crossAttentionBackward(
  be: MatmulBackend,
  c: AttnCache,
  dq: Buf,
  dm: Buf,
  g: AttnWeights,
  dout: Buf,
  tq: Buf,
  m: Buf,
  w: AttnWeights,
): void {
  attnBackward(be, c, g, dout, w);
  attnProjectQueriesBackward(be, c, dq, g, tq, w);
  attnProjectMemoryBackward(be, c, dm, g, m, w);
}
