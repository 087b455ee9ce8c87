// The ML-Decoder / CLIP-Decoder head (docs/method.md §1–2) in one file: parameters, the training
// step as a forward and a backward that mirror each other (llm.c style: one line per layer, shapes spelled out;
// read them against the shape table of docs/engine.md), the decoder layer that training and predict share, and
// inference with a prepared label set.
// Shapes: B images, T tokens of width C, N labels with E-wide text embeddings, decoder width D, H heads
// (hd = D/H), FFN width F; Nq query rows per image (N zero-shot, K groups closed-set), L logits per image
// (N zero-shot, numClasses closed-set), g = ceil(L/K) classes per group; R = B·Nq rows.
import { ClipDecoderError } from '../errors.ts';
import type { MatmulBackend } from '../nn/matmul.ts';
import { makeParam, ParamSet, type Param } from '../nn/param.ts';
import type { Rng } from '../nn/rng.ts';
import { linearBackward, linearForward } from '../nn/linear.ts';
import { reluBackward } from '../nn/activations.ts';
import { layerNormForward } from '../nn/layernorm.ts';
import { addLayerNormBackward, addLayerNormForward, dropoutReluBackward } from '../nn/fused.ts';
import {
  AttnCache,
  attnBackward,
  attnForward,
  attnProjectMemory,
  attnProjectMemoryBackward,
  attnProjectQueries,
  attnProjectQueriesBackward,
  averageHeads,
  type AttnForwardOptions,
  type AttnWeights,
} from '../nn/attention.ts';
import { meanTokensForward } from '../nn/pool.ts';
import { linearDefault, normal, xavierNormal, xavierUniform } from '../nn/init.ts';
import { assertFinite } from '../nn/tensor.ts';
import { ClipContrastive } from './clip-loss.ts';
import { aslLoss, ASL_DEFAULTS, type AslOptions } from './losses.ts';
import { groupSize, validateHeadConfig, type HeadConfig } from './config.ts';

/** Dropout keep masks of one training step (1 = kept), in the engine's layouts: replays PyTorch's masks in the tests. */
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
  /**
   * Added to the head's logits before the ASL [B, L] (a residual head: CLIP's own scaled logit, so the head
   * learns a correction to it). Constant: no gradient flows into it.
   */
  logitOffset?: Float32Array;
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
  /**
   * Data-parallel training (train/parallel.ts): the CLIP loss is computed elsewhere over the whole batch.
   * The step hands over its pooled image features and later receives their gradient instead of computing
   * the InfoNCE itself; captions are then not needed here and the CLIP branch's gradients are left at zero.
   */
  clipExchange?: ClipExchange;
}

/** How a data-parallel step exchanges the CLIP loss's image side with the thread that computes it. */
export interface ClipExchange {
  /** Called once the forward has this step's pooled image features [B, D] (read them before returning). */
  send(pooled: Float32Array): void;
  /** Fills dPooled [B, D] with α·∂clip/∂pooled and returns the CLIP loss, just before the backward needs it. */
  receive(dPooled: Float32Array): number;
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

/** A PyTorch module's weight and bias (nn.Linear: [out, in] and [out]; nn.LayerNorm: [D] and [D]). */
interface WeightBias {
  readonly weight: Param;
  readonly bias: Param;
}

/** nn.MultiheadAttention's packed in-projection [3D, D], [3D] and its out-projection [D, D], [D]. */
interface MhaParams {
  readonly inProjWeight: Param;
  readonly inProjBias: Param;
  readonly outProjWeight: Param;
  readonly outProjBias: Param;
}

/**
 * What one post-norm residual block `out = LN(x + dropout(y))` keeps for its backward: r = x + dropout(y), the
 * row statistics, the keep mask of y; and float64 column sums of its LayerNorm weight and bias gradients.
 */
class NormCache {
  readonly mean: Float32Array; // [R]
  readonly rstd: Float32Array; // [R]
  readonly keep: Uint8Array; // [R, D]  (training only)
  readonly dWeight: Float64Array; // [D]    (training only)
  readonly dBias: Float64Array; // [D]      (training only)
  constructor(
    readonly r: Float32Array,
    R: number,
    D: number,
    training: boolean,
  ) {
    this.mean = new Float32Array(R);
    this.rstd = new Float32Array(R);
    this.keep = new Uint8Array(training ? R * D : 0);
    this.dWeight = new Float64Array(training ? D : 0);
    this.dBias = new Float64Array(training ? D : 0);
  }
}

/**
 * Activations and gradients for B images × Nq query rows over T tokens, allocated once per shape and reused.
 * Training keeps every activation for the backward; predict (training = false) runs the forward half only:
 * no gradients, and each block's saved residual input r aliases a buffer it overwrites (a, t3).
 */
class Workspace {
  readonly L: number; // logits per image
  // forward activations
  readonly m: Float32Array; // [B·T, D]   memory ReLU(embed(x))
  readonly pooled: Float32Array; // [B, D]  mean_T(m): the CLIP loss's image side
  readonly tq: Float32Array; // [Nq, D]   queries ReLU(query_proj(q)), or query_embed
  readonly ln1: NormCache; // r = tq + dropout1(tq) per image  [B·Nq, D]
  readonly t1: Float32Array; // [B·Nq, D] LN1 output: the attention's queries and the first residual
  readonly attn: AttnCache; // q, k, v by head, softmax weights, head outputs (and the attention's own scratch)
  readonly a: Float32Array; // [B·Nq, D]  attention output
  readonly ln2: NormCache; // r = t1 + dropout2(a)
  readonly t2: Float32Array; // [B·Nq, D]
  readonly h: Float32Array; // [B·Nq, F]  dropout(ReLU(linear1(t2))): > 0 exactly where the backward passes
  readonly f: Float32Array; // [B·Nq, D]  linear2(h)
  readonly ln3: NormCache; // r = t2 + dropout3(f)
  readonly t3: Float32Array; // [B·Nq, D]
  readonly tk: Float32Array; // [K, B, D]  closed-set: t3 by group
  readonly gk: Float32Array; // [K, B, g]  closed-set: group products
  readonly logits: Float32Array; // [B, L]
  readonly attnAvg: Float32Array; // [B·Nq, T]  predict: attention weights averaged over heads
  // gradients, each named after its activation (training only)
  readonly dLogits: Float32Array; // [B, L]
  readonly dGk: Float32Array; // [K, B, g]  closed-set
  readonly dTk: Float32Array; // [K, B, D]  closed-set
  readonly dT3: Float32Array; // [B·Nq, D]
  readonly dT2: Float32Array; // [B·Nq, D]  t2's gradient through LN3's residual path
  readonly dF: Float32Array; // [B·Nq, D]
  readonly dH: Float32Array; // [B·Nq, F]  then, in place, of linear1's output
  readonly dT2Ffn: Float32Array; // [B·Nq, D]  t2's gradient through the FFN
  readonly dT1: Float32Array; // [B·Nq, D]  t1's gradient through LN2's residual path
  readonly dA: Float32Array; // [B·Nq, D]
  readonly dT1Attn: Float32Array; // [B·Nq, D]  t1's gradient through the attention's query projection
  readonly dR1: Float32Array; // [B·Nq, D]  of LN1's input tq + dropout1(tq)
  readonly dTq: Float32Array; // [Nq, D]   then, in place, of query_proj's output
  readonly dM: Float32Array; // [B·T, D]   memory (from K and V, + the CLIP branch's), then of embed's output
  readonly dPooled: Float32Array; // [B, D]
  readonly dLinear1Bias: Float64Array; // [F]  column sums
  readonly dLinear2Bias: Float64Array; // [D]
  readonly dEmbedBias: Float64Array; // [D]

  constructor(
    readonly B: number,
    readonly T: number,
    readonly Nq: number,
    cfg: HeadConfig,
    readonly training: boolean,
  ) {
    const D = cfg.dModel,
      F = cfg.ffnDim,
      R = B * Nq,
      closed = cfg.mode === 'closed-set';
    const g = closed ? groupSize(cfg) : 0;
    this.L = closed ? cfg.numClasses : Nq;
    const f = (n: number) => new Float32Array(n);
    const fwd = (n: number) => f(training ? n : 0); // kept for the backward only
    const grad = fwd,
      sum = (n: number) => new Float64Array(training ? n : 0);
    this.m = f(B * T * D);
    this.pooled = fwd(B * D);
    this.tq = fwd(Nq * D);
    this.ln1 = new NormCache(fwd(R * D), training ? R : 0, D, training);
    this.t1 = fwd(R * D);
    this.attn = new AttnCache({ B, N: Nq, T, D, H: cfg.heads }, this.m);
    this.a = f(R * D);
    this.ln2 = new NormCache(training ? f(R * D) : this.a, R, D, training);
    this.t2 = f(R * D);
    this.h = f(R * F);
    this.t3 = f(R * D);
    this.f = training ? f(R * D) : this.t3;
    this.ln3 = new NormCache(training ? f(R * D) : this.t3, R, D, training);
    this.tk = f(closed ? R * D : 0);
    this.gk = f(closed ? R * g : 0);
    this.logits = f(B * this.L);
    this.attnAvg = f(training ? 0 : R * T);
    this.dLogits = grad(B * this.L);
    this.dGk = grad(closed ? R * g : 0);
    this.dTk = grad(closed ? R * D : 0);
    this.dT3 = grad(R * D);
    this.dT2 = grad(R * D);
    this.dF = grad(R * D);
    this.dH = grad(R * F);
    this.dT2Ffn = grad(R * D);
    this.dT1 = grad(R * D);
    this.dA = grad(R * D);
    this.dT1Attn = grad(R * D);
    this.dR1 = grad(R * D);
    this.dTq = grad(Nq * D);
    this.dM = grad(B * T * D);
    this.dPooled = grad(B * D);
    this.dLinear1Bias = sum(F);
    this.dLinear2Bias = sum(D);
    this.dEmbedBias = sum(D);
  }

  private offset?: Float32Array;
  /** logits + logitOffset [B, L] (a residual head's loss input), allocated on first use. */
  offsetLogits(): Float32Array {
    this.offset ??= new Float32Array(this.B * this.L);
    return this.offset;
  }

  fits(B: number, T: number, Nq: number, training: boolean): boolean {
    return this.B === B && this.T === T && this.Nq === Nq && this.training === training;
  }
}

/**
 * Where one step's dropout masks come from: replayed (`masks`) or drawn from `rng` in layer order (drop1,
 * attention, drop2, ffn, drop3: the order the forward meets them). p = 0: no dropout at all.
 */
class Dropout {
  readonly scale: number;
  private readonly masks?: DropoutMasks;
  constructor(
    readonly p: number,
    private readonly rng?: Rng,
    masks?: DropoutMasks,
  ) {
    this.scale = p > 0 ? 1 / (1 - p) : 1;
    this.masks = p > 0 ? masks : undefined;
  }

  static readonly none = new Dropout(0);

  /** keep filled with the replayed or a freshly drawn mask; null without dropout. */
  mask(keep: Uint8Array, name: 'drop1' | 'drop2' | 'drop3'): Uint8Array | null {
    if (this.p <= 0) return null;
    const given = this.masks?.[name];
    if (given) keep.set(given);
    else this.rng!.fillKeepMask(keep, this.p);
    return keep;
  }

  get attention(): AttnForwardOptions {
    return { dropout: this.p, keep: this.masks?.attn, rng: this.rng };
  }

  /** The FFN's dropout, in place on h[n] (its backward recovers the mask from h, so none is stored). */
  ffnInPlace(h: Float32Array, n: number): void {
    if (this.p <= 0) return;
    const s = this.scale;
    if (this.masks) for (let i = 0; i < n; i++) h[i] = h[i] * this.masks.ffn[i] * s;
    else this.rng!.dropoutInPlace(h, this.p, s);
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
  private work?: Workspace; // training
  private infer?: Workspace; // predict

  // parameters, as the PyTorch modules (official names in docs/engine.md)
  readonly embed: WeightBias; // [D, C], [D]  embed_standart
  readonly queryProj: WeightBias | null; // [D, E], [D]  wordvec_proj (zero-shot)
  readonly queryEmbed: Param | null; // [K, D] fixed N(0, 1) queries (closed-set)
  readonly norm1: WeightBias; // [D], [D]
  readonly attn: MhaParams; // [3D, D], [3D], [D, D], [D]
  readonly norm2: WeightBias;
  readonly linear1: WeightBias; // [F, D], [F]
  readonly linear2: WeightBias; // [D, F], [D]
  readonly norm3: WeightBias;
  readonly fc: WeightBias; // [D, 1] | [K, D, g], [1] | [L]  duplicate_pooling, duplicate_pooling_bias

  /** A head with zeroed parameters; call init(rng) or load weights. */
  constructor(config: HeadConfig, backend: MatmulBackend) {
    validateHeadConfig(config);
    this.config = { ...config };
    this.be = backend;
    const { inputDim: C, queryDim: E, dModel: D, ffnDim: F } = config;
    const ps = this.params;
    const add = (name: string, shape: number[], trainable = true) => ps.add(makeParam(name, shape, trainable));
    const module = (name: string, wShape: number[], bShape: number[]): WeightBias => ({
      weight: add(`${name}.weight`, wShape),
      bias: add(`${name}.bias`, bShape),
    });
    this.embed = module('embed', [D, C], [D]);
    this.queryProj = config.mode === 'zero-shot' ? module('query_proj', [D, E], [D]) : null;
    this.queryEmbed = config.mode === 'closed-set' ? add('query_embed', [config.numGroups, D], false) : null;
    this.norm1 = module('norm1', [D], [D]);
    this.attn = {
      inProjWeight: add('attn.in_proj_weight', [3 * D, D]),
      inProjBias: add('attn.in_proj_bias', [3 * D]),
      outProjWeight: add('attn.out_proj.weight', [D, D]),
      outProjBias: add('attn.out_proj.bias', [D]),
    };
    this.norm2 = module('norm2', [D], [D]);
    this.linear1 = module('linear1', [F, D], [F]);
    this.linear2 = module('linear2', [D, F], [D]);
    this.norm3 = module('norm3', [D], [D]);
    this.fc =
      config.mode === 'zero-shot' ? module('fc', [D, 1], [1]) : module('fc', [config.numGroups, D, groupSize(config)], [config.numClasses]);
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
    const { embed, queryProj, attn, linear1, linear2, fc } = this;
    linearDefault(embed.weight.data, embed.bias.data, embed.weight.shape, rng);
    if (queryProj) linearDefault(queryProj.weight.data, queryProj.bias.data, queryProj.weight.shape, rng);
    if (this.queryEmbed) normal(this.queryEmbed.data, rng);
    xavierUniform(attn.inProjWeight.data, attn.inProjWeight.shape, rng);
    attn.inProjBias.data.fill(0);
    linearDefault(attn.outProjWeight.data, null, attn.outProjWeight.shape, rng);
    attn.outProjBias.data.fill(0);
    linearDefault(linear1.weight.data, linear1.bias.data, linear1.weight.shape, rng);
    linearDefault(linear2.weight.data, linear2.bias.data, linear2.weight.shape, rng);
    for (const n of [this.norm1, this.norm2, this.norm3]) {
      n.weight.data.fill(1);
      n.bias.data.fill(0);
    }
    xavierNormal(fc.weight.data, fc.weight.shape, rng);
    if (this.config.zeroOutput) fc.weight.data.fill(0); // drawn anyway: the other parameters stay the same
    fc.bias.data.fill(0);
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
    const a = this.attn;
    return { inW: a.inProjWeight.data, inB: a.inProjBias.data, outW: a.outProjWeight.data, outB: a.outProjBias.data };
  }

  private attnGrads(): AttnWeights {
    const a = this.attn;
    return { inW: a.inProjWeight.grad!, inB: a.inProjBias.grad!, outW: a.outProjWeight.grad!, outB: a.outProjBias.grad! };
  }

  private workspace(B: number, T: number, Nq: number, training: boolean): Workspace {
    const old = training ? this.work : this.infer;
    if (old?.fits(B, T, Nq, training)) return old;
    // let the old buffers go before allocating new ones
    if (training) this.work = undefined;
    else this.infer = undefined;
    const ws = new Workspace(B, T, Nq, this.config, training);
    if (training) this.work = ws;
    else this.infer = ws;
    return ws;
  }

  // ---------------------------------------------------------------------------------------------------------
  // training

  /** Checks a training batch and returns N (labels in the batch); forwardBackward calls it, and so does the data-parallel trainer before splitting a batch. */
  checkBatch(batch: TrainBatch, opts: StepOptions): number {
    const cfg = this.config;
    const { B, T } = batch;
    if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) {
      throw new ClipDecoderError('INPUT_INVALID', `batch needs positive integer B and T, got B=${B}, T=${T}`, 'features');
    }
    if (batch.features.length !== B * T * cfg.inputDim) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        `features hold ${batch.features.length} values; B=${B} × T=${T} × C=${cfg.inputDim} expected (feature width must match the head's inputDim)`,
        'features',
      );
    }
    assertFinite(batch.features, 'features');
    let N: number;
    if (cfg.mode === 'zero-shot') {
      if (!batch.queries) throw new ClipDecoderError('INPUT_INVALID', 'a zero-shot head needs label query embeddings', 'queries');
      if (batch.queries.length % cfg.queryDim !== 0 || batch.queries.length === 0) {
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `queries hold ${batch.queries.length} values, not a non-empty multiple of queryDim ${cfg.queryDim}`,
          'queries',
        );
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
    if (batch.logitOffset) {
      if (batch.logitOffset.length !== B * N)
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `logitOffset holds ${batch.logitOffset.length} values; B=${B} × labels=${N} expected`,
          'logitOffset',
        );
      assertFinite(batch.logitOffset, 'logitOffset');
    }
    if (opts.alpha > 0) {
      if (!this.clip)
        throw new ClipDecoderError('INPUT_INVALID', 'alpha > 0 but this head has no CLIP-loss branch (clipProjDim = 0)', 'alpha');
      // data-parallel (clipExchange): the captions are with the thread that computes the CLIP loss
      if (!opts.clipExchange) {
        if (!batch.captions || batch.captions.length !== B * cfg.captionDim) {
          throw new ClipDecoderError('INPUT_INVALID', `alpha > 0 needs caption embeddings [B=${B}, ${cfg.captionDim}]`, 'captions');
        }
        assertFinite(batch.captions, 'captions');
      }
    }
    if (cfg.dropout > 0 && !opts.masks && !opts.rng)
      throw new ClipDecoderError('INPUT_INVALID', 'dropout > 0 needs an rng (or explicit masks)', 'rng');
    return N;
  }

  /**
   * One training step: forward, both losses, backward. Returns the losses and leaves ∂loss/∂θ in every
   * parameter's grad (overwritten, not accumulated, so no zeroing pass is needed).
   */
  forwardBackward(batch: TrainBatch, opts: StepOptions): StepLosses {
    const N = this.checkBatch(batch, opts);
    const ws = this.workspace(batch.B, batch.T, this.shapeFor(N).Nq, true);
    const drop = new Dropout(this.config.dropout, opts.rng, opts.masks);
    if (drop.p > 0 && opts.masks) checkMasks(opts.masks, ws, this.config);
    const useClip = opts.alpha > 0 && this.clip !== null;
    this.forward(ws, batch, drop);
    const losses = this.losses(ws, batch, opts, useClip);
    const clip = this.backward(ws, batch, drop, useClip, opts.clipExchange);
    if (clip !== null) {
      losses.clip = clip;
      losses.loss = opts.beta * losses.asl + opts.alpha * clip;
    }
    return losses;
  }

  /**
   * The training forward, every activation kept in ws for the backward. Element-wise work is fused
   * (nn/fused.ts) so each activation is read and written as few times as possible; the matmuls go to the backend.
   */
  private forward(ws: Workspace, batch: TrainBatch, drop: Dropout): void {
    const { B, T, Nq } = ws,
      R = B * Nq;
    const { inputDim: C, queryDim: E, dModel: D, heads: H } = this.config;
    const { be, embed, queryProj } = this;
    // m = ReLU(x W_eᵀ + b_e)                                 [B·T, C] → [B·T, D]
    linearForward(be, ws.m, batch.features, embed.weight.data, embed.bias.data, B * T, C, D, true);
    // tq = ReLU(q W_qᵀ + b_q), or the fixed query_embed      [N, E] → [Nq, D]
    if (queryProj) linearForward(be, ws.tq, batch.queries!, queryProj.weight.data, queryProj.bias.data, Nq, E, D, true);
    else ws.tq.set(this.queryEmbed!.data);
    // t1 = LN1(tq + dropout1(tq)), tq broadcast over images  [Nq, D] → [B·Nq, D]
    this.norm1Forward(ws, drop.mask(ws.ln1.keep, 'drop1'), drop.scale);
    // q = t1 W_qᵀ + b_q by head                              [B·Nq, D] → [H, B·Nq, hd]
    ws.attn.setDims({ B, N: Nq, T, D, H });
    attnProjectQueries(be, ws.attn.qh, ws.t1, this.attnWeights(), R, D, H);
    // k, v = m W_kᵀ + b_k, m W_vᵀ + b_v by head              [B·T, D] → [2H, B·T, hd]
    attnProjectMemory(be, ws.attn, ws.m, this.attnWeights());
    // t3 = decoder layer (attention, LN2, FFN, LN3)          [B·Nq, D]
    this.decoderLayerForward(ws, ws.t1, R, drop);
    // logits = t3 · w + bias (closed-set: group FC)          [B·Nq, D] → [B, L]
    this.fcForward(ws, B, Nq);
  }

  /** ASL on the logits (writes dLogits = β·∂ASL) and the CLIP loss with its backward (writes dPooled). */
  private losses(ws: Workspace, batch: TrainBatch, opts: StepOptions, useClip: boolean): StepLosses {
    const { B, T, L } = ws;
    // asl = ASL(logits + offset, y)                          [B, L] → dLogits [B, L]
    const z = batch.logitOffset ? addInto(ws.offsetLogits(), ws.logits, batch.logitOffset) : ws.logits;
    const asl = aslLoss(z, batch.targets, B * L, ws.dLogits, opts.beta, opts.asl ?? ASL_DEFAULTS);
    let clip = 0;
    if (useClip && opts.clipExchange) {
      // pooled = mean_T(m), handed to the thread that computes the InfoNCE over the whole batch  [B, D]
      meanTokensForward(ws.pooled, ws.m, B, T, this.config.dModel);
      opts.clipExchange.send(ws.pooled);
      for (const q of this.clip!.params) q.grad!.fill(0);
    } else if (useClip) {
      // pooled = mean_T(m)                                   [B·T, D] → [B, D]
      meanTokensForward(ws.pooled, ws.m, B, T, this.config.dModel);
      // clip = InfoNCE(norm(W_i pooled), norm(W_j c))        [B, D], [B, E] → dPooled [B, D]
      clip = this.clip!.forwardBackward(this.be, ws.pooled, batch.captions!, B, ws.dPooled, opts.alpha);
    } else if (this.clip) {
      for (const q of this.clip.params) q.grad!.fill(0);
    }
    return { loss: opts.beta * asl + opts.alpha * clip, asl, clip };
  }

  /** The training backward: the forward in reverse, line by line. Returns the exchanged CLIP loss, if any. */
  private backward(ws: Workspace, batch: TrainBatch, drop: Dropout, useClip: boolean, exchange?: ClipExchange): number | null {
    const { B, T, Nq } = ws;
    const { inputDim: C, queryDim: E, dModel: D } = this.config;
    const { be, embed, queryProj } = this;
    // dT3 and the fc's gradients                             [B, L] → [B·Nq, D]
    this.fcBackward(ws, B, Nq);
    // dT1 (residual), dA, and the attention core's dq, dk, dv  [B·Nq, D] → [B·Nq, D], [H, B·Nq, hd], [2H, B·T, hd]
    this.decoderLayerBackward(ws, drop);
    // dM from dk, dv                                         [2H, B·T, hd] → [B·T, D]
    attnProjectMemoryBackward(be, ws.attn, ws.dM, this.attnGrads(), ws.m, this.attnWeights());
    // dT1Attn from dq                                        [H, B·Nq, hd] → [B·Nq, D]
    attnProjectQueriesBackward(be, ws.attn, ws.dT1Attn, this.attnGrads(), ws.t1, this.attnWeights());
    // dTq = Σ_b LN1'(dT1 + dT1Attn) · (1 + keep1·s)          [B·Nq, D] → [Nq, D]
    this.norm1Backward(ws, drop.p > 0 ? ws.ln1.keep : null, drop.scale);
    // dTq through ReLU; query_proj's gradients               [Nq, D] → dW_q [D, E], db_q [D]
    if (queryProj) {
      reluBackward(ws.dTq, ws.dTq, ws.tq, Nq * D);
      linearBackward(be, null, queryProj.weight.grad, queryProj.bias.grad, ws.dTq, batch.queries!, queryProj.weight.data, Nq, E, D);
    }
    // data-parallel: dPooled from the thread that computed the CLIP loss over the whole batch  [B, D]
    const clip = useClip && exchange ? exchange.receive(ws.dPooled) : null;
    // dM += dPooled / T, through ReLU; Σ = db_e              [B, D] → [B·T, D]
    this.memoryReluBackward(ws, useClip ? ws.dPooled : null);
    // embed's weight gradient                                [B·T, D] → dW_e [D, C]
    linearBackward(be, null, embed.weight.grad, null, ws.dM, batch.features, embed.weight.data, B * T, C, D);
    copyInto(embed.bias.grad!, ws.dEmbedBias);
    return clip;
  }

  /**
   * The decoder layer after the attention's projections (self-attention removed, post-norm), shared by
   * training and predict: attention, LN2, FFN, LN3 into ws.t3. t1 holds t1Rows rows, broadcast over the R rows
   * when fewer (predict: the label set's t1, shared by every image).
   */
  private decoderLayerForward(ws: Workspace, t1: Float32Array, t1Rows: number, drop: Dropout): void {
    const R = ws.attn.dims.B * ws.attn.dims.N;
    const { dModel: D, ffnDim: F } = this.config;
    const { be, linear1, linear2 } = this;
    // a = softmax(q kᵀ / √hd) v W_oᵀ + b_o                   [B·Nq, D]  (predict: q [H, Nq, hd] shared by images)
    attnForward(be, ws.attn, ws.a, this.attnWeights(), { ...drop.attention, sharedQueries: !ws.training });
    // t2 = LN2(t1 + dropout2(a))                             [B·Nq, D]
    this.addNormForward(this.norm2, ws.ln2, ws.t2, t1, t1Rows, ws.a, drop.mask(ws.ln2.keep, 'drop2'), drop.scale, R);
    // h = dropout(ReLU(t2 W1ᵀ + b1))                         [B·Nq, D] → [B·Nq, F]
    linearForward(be, ws.h, ws.t2, linear1.weight.data, linear1.bias.data, R, D, F, true);
    drop.ffnInPlace(ws.h, R * F);
    // f = h W2ᵀ + b2                                         [B·Nq, F] → [B·Nq, D]
    linearForward(be, ws.f, ws.h, linear2.weight.data, linear2.bias.data, R, F, D);
    // t3 = LN3(t2 + dropout3(f))                             [B·Nq, D]
    this.addNormForward(this.norm3, ws.ln3, ws.t3, ws.t2, R, ws.f, drop.mask(ws.ln3.keep, 'drop3'), drop.scale, R);
  }

  /** Backward of decoderLayerForward (training: per-image t1): dT3 → dT1 (residual path), dA, the attention's dq, dk, dv. */
  private decoderLayerBackward(ws: Workspace, drop: Dropout): void {
    const { B, Nq } = ws,
      R = B * Nq;
    const { dModel: D, ffnDim: F } = this.config;
    const { be, linear1, linear2 } = this;
    const s = drop.scale,
      dropping = drop.p > 0;
    // LN3: dT2 (residual), dF = keep3·s·(…); Σ dF = db2      [B·Nq, D] → [B·Nq, D], [B·Nq, D]
    this.addNormBackward(this.norm3, ws.ln3, ws.dT2, ws.dF, ws.dT3, null, dropping, s, ws.dLinear2Bias, R);
    // dH = dF W2, dW2 = dFᵀ h                                [B·Nq, D] → [B·Nq, F]
    linearBackward(be, ws.dH, linear2.weight.grad, null, ws.dF, ws.h, linear2.weight.data, R, F, D);
    copyInto(linear2.bias.grad!, ws.dLinear2Bias);
    // dH through dropout and ReLU, in place; Σ = db1         [B·Nq, F]
    ws.dLinear1Bias.fill(0);
    dropoutReluBackward(ws.dH, ws.h, s, ws.dLinear1Bias, R, F);
    copyInto(linear1.bias.grad!, ws.dLinear1Bias);
    // dT2Ffn = dH W1, dW1 = dHᵀ t2                           [B·Nq, F] → [B·Nq, D]
    linearBackward(be, ws.dT2Ffn, linear1.weight.grad, null, ws.dH, ws.t2, linear1.weight.data, R, D, F);
    // LN2 on dT2Ffn + dT2: dT1 (residual), dA = keep2·s·(…)  [B·Nq, D] → [B·Nq, D], [B·Nq, D]
    this.addNormBackward(this.norm2, ws.ln2, ws.dT1, ws.dA, ws.dT2Ffn, ws.dT2, dropping, s, null, R);
    // attention core: dA → dq, dk, dv; W_o's gradients       [B·Nq, D] → [H, B·Nq, hd], [2H, B·T, hd]
    attnBackward(be, ws.attn, this.attnGrads(), ws.dA, this.attnWeights());
  }

  /** t1 = LN1(tq + dropout1(tq)) with tq broadcast over the B images. */
  private norm1Forward(ws: Workspace, keep: Uint8Array | null, s: number): void {
    const { B, Nq } = ws,
      n = this.norm1;
    const { dModel: D, layerNormEps: eps } = this.config;
    const c = ws.ln1;
    addLayerNormForward({
      out: ws.t1,
      r: c.r,
      mean: c.mean,
      rstd: c.rstd,
      x: ws.tq,
      xRows: Nq,
      y: ws.tq,
      yRows: Nq,
      keep,
      scale: s,
      weight: n.weight.data,
      bias: n.bias.data,
      R: B * Nq,
      C: D,
      eps,
    });
  }

  /** Backward of norm1Forward: LN1's input gradient dR1 from dT1Attn + dT1, summed over images into dTq. */
  private norm1Backward(ws: Workspace, keep: Uint8Array | null, s: number): void {
    const { B, Nq } = ws,
      D = this.config.dModel;
    this.addNormBackward(this.norm1, ws.ln1, ws.dR1, null, ws.dT1Attn, ws.dT1, false, 1, null, B * Nq);
    // r1 = tq + dropout1(tq), per image: dTq[n] = Σ_b dR1[b, n] · (1 + keep1[b, n] · s)
    const dTq = ws.dTq,
      dR1 = ws.dR1;
    dTq.fill(0);
    for (let b = 0; b < B; b++) {
      const o = b * Nq * D;
      if (keep) for (let i = 0; i < Nq * D; i++) dTq[i] += dR1[o + i] * (1 + keep[o + i] * s);
      else for (let i = 0; i < Nq * D; i++) dTq[i] += 2 * dR1[o + i];
    }
  }

  /** dM = (dM + dPooled / T) where m > 0, else 0 (ReLU and mean over tokens), in place; Σ_rows into dEmbedBias. */
  private memoryReluBackward(ws: Workspace, dPooled: Float32Array | null): void {
    const { B, T } = ws,
      D = this.config.dModel;
    const { m, dM } = ws,
      dEmbedBias = ws.dEmbedBias;
    dEmbedBias.fill(0);
    const invT = 1 / T;
    for (let b = 0; b < B; b++) {
      const dp = dPooled ? dPooled.subarray(b * D, (b + 1) * D) : null;
      for (let t = 0; t < T; t++) {
        const o = (b * T + t) * D;
        if (dp) {
          for (let d = 0; d < D; d++) {
            const v = Number(m[o + d] > 0) * (dM[o + d] + dp[d] * invT);
            dM[o + d] = v;
            dEmbedBias[d] += v;
          }
        } else {
          for (let d = 0; d < D; d++) {
            const v = Number(m[o + d] > 0) * dM[o + d];
            dM[o + d] = v;
            dEmbedBias[d] += v;
          }
        }
      }
    }
  }

  /** out = LN(x + dropout(y)) over R rows (x broadcast from xRows rows), saving r, mean and rstd in c. */
  private addNormForward(
    norm: WeightBias,
    c: NormCache,
    out: Float32Array,
    x: Float32Array,
    xRows: number,
    y: Float32Array,
    keep: Uint8Array | null,
    s: number,
    R: number,
  ): void {
    const { dModel: D, layerNormEps: eps } = this.config;
    addLayerNormForward({
      out,
      r: c.r,
      mean: c.mean,
      rstd: c.rstd,
      x,
      xRows,
      y,
      keep,
      scale: s,
      weight: norm.weight.data,
      bias: norm.bias.data,
      R,
      C: D,
      eps,
    });
  }

  /**
   * Backward of addNormForward for the incoming gradient dout (+ dout2): dres (∂/∂x), dbranch (∂/∂y, with the
   * saved keep mask when dropping), Σ_rows dbranch into branchBias; the norm's weight and bias gradients.
   */
  private addNormBackward(
    norm: WeightBias,
    c: NormCache,
    dres: Float32Array,
    dbranch: Float32Array | null,
    dout: Float32Array,
    dout2: Float32Array | null,
    dropping: boolean,
    s: number,
    branchBias: Float64Array | null,
    R: number,
  ): void {
    c.dWeight.fill(0);
    c.dBias.fill(0);
    branchBias?.fill(0);
    addLayerNormBackward({
      dres,
      dbranch,
      branchBias,
      dweight: c.dWeight,
      dbias: c.dBias,
      dout,
      dout2,
      r: c.r,
      mean: c.mean,
      rstd: c.rstd,
      keep: dropping ? c.keep : null,
      scale: s,
      weight: norm.weight.data,
      R,
      C: this.config.dModel,
    });
    copyInto(norm.weight.grad!, c.dWeight);
    copyInto(norm.bias.grad!, c.dBias);
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

  /** logits [B, L] from t3 [B·Nq, D]: zero-shot t3 · w + bias (w shared by labels); closed-set the group FC. */
  private fcForward(ws: Workspace, B: number, Nq: number): void {
    const D = this.config.dModel;
    const { be, fc } = this;
    const { t3, tk, gk, logits } = ws;
    if (this.config.mode === 'zero-shot') {
      // logits[b, n] = t3[b, n] · w + bias                   [B·Nq, D] → [B, Nq]
      be.matmul(logits, t3, [B * Nq, D], fc.weight.data, [D, 1], { bias: fc.bias.data });
      return;
    }
    const K = Nq,
      L = ws.L,
      g = groupSize(this.config);
    // tk ← t3 by group                                       [B, K, D] → [K, B, D]
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) tk.set(t3.subarray((b * K + k) * D, (b * K + k + 1) * D), (k * B + b) * D);
    // gk = tk · W                                            [K, B, D] × [K, D, g] → [K, B, g]
    be.matmul(gk, tk, [K, B, D], fc.weight.data, [K, D, g]);
    // class c is slot c mod g of group ⌊c/g⌋                 [K, B, g] → [B, L]
    const bias = fc.bias.data;
    for (let b = 0; b < B; b++)
      for (let c = 0; c < L; c++) {
        const k = Math.floor(c / g),
          j = c % g;
        logits[b * L + c] = gk[(k * B + b) * g + j] + bias[c];
      }
  }

  /** Backward of fcForward: dLogits → dT3, and the fc's gradients. */
  private fcBackward(ws: Workspace, B: number, Nq: number): void {
    const D = this.config.dModel;
    const { be, fc } = this;
    const { t3, dT3, dLogits } = ws;
    if (this.config.mode === 'zero-shot') {
      // dT3 = dLogits wᵀ, dw = t3ᵀ dLogits, dbias = Σ dLogits  [B, Nq] → [B·Nq, D]
      const w = fc.weight.data;
      for (let r = 0; r < B * Nq; r++) {
        const gr = dLogits[r],
          o = r * D;
        for (let d = 0; d < D; d++) dT3[o + d] = gr * w[d];
      }
      be.matmul(fc.weight.grad!, t3, [B * Nq, D], dLogits, [B * Nq, 1], { transA: true });
      let sb = 0;
      for (let r = 0; r < B * Nq; r++) sb += dLogits[r];
      fc.bias.grad![0] = sb;
      return;
    }
    const K = Nq,
      L = ws.L,
      g = groupSize(this.config);
    const { tk, dGk, dTk } = ws;
    // dGk ← dLogits by group and slot (slots c ≥ L get zero); dbias = Σ_b dLogits  [B, L] → [K, B, g]
    dGk.fill(0);
    const db = fc.bias.grad!;
    db.fill(0);
    for (let b = 0; b < B; b++)
      for (let c = 0; c < L; c++) {
        const k = Math.floor(c / g),
          j = c % g;
        const v = dLogits[b * L + c];
        dGk[(k * B + b) * g + j] = v;
        db[c] += v;
      }
    // dW = tkᵀ dGk                                           [K, D, g]
    be.matmul(fc.weight.grad!, tk, [K, B, D], dGk, [K, B, g], { transA: true });
    // dTk = dGk Wᵀ                                           [K, B, g] → [K, B, D]
    be.matmul(dTk, dGk, [K, B, g], fc.weight.data, [K, D, g], { transB: true });
    // dT3 ← dTk by image                                     [K, B, D] → [B, K, D]
    for (let b = 0; b < B; b++) for (let k = 0; k < K; k++) dT3.set(dTk.subarray((k * B + b) * D, (k * B + b + 1) * D), (b * K + k) * D);
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
    const D = cfg.dModel,
      H = cfg.heads;
    if (labels.length === 0) throw new ClipDecoderError('INPUT_INVALID', 'the label list is empty; give at least one label', 'labels');
    let tq: Float32Array, Nq: number, L: number;
    if (cfg.mode === 'zero-shot') {
      if (!queries) throw new ClipDecoderError('INPUT_INVALID', "a zero-shot head needs the labels' text embeddings", 'queries');
      if (queries.length !== labels.length * cfg.queryDim) {
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `label embeddings hold ${queries.length} values; ${labels.length} labels × ${cfg.queryDim} expected (embedding width must match the head's queryDim)`,
          'queries',
        );
      }
      assertFinite(queries, 'label embeddings');
      Nq = L = labels.length;
      tq = new Float32Array(Nq * D);
      // tq = ReLU(q W_qᵀ + b_q)                              [N, E] → [N, D]
      linearForward(this.be, tq, queries, this.queryProj!.weight.data, this.queryProj!.bias.data, Nq, cfg.queryDim, D, true);
    } else {
      if (labels.length !== cfg.numClasses) {
        throw new ClipDecoderError(
          'INPUT_INVALID',
          `this closed-set head scores exactly its ${cfg.numClasses} trained labels; got ${labels.length}`,
          'labels',
        );
      }
      if (this.trainedLabels) {
        const i = labels.findIndex((l, k) => l !== this.trainedLabels![k]);
        if (i >= 0)
          throw new ClipDecoderError(
            'INPUT_INVALID',
            `label ${i} is '${labels[i]}' but the head was trained with '${this.trainedLabels[i]}' there; closed-set heads need the trained label list in order`,
            labels[i],
          );
      }
      Nq = cfg.numGroups;
      L = cfg.numClasses;
      tq = Float32Array.from(this.queryEmbed!.data);
    }
    // t1 = LN1(tq + dropout1(tq)) = LN1(2·tq) with dropout off  [Nq, D]
    for (let i = 0; i < tq.length; i++) tq[i] *= 2;
    const t1 = new Float32Array(Nq * D);
    const n1 = this.norm1;
    layerNormForward(t1, new Float32Array(Nq), new Float32Array(Nq), tq, n1.weight.data, n1.bias.data, Nq, D, cfg.layerNormEps);
    // q = t1 W_qᵀ + b_q by head                              [Nq, D] → [H, Nq, hd]
    const qh = new Float32Array(Nq * D);
    attnProjectQueries(this.be, qh, t1, this.attnWeights(), Nq, D, H);
    return { labels: [...labels], Nq, L, t1, qh, version: this.version };
  }

  /** Logits [B, L] (and optionally head-averaged attention maps) for image tokens [B, T, C]. */
  predict(features: Float32Array, B: number, T: number, prepared: PreparedLabels, opts: PredictOptions = {}): Prediction {
    const cfg = this.config;
    const D = cfg.dModel,
      C = cfg.inputDim,
      H = cfg.heads,
      hd = D / H;
    if (!Number.isInteger(B) || B <= 0 || !Number.isInteger(T) || T <= 0) {
      throw new ClipDecoderError('INPUT_INVALID', `predict needs positive integer B and T, got B=${B}, T=${T}`, 'features');
    }
    if (features.length !== B * T * C) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        `features hold ${features.length} values; B=${B} × T=${T} × C=${C} expected (the head was trained on ${C}-wide tokens)`,
        'features',
      );
    }
    assertFinite(features, 'features');
    if (prepared.version !== this.version) {
      throw new ClipDecoderError(
        'INPUT_INVALID',
        'the prepared label set was computed from older weights; call prepareLabels again',
        'labels',
      );
    }
    const { Nq, L } = prepared;
    const closed = cfg.mode === 'closed-set';
    const maxRows = Math.max(1, opts.maxRows ?? 4096);
    // labels do not interact (no self-attention), so chunks of them give exactly the same logits
    const chunk = closed ? Nq : Math.max(1, Math.min(Nq, Math.floor(maxRows / B)));
    const ws = this.workspace(B, T, chunk, false);
    const be = this.be,
      embed = this.embed;
    const logits = new Float32Array(B * L);
    const attention = opts.attention ? new Float32Array(B * Nq * T) : undefined;
    // m = ReLU(x W_eᵀ + b_e)                                 [B·T, C] → [B·T, D]
    linearForward(be, ws.m, features, embed.weight.data, embed.bias.data, B * T, C, D, true);
    // k, v by head, once per batch                           [B·T, D] → [2H, B·T, hd]
    ws.attn.setDims({ B, N: chunk, T, D, H });
    attnProjectMemory(be, ws.attn, ws.m, this.attnWeights());
    for (let n0 = 0; n0 < Nq; n0 += chunk) {
      const nc = Math.min(chunk, Nq - n0);
      ws.attn.setDims({ B, N: nc, T, D, H });
      // this chunk's queries by head, shared by the images   [H, Nq, hd] → [H, nc, hd]
      for (let h = 0; h < H; h++) ws.attn.qh.set(prepared.qh.subarray((h * Nq + n0) * hd, (h * Nq + n0 + nc) * hd), h * nc * hd);
      // t3 = decoder layer, t1 broadcast over images         [nc, D] → [B·nc, D]
      this.decoderLayerForward(ws, prepared.t1.subarray(n0 * D, (n0 + nc) * D), nc, Dropout.none);
      // logits of this chunk                                 [B·nc, D] → [B, nc] (closed-set: [B, L])
      this.fcForward(ws, B, nc);
      if (closed) logits.set(ws.logits);
      else for (let b = 0; b < B; b++) logits.set(ws.logits.subarray(b * nc, (b + 1) * nc), b * L + n0);
      if (attention) {
        averageHeads(ws.attnAvg, ws.attn);
        for (let b = 0; b < B; b++) attention.set(ws.attnAvg.subarray(b * nc * T, (b + 1) * nc * T), (b * Nq + n0) * T);
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

function checkMasks(mk: DropoutMasks, ws: Workspace, cfg: HeadConfig): void {
  const R = ws.B * ws.Nq,
    D = cfg.dModel;
  const want: Array<[keyof DropoutMasks, number]> = [
    ['drop1', R * D],
    ['attn', cfg.heads * R * ws.T],
    ['drop2', R * D],
    ['ffn', R * cfg.ffnDim],
    ['drop3', R * D],
  ];
  for (const [name, n] of want) {
    const got = mk[name].length;
    if (got !== n) throw new ClipDecoderError('INPUT_INVALID', `dropout mask ${name} holds ${got} values, ${n} expected`, name);
  }
}

function copyInto(dst: Float32Array, src: Float64Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = src[i];
}

/** out = a + b element-wise; returns out. */
function addInto(out: Float32Array, a: Float32Array, b: Float32Array): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = a[i]! + b[i]!;
  return out;
}
