// The CLIP-loss branch of CLIP-Decoder (§2): image side z_i = norm(W_i · mean_T(memory)), text side
// z_j = norm(W_j · caption embedding), symmetric InfoNCE with a trainable log-scale. W_i, W_j are stored in
// Linear layout [P, in] without bias and start N(0, 1) as in the authors' CLIPLoss; log-scale starts at
// log(1/0.07) as in CLIP (the authors' code left it at 0.1 by a bug).
import type { MatmulBackend } from '../nn/matmul.ts';
import { makeParam, type Param } from '../nn/param.ts';
import type { Rng } from '../nn/rng.ts';
import { linearBackward, linearForward } from '../nn/linear.ts';
import { l2NormalizeBackward, l2NormalizeForward } from '../nn/pool.ts';
import { infoNceLoss } from './losses.ts';

export const CLIP_LOG_SCALE_INIT = Math.log(1 / 0.07);

export class ClipContrastive {
  readonly imageProj: Param; // [P, D]
  readonly textProj: Param; // [P, Ec]
  readonly logScale: Param; // []
  private buf?: {
    B: number;
    zi: Float32Array;
    zj: Float32Array;
    ni: Float32Array;
    nj: Float32Array;
    yi: Float32Array;
    yj: Float32Array;
    dyi: Float32Array;
    dyj: Float32Array;
    dzi: Float32Array;
    dzj: Float32Array;
  };

  constructor(
    readonly P: number,
    readonly D: number,
    readonly Ec: number,
  ) {
    this.imageProj = makeParam('clip.image_proj.weight', [P, D]);
    this.textProj = makeParam('clip.text_proj.weight', [P, Ec]);
    this.logScale = makeParam('clip.log_scale', []);
  }

  get params(): Param[] {
    return [this.imageProj, this.textProj, this.logScale];
  }

  init(rng: Rng): void {
    for (const p of [this.imageProj, this.textProj]) for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal();
    this.logScale.data[0] = CLIP_LOG_SCALE_INIT;
  }

  private buffers(B: number) {
    if (!this.buf || this.buf.B !== B) {
      const P = this.P;
      const f = () => new Float32Array(B * P);
      this.buf = {
        B,
        zi: f(),
        zj: f(),
        ni: new Float32Array(B),
        nj: new Float32Array(B),
        yi: f(),
        yj: f(),
        dyi: f(),
        dyj: f(),
        dzi: f(),
        dzj: f(),
      };
    }
    return this.buf;
  }

  /**
   * Loss for pooled image features [B, D] and caption embeddings [B, Ec]. With dpooled given, writes
   * weight · ∂loss/∂pooled into it (overwrites) and the weighted parameter gradients (overwrite).
   */
  forwardBackward(
    be: MatmulBackend,
    pooled: Float32Array,
    captions: Float32Array,
    B: number,
    dpooled: Float32Array | null,
    weight = 1,
  ): number {
    const { P, D, Ec } = this;
    const s = this.buffers(B);
    linearForward(be, s.zi, pooled, this.imageProj.data, null, B, D, P);
    linearForward(be, s.zj, captions, this.textProj.data, null, B, Ec, P);
    l2NormalizeForward(s.yi, s.ni, s.zi, B, P);
    l2NormalizeForward(s.yj, s.nj, s.zj, B, P);
    const r = infoNceLoss(s.yi, s.yj, B, P, this.logScale.data[0], dpooled ? s.dyi : null, dpooled ? s.dyj : null, weight);
    if (dpooled) {
      l2NormalizeBackward(s.dzi, s.dyi, s.yi, s.ni, B, P);
      l2NormalizeBackward(s.dzj, s.dyj, s.yj, s.nj, B, P);
      linearBackward(be, dpooled, this.imageProj.grad, null, s.dzi, pooled, this.imageProj.data, B, D, P);
      linearBackward(be, null, this.textProj.grad, null, s.dzj, captions, this.textProj.data, B, Ec, P);
      this.logScale.grad![0] = r.dLogScale;
    }
    return r.loss;
  }
}
