// The ML-Decoder / CLIP-Decoder head (reference/clip-decoder.md §1–2): parameters, the training step
// (forward + backward + both losses) and inference with a prepared label set. Shapes: B images, T tokens of
// width C, Nq query rows (N labels in zero-shot mode, K groups in closed-set mode), L logits per image.
import { ClipDecoderError } from '../errors.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import { makeParam, ParamSet, type Param } from '../nn/param.ts';
import type { Rng } from '../nn/rng.ts';
import { linearBackward, linearForward } from '../nn/linear.ts';
import { reluBackward } from '../nn/activations.ts';
import { layerNormForward } from '../nn/layernorm.ts';
import { addLayerNormBackward, addLayerNormForward, dropoutReluBackward } from '../nn/fused.ts';
import {
  AttnCache, attnForward, attnProjectMemory, attnProjectQueries, averageHeads, crossAttentionBackward,
  crossAttentionForward, type AttnWeights,
} from '../nn/attention.ts';
import { meanTokensForward } from '../nn/pool.ts';
import { linearDefault, normal, xavierNormal, xavierUniform } from '../nn/init.ts';
import { assertFinite } from '../nn/tensor.ts';
import { ClipContrastive } from './clip-loss.ts';
import { aslLoss, ASL_DEFAULTS, type AslOptions } from './losses.ts';
import { groupSize, validateHeadConfig, type HeadConfig } from './config.ts';

/** Dropout keep masks of one training step, in the engine's layouts (see DropoutMasks in docs/engine.md). */
export interface DropoutMasks {
  drop1: Uint8Array; // [B, Nq, D]   on the queries (stands in for self-attention)
  attn: Uint8Array; // [H, B, Nq, T] on the attention weights
  drop2: Uint8Array; // [B, Nq, D]   after attention
  ffn: Uint8Array; // [B, Nq, F]    inside the feed-forward
  drop3: Uint8Array; // [B, Nq, D]   after the feed-forward
}

export interface TrainBatch {
  /** Image tokens [B, T, C]. */
  features: Float32Array;
  B: number;
  T: number;
  /** Zero-shot: text embeddings of the (seen) labels [N, E]. Closed-set: omit. */
  queries?: Float32Array;
  /** Targets [B, L] in {0, 1} (L = N zero-shot, numClasses closed-set). */
  targets: Float32Array;
  /** Caption text embeddings [B, captionDim] for the CLIP loss (required when alpha > 0). */
  captions?: Float32Array;
}

export interface StepOptions {
  /** Weight of the CLIP loss. */
  alpha: number;
  /** Weight of the ASL. */
  beta: number;
  /** Draws the dropout masks (required when config.dropout > 0 and no masks are given). */
  rng?: Rng;
  /** Explicit masks (replay), overriding rng. */
  masks?: DropoutMasks;
  asl?: AslOptions;
}

export interface StepLosses {
  /** beta · asl + alpha · clip */
  loss: number;
  asl: number;
  clip: number;
}

/** Everything about a label set that does not depend on the image, computed once. */
export interface PreparedLabels {
  readonly labels: readonly string[];
  /** Query rows: N (zero-shot) or K (closed-set). */
  readonly Nq: number;
  /** Logits per image. */
  readonly L: number;
  /** LN1(2·queries) [Nq, D]: the residual input of the attention block. */
  readonly t1: Float32Array;
  /** Attention queries per head [H, Nq, hd] (bias included). */
  readonly qh: Float32Array;
  /** The parameter version it was computed from (stale after a training step). */
  readonly version: number;
}

export interface Prediction {
  /** Raw logits [B, L]; sigmoid gives probabilities. */
  logits: Float32Array;
  /** Cross-attention weights averaged over heads [B, L, T] (zero-shot) or [B, K, T] (closed-set), on request. */
  attention?: Float32Array;
}

export interface PredictOptions {
  attention?: boolean;
  /** Query rows per chunk × images: bounds memory for huge label sets (default 4096 rows). */
  maxRows?: number;
}

/** Training activations and scratch, allocated once per (B, T, Nq). */
class TrainWork {
  readonly m: Float32Array; // [B·T, D]  memory (after ReLU)
  readonly pooled: Float32Array; // [B, D]
  readonly tq: Float32Array; // [Nq, D] queries after projection + ReLU (zero-shot) or the fixed queries
  readonly u: Float32Array; // [B·Nq, D]  LN1 input: t + dropout(t)
  readonly t1: Float32Array; // [B·Nq, D]
  readonly a: Float32Array; // [B·Nq, D]  attention output
  readonly r2: Float32Array; // [B·Nq, D]  LN2 input
  readonly t2: Float32Array;
  readonly h: Float32Array; // [B·Nq, F]  dropout(ReLU(linear1)): > 0 exactly where the backward passes
  readonly f: Float32Array; // [B·Nq, D]  linear2 output
  readonly r3: Float32Array; // LN3 input
  readonly t3: Float32Array;
  readonly mean1: Float32Array; readonly rstd1: Float32Array;
  readonly mean2: Float32Array; readonly rstd2: Float32Array;
  readonly mean3: Float32Array; readonly rstd3: Float32Array;
  readonly logits: Float32Array; // [B, L]
  readonly keep1: Uint8Array; readonly keep2: Uint8Array; readonly keep3: Uint8Array;
  readonly attn: AttnCache;
  // backward
  readonly dlogits: Float32Array;
  readonly dA: Float32Array; // [B·Nq, D] scratch
  readonly dB: Float32Array; // [B·Nq, D] scratch
  readonly dC: Float32Array; // [B·Nq, D] scratch
  readonly dH: Float32Array; // [B·Nq, F]
  readonly dm: Float32Array; // [B·T, D]
  readonly dpooled: Float32Array; // [B, D]
  readonly dtq: Float32Array; // [Nq, D]
  // float64 accumulators of column sums (LayerNorm and bias gradients)
  readonly accD: Float64Array[]; // 8 × [D]
  readonly accF: Float64Array; // [F]
  // closed-set group FC
  readonly tk: Float32Array; // [K, B, D]
  readonly gk: Float32Array; // [K, B, g]

  constructor(readonly B: number, readonly T: number, readonly Nq: number, readonly L: number, cfg: HeadConfig) {
    const D = cfg.dModel, F = cfg.ffnDim, R = B * Nq;
    const f = (n: number) => new Float32Array(n);
    this.m = f(B * T * D); this.pooled = f(B * D); this.tq = f(Nq * D);
    this.u = f(R * D); this.t1 = f(R * D); this.a = f(R * D); this.r2 = f(R * D); this.t2 = f(R * D);
    this.h = f(R * F); this.f = f(R * D); this.r3 = f(R * D); this.t3 = f(R * D);
    this.mean1 = f(R); this.rstd1 = f(R); this.mean2 = f(R); this.rstd2 = f(R); this.mean3 = f(R); this.rstd3 = f(R);
    this.logits = f(B * L);
    this.keep1 = new Uint8Array(R * D); this.keep2 = new Uint8Array(R * D); this.keep3 = new Uint8Array(R * D);
    this.attn = new AttnCache({ B, N: Nq, T, D, H: cfg.heads }, this.m);
    this.dlogits = f(B * L); this.dA = f(R * D); this.dB = f(R * D); this.dC = f(R * D); this.dH = f(R * F);
    this.dm = f(B * T * D); this.dpooled = f(B * D); this.dtq = f(Nq * D);
    this.accD = Array.from({ length: 8 }, () => new Float64Array(D));
    this.accF = new Float64Array(F);
    const g = cfg.mode === 'closed-set' ? groupSize(cfg) : 0;
    this.tk = f(cfg.mode === 'closed-set' ? R * D : 0);
    this.gk = f(cfg.mode === 'closed-set' ? R * g : 0);
  }
}

/** Inference scratch for one (B, T, rows-per-chunk) budget. */
class InferWork {
  readonly m: Float32Array;
  readonly attn: AttnCache;
  readonly a: Float32Array; readonly t2: Float32Array; readonly h: Float32Array; readonly t3: Float32Array;
  readonly mean: Float32Array; readonly rstd: Float32Array;
  readonly logits: Float32Array; readonly avg: Float32Array;
  readonly tk: Float32Array; readonly gk: Float32Array;
  constructor(readonly B: number, readonly T: number, readonly chunk: number, cfg: HeadConfig) {
    const D = cfg.dModel, R = B * chunk;
    const f = (n: number) => new Float32Array(n);
    this.m = f(B * T * D);
    this.attn = new AttnCache({ B, N: chunk, T, D, H: cfg.heads }, this.m);
    this.a = f(R * D); this.t2 = f(R * D); this.h = f(R * cfg.ffnDim); this.t3 = f(R * D);
    this.mean = f(R); this.rstd = f(R); this.logits = f(R); this.avg = f(R * T);
    const g = cfg.mode === 'closed-set' ? groupSize(cfg) : 0;
    this.tk = f(cfg.mode === 'closed-set' ? R * D : 0);
    this.gk = f(cfg.mode === 'closed-set' ? R * g : 0);
  }
}

export class ClipDecoderHead {
  readonly config: HeadConfig;
  readonly params = new ParamSet();
  /** The CLIP-loss branch (null when clipProjDim = 0). Its parameters are part of `params`. */
  readonly clip: ClipContrastive | null;
  /** Labels this head was trained on (set by training code or a checkpoint); closed-set heads score exactly these. */
  trainedLabels: string[] | null = null;
  /** Bumped whenever parameters change, so stale prepared label sets are detected. */
  version = 0;
  private be: MatmulBackend;
  private work?: TrainWork;
  private infer?: InferWork;

  // parameter handles (PyTorch names of the official module where one exists)
  readonly embedW: Param; readonly embedB: Param; // embed_standart  [D, C], [D]
  readonly qpW: Param | null; readonly qpB: Param | null; // wordvec_proj [D, E], [D] (zero-shot)
  readonly queryEmbed: Param | null; // query_embed [K, D], fixed N(0, 1) (closed-set)
  readonly n1w: Param; readonly n1b: Param;
  readonly inW: Param; readonly inB: Param; readonly outW: Param; readonly outB: Param;
  readonly n2w: Param; readonly n2b: Param;
  readonly l1W: Param; readonly l1b: Param; readonly l2W: Param; readonly l2b: Param;
  readonly n3w: Param; readonly n3b: Param;
  readonly fcW: Param; readonly fcB: Param; // duplicate_pooling [D, 1] | [K, D, g], duplicate_pooling_bias [1] | [N]

  /** A head with zeroed parameters; call init(rng) or load weights. */
  constructor(config: HeadConfig, backend: MatmulBackend) {
    validateHeadConfig(config);
    this.config = { ...config };
    this.be = backend;
    const { inputDim: C, queryDim: E, dModel: D, ffnDim: F } = config;
    const ps = this.params;
    const add = (name: string, shape: number[], trainable = true) => ps.add(makeParam(name, shape, trainable));
    this.embedW = add('embed.weight', [D, C]);
    this.embedB = add('embed.bias', [D]);
    if (config.mode === 'zero-shot') {
      this.qpW = add('query_proj.weight', [D, E]);
      this.qpB = add('query_proj.bias', [D]);
      this.queryEmbed = null;
    } else {
      this.qpW = this.qpB = null;
      this.queryEmbed = add('query_embed', [config.numGroups, D], false);
    }
    this.n1w = add('norm1.weight', [D]); this.n1b = add('norm1.bias', [D]);
    this.inW = add('attn.in_proj_weight', [3 * D, D]); this.inB = add('attn.in_proj_bias', [3 * D]);
    this.outW = add('attn.out_proj.weight', [D, D]); this.outB = add('attn.out_proj.bias', [D]);
    this.n2w = add('norm2.weight', [D]); this.n2b = add('norm2.bias', [D]);
    this.l1W = add('linear1.weight', [F, D]); this.l1b = add('linear1.bias', [F]);
    this.l2W = add('linear2.weight', [D, F]); this.l2b = add('linear2.bias', [D]);
    this.n3w = add('norm3.weight', [D]); this.n3b = add('norm3.bias', [D]);
    if (config.mode === 'zero-shot') {
      this.fcW = add('fc.weight', [D, 1]);
      this.fcB = add('fc.bias', [1]);
    } else {
      this.fcW = add('fc.weight', [config.numGroups, D, groupSize(config)]);
      this.fcB = add('fc.bias', [config.numClasses]);
    }
    this.clip = config.clipProjDim > 0 ? new ClipContrastive(config.clipProjDim, D, config.captionDim) : null;
    if (this.clip) for (const p of this.clip.params) ps.add(p);
  }

  /** A freshly initialised head: PyTorch's initialisers, every draw from `rng`. */
  static create(config: HeadConfig, backend: MatmulBackend, rng: Rng): ClipDecoderHead {
    const h = new ClipDecoderHead(config, backend);
    h.init(rng);
    return h;
  }

  /**
   * PyTorch initialisation (§1): Linear default (kaiming-uniform a=√5, bias U(±1/sqrt(fan_in))),
   * MHA in-projection xavier-uniform with zero bias, out-projection zero bias, LayerNorm 1/0, fc weight
   * xavier-normal, fc bias 0, closed-set queries N(0, 1); then the CLIP-loss branch.
   */
  init(rng: Rng): void {
    linearDefault(this.embedW.data, this.embedB.data, this.embedW.shape, rng);
    if (this.qpW && this.qpB) linearDefault(this.qpW.data, this.qpB.data, this.qpW.shape, rng);
    if (this.queryEmbed) normal(this.queryEmbed.data, rng);
    xavierUniform(this.inW.data, this.inW.shape, rng);
    this.inB.data.fill(0);
    linearDefault(this.outW.data, null, this.outW.shape, rng);
    this.outB.data.fill(0);
    linearDefault(this.l1W.data, this.l1b.data, this.l1W.shape, rng);
    linearDefault(this.l2W.data, this.l2b.data, this.l2W.shape, rng);
    for (const n of [this.n1w, this.n2w, this.n3w]) n.data.fill(1);
    for (const n of [this.n1b, this.n2b, this.n3b]) n.data.fill(0);
    xavierNormal(this.fcW.data, this.fcW.shape, rng);
    this.fcB.data.fill(0);
    this.clip?.init(rng);
    this.version++;
  }

  get backend(): MatmulBackend {
    return this.be;
  }

  /** Query rows per image and logits per image for a label count N. */
  shapeFor(N: number): { Nq: number; L: number } {
    return this.config.mode === 'zero-shot' ? { Nq: N, L: N } : { Nq: this.config.numGroups, L: this.config.numClasses };
  }

  private attnWeights(): AttnWeights {
    return { inW: this.inW.data, inB: this.inB.data, outW: this.outW.data, outB: this.outB.data };
  }

  private attnGrads(): AttnWeights {
    return { inW: this.inW.grad!, inB: this.inB.grad!, outW: this.outW.grad!, outB: this.outB.grad! };
  }

  // ---------------------------------------------------------------------------------------------------------
  // training

  /** Checks a training batch and returns N (labels in the batch). */
  private checkBatch(batch: TrainBatch, opts: StepOptions): number {
    const cfg = this.config;
    const { B, T } = batch;
    if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) {
      throw new ClipDecoderError('INPUT_INVALID', `batch needs positive integer B and T, got B=${B}, T=${T}`, 'features');
    }
    if (batch.features.length !== B * T * cfg.inputDim) {
      throw new ClipDecoderError('INPUT_INVALID', `features hold ${batch.features.length} values; B=${B} × T=${T} × C=${cfg.inputDim} expected (feature width must match the head's inputDim)`, 'features');
    }
    assertFinite(batch.features, 'features');
    let N: number;
    if (cfg.mode === 'zero-shot') {
      if (!batch.queries) throw new ClipDecoderError('INPUT_INVALID', 'a zero-shot head needs label query embeddings', 'queries');
      if (batch.queries.length % cfg.queryDim !== 0 || batch.queries.length === 0) {
        throw new ClipDecoderError('INPUT_INVALID', `queries hold ${batch.queries.length} values, not a non-empty multiple of queryDim ${cfg.queryDim}`, 'queries');
      }
      assertFinite(batch.queries, 'queries');
      N = batch.queries.length / cfg.queryDim;
    } else {
      N = cfg.numClasses;
    }
    if (batch.targets.length !== B * N) {
      throw new ClipDecoderError('INPUT_INVALID', `targets hold ${batch.targets.length} values; B=${B} × labels=${N} expected`, 'targets');
    }
    assertFinite(batch.targets, 'targets');
    if (opts.alpha > 0) {
      if (!this.clip) throw new ClipDecoderError('INPUT_INVALID', 'alpha > 0 but this head has no CLIP-loss branch (clipProjDim = 0)', 'alpha');
      if (!batch.captions || batch.captions.length !== B * cfg.captionDim) {
        throw new ClipDecoderError('INPUT_INVALID', `alpha > 0 needs caption embeddings [B=${B}, ${cfg.captionDim}]`, 'captions');
      }
      assertFinite(batch.captions, 'captions');
    }
    if (cfg.dropout > 0 && !opts.masks && !opts.rng) throw new ClipDecoderError('INPUT_INVALID', 'dropout > 0 needs an rng (or explicit masks)', 'rng');
    return N;
  }

  /**
   * One training forward + backward: returns the losses and leaves ∂loss/∂θ in every parameter's grad
   * (overwritten, not accumulated). Element-wise work is fused (nn/fused.ts) so each activation is read
   * and written as few times as possible; the matmuls go to the backend.
   */
  forwardBackward(batch: TrainBatch, opts: StepOptions): StepLosses {
    const cfg = this.config;
    const N = this.checkBatch(batch, opts);
    const { B, T } = batch;
    const { Nq, L } = this.shapeFor(N);
    const D = cfg.dModel, F = cfg.ffnDim, C = cfg.inputDim, H = cfg.heads, R = B * Nq, eps = cfg.layerNormEps;
    const be = this.be;
    if (!this.work || this.work.B !== B || this.work.T !== T || this.work.Nq !== Nq || this.work.L !== L) {
      this.work = undefined; // let the old buffers go before allocating new ones
      this.work = new TrainWork(B, T, Nq, L, cfg);
    }
    const w = this.work;
    const p = cfg.dropout;
    const dropping = p > 0;
    const s = dropping ? 1 / (1 - p) : 1;
    const mk = dropping ? opts.masks : undefined;
    const rng = opts.rng;
    if (mk) {
      checkMask(mk.drop1, R * D, 'drop1'); checkMask(mk.attn, H * R * T, 'attn'); checkMask(mk.drop2, R * D, 'drop2');
      checkMask(mk.ffn, R * F, 'ffn'); checkMask(mk.drop3, R * D, 'drop3');
    }
    // masks are drawn in layer order: drop1, attention, drop2, ffn, drop3
    const draw = (keep: Uint8Array, given: Uint8Array | undefined): Uint8Array | null => {
      if (!dropping) return null;
      if (given) keep.set(given);
      else rng!.fillKeepMask(keep, p);
      return keep;
    };

    // ---- forward ----
    // memory m = ReLU(embed(x))  [B·T, D]
    linearForward(be, w.m, batch.features, this.embedW.data, this.embedB.data, B * T, C, D, true);
    // queries tq [Nq, D]
    if (cfg.mode === 'zero-shot') linearForward(be, w.tq, batch.queries!, this.qpW!.data, this.qpB!.data, Nq, cfg.queryDim, D, true);
    else w.tq.set(this.queryEmbed!.data);
    // t1 = LN1(t + dropout1(t)), t broadcast over images  [B·Nq, D]
    const keep1 = draw(w.keep1, mk?.drop1);
    for (let b = 0; b < B; b++) {
      const o = b * Nq * D, v = (a: Float32Array) => a.subarray(o, o + Nq * D), vr = (a: Float32Array) => a.subarray(b * Nq, (b + 1) * Nq);
      addLayerNormForward(v(w.t1), v(w.u), vr(w.mean1), vr(w.rstd1), w.tq, w.tq, keep1 ? keep1.subarray(o, o + Nq * D) : null, s,
        this.n1w.data, this.n1b.data, Nq, D, eps);
    }
    // cross-attention  [B·Nq, D]
    w.attn.setDims({ B, N: Nq, T, D, H });
    crossAttentionForward(be, w.attn, w.a, w.t1, w.m, this.attnWeights(), { dropout: p, keep: mk?.attn, rng });
    // t2 = LN2(t1 + dropout2(a))
    const keep2 = draw(w.keep2, mk?.drop2);
    addLayerNormForward(w.t2, w.r2, w.mean2, w.rstd2, w.t1, w.a, keep2, s, this.n2w.data, this.n2b.data, R, D, eps);
    // feed-forward: h = dropout(ReLU(linear1(t2))) in place, f = linear2(h)
    linearForward(be, w.h, w.t2, this.l1W.data, this.l1b.data, R, D, F, true);
    if (dropping) {
      if (mk) for (let i = 0; i < R * F; i++) w.h[i] = w.h[i] * mk.ffn[i] * s;
      else rng!.dropoutInPlace(w.h, p, s);
    }
    linearForward(be, w.f, w.h, this.l2W.data, this.l2b.data, R, F, D);
    // t3 = LN3(t2 + dropout3(f))
    const keep3 = draw(w.keep3, mk?.drop3);
    addLayerNormForward(w.t3, w.r3, w.mean3, w.rstd3, w.t2, w.f, keep3, s, this.n3w.data, this.n3b.data, R, D, eps);
    // logits [B, L]
    this.fcForward(w.logits, w.t3, B, Nq, L, w.tk, w.gk);

    // ---- losses ----
    const asl = aslLoss(w.logits, batch.targets, B * L, w.dlogits, opts.beta, opts.asl ?? ASL_DEFAULTS);
    let clipLoss = 0;
    const useClip = opts.alpha > 0 && this.clip !== null;
    if (useClip) {
      meanTokensForward(w.pooled, w.m, B, T, D);
      clipLoss = this.clip!.forwardBackward(be, w.pooled, batch.captions!, B, w.dpooled, opts.alpha);
    } else if (this.clip) {
      for (const q of this.clip.params) q.grad!.fill(0);
    }

    // ---- backward ----
    const [dn3w, dn3b, dn2w, dn2b, dn1w, dn1b, dl2b] = w.accD;
    for (const acc of w.accD) acc.fill(0);
    w.accF.fill(0);
    this.fcBackward(w.dA, w.dlogits, w.t3, B, Nq, L, w.tk, w.gk, w.dC); // dA = dt3
    // LN3 → dB = dt2 (residual path), dC = df (dropout3 branch); Σ df = linear2 bias grad
    addLayerNormBackward(w.dB, w.dC, keep3, s, dl2b, dn3w, dn3b, w.dA, null, w.r3, w.mean3, w.rstd3, this.n3w.data, R, D);
    // linear2: dH = df · W2, dW2 = dfᵀ · h
    linearBackward(be, w.dH, this.l2W.grad, null, w.dC, w.h, this.l2W.data, R, F, D);
    // dropout + ReLU, Σ = linear1 bias grad
    dropoutReluBackward(w.dH, w.h, s, w.accF, R, F);
    // linear1: dA = dH · W1 (the FFN's share of dt2), dW1 = dHᵀ · t2
    linearBackward(be, w.dA, this.l1W.grad, null, w.dH, w.t2, this.l1W.data, R, D, F);
    // LN2 on dt2 = dA + dB → dB = dt1 (residual path), dC = da (dropout2 branch)
    addLayerNormBackward(w.dB, w.dC, keep2, s, null, dn2w, dn2b, w.dA, w.dB, w.r2, w.mean2, w.rstd2, this.n2w.data, R, D);
    // attention: dA = its share of dt1, dm = ∂/∂memory
    crossAttentionBackward(be, w.attn, w.dA, w.dm, this.attnGrads(), w.dC, w.t1, w.m, this.attnWeights());
    // LN1 on dt1 = dA + dB → dB = du
    addLayerNormBackward(w.dB, null, null, 1, null, dn1w, dn1b, w.dA, w.dB, w.u, w.mean1, w.rstd1, this.n1w.data, R, D);
    // queries: dtq[n] = Σ_b du[b, n] · (1 + keep1 · s), then ReLU and the query projection
    if (cfg.mode === 'zero-shot') {
      const dtq = w.dtq;
      dtq.fill(0);
      for (let b = 0; b < B; b++) {
        const o = b * Nq * D;
        if (keep1) for (let i = 0; i < Nq * D; i++) dtq[i] += w.dB[o + i] * (1 + keep1[o + i] * s);
        else for (let i = 0; i < Nq * D; i++) dtq[i] += 2 * w.dB[o + i];
      }
      reluBackward(dtq, dtq, w.tq, Nq * D);
      linearBackward(be, null, this.qpW!.grad, this.qpB!.grad, dtq, batch.queries!, this.qpW!.data, Nq, cfg.queryDim, D);
    }
    // memory: dm += CLIP-branch gradient / T (mean over tokens), then ReLU; Σ = embed bias grad
    const accE = w.accD[7];
    accE.fill(0);
    const invT = 1 / T;
    for (let b = 0; b < B; b++) {
      const dp = useClip ? w.dpooled.subarray(b * D, (b + 1) * D) : null;
      for (let t = 0; t < T; t++) {
        const o = (b * T + t) * D;
        if (dp) {
          for (let d = 0; d < D; d++) {
            const v = Number(w.m[o + d] > 0) * (w.dm[o + d] + dp[d] * invT);
            w.dm[o + d] = v;
            accE[d] += v;
          }
        } else {
          for (let d = 0; d < D; d++) {
            const v = Number(w.m[o + d] > 0) * w.dm[o + d];
            w.dm[o + d] = v;
            accE[d] += v;
          }
        }
      }
    }
    linearBackward(be, null, this.embedW.grad, null, w.dm, batch.features, this.embedW.data, B * T, C, D);
    // column sums into the parameter gradients
    copy(this.n3w.grad!, dn3w); copy(this.n3b.grad!, dn3b); copy(this.n2w.grad!, dn2w); copy(this.n2b.grad!, dn2b);
    copy(this.n1w.grad!, dn1w); copy(this.n1b.grad!, dn1b); copy(this.l2b.grad!, dl2b); copy(this.l1b.grad!, w.accF);
    copy(this.embedB.grad!, accE);

    const total = opts.beta * asl + opts.alpha * clipLoss;
    return { loss: total, asl, clip: clipLoss };
  }

  /** The logits of the last forwardBackward [B, L] (a view into the workspace). */
  get lastLogits(): Float32Array {
    if (!this.work) throw new Error('no training step has run');
    return this.work.logits;
  }

  /** The attention weights of the last forwardBackward averaged over heads [B, Nq, T]. */
  lastAttention(): Float32Array {
    if (!this.work) throw new Error('no training step has run');
    const c = this.work.attn;
    const out = new Float32Array(c.dims.B * c.dims.N * c.dims.T);
    averageHeads(out, c);
    return out;
  }

  // fc: zero-shot shared FC, closed-set group FC ---------------------------------------------------------

  private fcForward(logits: Float32Array, t3: Float32Array, B: number, Nq: number, L: number, tk: Float32Array, gk: Float32Array): void {
    const D = this.config.dModel;
    const be = this.be;
    if (this.config.mode === 'zero-shot') {
      // logits[b, n] = t3[b, n] · w + bias
      be.matmul(logits, t3, [B * Nq, D], this.fcW.data, [D, 1], { bias: this.fcB.data });
      return;
    }
    const K = Nq, g = groupSize(this.config);
    // tk [K, B, D] ← t3 [B, K, D];  gk [K, B, g] = tk · W[K, D, g]
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) tk.set(t3.subarray((b * K + k) * D, (b * K + k + 1) * D), (k * B + b) * D);
    be.matmul(gk, tk, [K, B, D], this.fcW.data, [K, D, g]);
    const bias = this.fcB.data;
    for (let b = 0; b < B; b++) for (let c = 0; c < L; c++) {
      const k = Math.floor(c / g), j = c % g;
      logits[b * L + c] = gk[(k * B + b) * g + j] + bias[c];
    }
  }

  /** scratch: [B·Nq·D] (closed-set only). */
  private fcBackward(dt3: Float32Array, dlogits: Float32Array, t3: Float32Array, B: number, Nq: number, L: number, tk: Float32Array, gk: Float32Array, scratch: Float32Array): void {
    const D = this.config.dModel;
    const be = this.be;
    if (this.config.mode === 'zero-shot') {
      const w = this.fcW.data;
      for (let r = 0; r < B * Nq; r++) {
        const gr = dlogits[r], o = r * D;
        for (let d = 0; d < D; d++) dt3[o + d] = gr * w[d];
      }
      be.matmul(this.fcW.grad!, t3, [B * Nq, D], dlogits, [B * Nq, 1], { transA: true });
      let sb = 0;
      for (let r = 0; r < B * Nq; r++) sb += dlogits[r];
      this.fcB.grad![0] = sb;
      return;
    }
    const K = Nq, g = groupSize(this.config);
    // dgk [K, B, g] (slots c ≥ L get zero), reuse gk
    gk.fill(0);
    const db = this.fcB.grad!;
    db.fill(0);
    for (let b = 0; b < B; b++) for (let c = 0; c < L; c++) {
      const k = Math.floor(c / g), j = c % g;
      const v = dlogits[b * L + c];
      gk[(k * B + b) * g + j] = v;
      db[c] += v;
    }
    // dW [K, D, g] = tkᵀ · dgk ;  dtk [K, B, D] = dgk · Wᵀ → dt3 [B, K, D]
    be.matmul(this.fcW.grad!, tk, [K, B, D], gk, [K, B, g], { transA: true });
    const dtk = scratch;
    be.matmul(dtk, gk, [K, B, g], this.fcW.data, [K, D, g], { transB: true });
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) dt3.set(dtk.subarray((k * B + b) * D, (k * B + b + 1) * D), (b * K + k) * D);
  }

  // ---------------------------------------------------------------------------------------------------------
  // inference

  /**
   * Computes everything image-independent for a label set: queries (zero-shot: ReLU(Linear(text embeds))),
   * LN1(2·t) (dropout is off at inference) and the attention Q projection of each label.
   * Zero-shot: `queries` are the labels' text embeddings [N, E]. Closed-set: labels must be the trained ones.
   */
  prepareLabels(labels: readonly string[], queries?: Float32Array): PreparedLabels {
    const cfg = this.config;
    const D = cfg.dModel, H = cfg.heads;
    if (labels.length === 0) throw new ClipDecoderError('INPUT_INVALID', 'the label list is empty; give at least one label', 'labels');
    let tq: Float32Array, Nq: number, L: number;
    if (cfg.mode === 'zero-shot') {
      if (!queries) throw new ClipDecoderError('INPUT_INVALID', 'a zero-shot head needs the labels\' text embeddings', 'queries');
      if (queries.length !== labels.length * cfg.queryDim) {
        throw new ClipDecoderError('INPUT_INVALID', `label embeddings hold ${queries.length} values; ${labels.length} labels × ${cfg.queryDim} expected (embedding width must match the head's queryDim)`, 'queries');
      }
      assertFinite(queries, 'label embeddings');
      Nq = L = labels.length;
      tq = new Float32Array(Nq * D);
      linearForward(this.be, tq, queries, this.qpW!.data, this.qpB!.data, Nq, cfg.queryDim, D, true);
    } else {
      if (labels.length !== cfg.numClasses) {
        throw new ClipDecoderError('INPUT_INVALID', `this closed-set head scores exactly its ${cfg.numClasses} trained labels; got ${labels.length}`, 'labels');
      }
      if (this.trainedLabels) {
        const i = labels.findIndex((l, k) => l !== this.trainedLabels![k]);
        if (i >= 0) throw new ClipDecoderError('INPUT_INVALID', `label ${i} is '${labels[i]}' but the head was trained with '${this.trainedLabels[i]}' there; closed-set heads need the trained label list in order`, labels[i]);
      }
      Nq = cfg.numGroups;
      L = cfg.numClasses;
      tq = Float32Array.from(this.queryEmbed!.data);
    }
    for (let i = 0; i < tq.length; i++) tq[i] *= 2; // t + dropout(t) with dropout off
    const t1 = new Float32Array(Nq * D);
    layerNormForward(t1, new Float32Array(Nq), new Float32Array(Nq), tq, this.n1w.data, this.n1b.data, Nq, D, cfg.layerNormEps);
    const qh = new Float32Array(Nq * D);
    attnProjectQueries(this.be, qh, t1, this.attnWeights(), Nq, D, H);
    return { labels: [...labels], Nq, L, t1, qh, version: this.version };
  }

  /** Logits [B, L] (and optionally head-averaged attention maps) for image tokens [B, T, C]. */
  predict(features: Float32Array, B: number, T: number, prepared: PreparedLabels, opts: PredictOptions = {}): Prediction {
    const cfg = this.config;
    const D = cfg.dModel, C = cfg.inputDim, H = cfg.heads, F = cfg.ffnDim, hd = D / H;
    if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) {
      throw new ClipDecoderError('INPUT_INVALID', `predict needs positive integer B and T, got B=${B}, T=${T}`, 'features');
    }
    if (features.length !== B * T * C) {
      throw new ClipDecoderError('INPUT_INVALID', `features hold ${features.length} values; B=${B} × T=${T} × C=${C} expected (the head was trained on ${C}-wide tokens)`, 'features');
    }
    assertFinite(features, 'features');
    if (prepared.version !== this.version) {
      throw new ClipDecoderError('INPUT_INVALID', 'the prepared label set was computed from older weights; call prepareLabels again', 'labels');
    }
    const { Nq, L } = prepared;
    const closed = cfg.mode === 'closed-set';
    const maxRows = Math.max(1, opts.maxRows ?? 4096);
    const chunk = closed ? Nq : Math.max(1, Math.min(Nq, Math.floor(maxRows / B)));
    if (!this.infer || this.infer.B !== B || this.infer.T !== T || this.infer.chunk !== chunk) {
      this.infer = undefined;
      this.infer = new InferWork(B, T, chunk, cfg);
    }
    const w = this.infer;
    const be = this.be;
    const logits = new Float32Array(B * L);
    const attention = opts.attention ? new Float32Array(B * Nq * T) : undefined;
    // memory and its K/V, once per batch
    linearForward(be, w.m, features, this.embedW.data, this.embedB.data, B * T, C, D, true);
    w.attn.setDims({ B, N: chunk, T, D, H });
    attnProjectMemory(be, w.attn, w.m, this.attnWeights());
    for (let n0 = 0; n0 < Nq; n0 += chunk) {
      const nc = Math.min(chunk, Nq - n0), R = B * nc;
      w.attn.setDims({ B, N: nc, T, D, H });
      // this chunk's queries per head [H, nc, hd]
      for (let h = 0; h < H; h++) w.attn.qh.set(prepared.qh.subarray((h * Nq + n0) * hd, (h * Nq + n0 + nc) * hd), h * nc * hd);
      attnForward(be, w.attn, w.a, this.attnWeights(), { dropout: 0, sharedQueries: true });
      // t2 = LN2(t1 + a), t1 broadcast over images
      const t1 = prepared.t1.subarray(n0 * D, (n0 + nc) * D);
      for (let b = 0; b < B; b++) {
        const o = b * nc * D, v = (a: Float32Array) => a.subarray(o, o + nc * D), vr = (a: Float32Array) => a.subarray(b * nc, (b + 1) * nc);
        addLayerNormForward(v(w.t2), v(w.a), vr(w.mean), vr(w.rstd), t1, v(w.a), null, 1, this.n2w.data, this.n2b.data, nc, D, cfg.layerNormEps);
      }
      // t3 = LN3(t2 + linear2(ReLU(linear1(t2))))
      linearForward(be, w.h, w.t2, this.l1W.data, this.l1b.data, R, D, F, true);
      linearForward(be, w.t3, w.h, this.l2W.data, this.l2b.data, R, F, D);
      addLayerNormForward(w.t3, w.t3, w.mean, w.rstd, w.t2, w.t3, null, 1, this.n3w.data, this.n3b.data, R, D, cfg.layerNormEps);
      if (closed) {
        this.fcForward(logits, w.t3, B, Nq, L, w.tk, w.gk);
      } else {
        be.matmul(w.logits, w.t3, [R, D], this.fcW.data, [D, 1], { bias: this.fcB.data });
        for (let b = 0; b < B; b++) logits.set(w.logits.subarray(b * nc, (b + 1) * nc), b * L + n0);
      }
      if (attention) {
        averageHeads(w.avg, w.attn);
        for (let b = 0; b < B; b++) attention.set(w.avg.subarray(b * nc * T, (b + 1) * nc * T), (b * Nq + n0) * T);
      }
    }
    return attention ? { logits, attention } : { logits };
  }

  /** Drops cached workspaces (frees memory between phases). */
  releaseBuffers(): void {
    this.work = undefined;
    this.infer = undefined;
  }
}

function checkMask(m: Uint8Array, n: number, name: string): void {
  if (m.length !== n) throw new ClipDecoderError('INPUT_INVALID', `dropout mask ${name} holds ${m.length} values, ${n} expected`, name);
}

function copy(dst: Float32Array, src: Float64Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = src[i];
}
