// The page's pure functions (no DOM, no ONNX Runtime), so that Node tests can hold them against the library:
// CLIP preprocessing as src/clip/preprocess.ts does it with sharp (PIL's antialiased resampling, centre crop,
// rescale, normalise to CHW float32), token batches as src/clip/tokenizer.ts + ClipModel.tokenize build them,
// and the prompt ensemble of src/clip/prompts.ts.

// PIL's filters (ImagingResample): support in input pixels at scale 1, and the kernel.
const FILTERS = {
  nearest: { support: 0.5, f: (x) => (x >= -0.5 && x < 0.5 ? 1 : 0) },
  linear: { support: 1, f: (x) => Math.max(0, 1 - Math.abs(x)) },
  // Keys a = -0.5 (Catmull-Rom): PIL's BICUBIC and sharp's 'cubic'
  cubic: {
    support: 2,
    f: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
  lanczos3: {
    support: 3,
    f: (x) => {
      if (x === 0) return 1;
      if (x <= -3 || x >= 3) return 0;
      const px = Math.PI * x;
      return (3 * Math.sin(px) * Math.sin(px / 3)) / (px * px);
    },
  },
};

/**
 * Per output pixel: first input index and normalised weights (PIL's precompute_coeffs). `scale` is the factor
 * left after a box shrink (the box's ceil may leave a partial pixel: in/out is then not exactly the scale).
 */
function coefficients(inSize, outSize, kernel, scale = inSize / outSize) {
  const { support: s0, f } = FILTERS[kernel] ?? FILTERS.cubic;
  const filterScale = Math.max(scale, 1); // antialias: widen the kernel when shrinking
  const support = s0 * filterScale;
  const out = [];
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(Math.trunc(center - support + 0.5), 0);
    const hi = Math.min(Math.trunc(center + support + 0.5), inSize);
    const w = new Float64Array(Math.max(0, hi - lo));
    let sum = 0;
    for (let x = lo; x < hi; x++) sum += w[x - lo] = f((x - center + 0.5) / filterScale);
    if (sum !== 0) for (let k = 0; k < w.length; k++) w[k] /= sum;
    out.push({ lo, w });
  }
  return out;
}

const clamp8 = (v) => (v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v));

/**
 * Averages boxes of `n` rows (dim 'v') or columns ('h') of an RGB image, rounding; a last partial box repeats the
 * edge pixel (libvips's shrink with ceil).
 */
function boxShrink(src, width, height, n, dim) {
  const ow = dim === 'h' ? Math.ceil(width / n) : width;
  const oh = dim === 'v' ? Math.ceil(height / n) : height;
  const out = new Uint8ClampedArray(ow * oh * 3);
  for (let y = 0; y < oh; y++)
    for (let x = 0; x < ow; x++)
      for (let c = 0; c < 3; c++) {
        let sum = 0;
        for (let k = 0; k < n; k++) {
          const sx = dim === 'h' ? Math.min(width - 1, x * n + k) : x;
          const sy = dim === 'v' ? Math.min(height - 1, y * n + k) : y;
          sum += src[(sy * width + sx) * 3 + c];
        }
        out[(y * ow + x) * 3 + c] = Math.floor((sum + (n >> 1)) / n);
      }
  return { img: out, width: ow, height: oh };
}

/**
 * Resizes an RGB image (3 bytes a pixel, row-major) as sharp (libvips's vips_resize) does: per axis, a shrink
 * of 4× or more first averages boxes of floor(factor / 2) pixels (its reducing gap of 2), then PIL's
 * antialiased filter reduces by the rest; vertical axis first, each pass rounded to 8 bits. Measured against
 * sharp: 200×150 → 85×64 and → 48×36, cubic, differ by at most 1 level (tests/web-lib.test.ts).
 */
export function resizeRgb(src, width, height, outWidth, outHeight, kernel = 'cubic') {
  let img = src,
    w = width,
    h = height;
  const gapV = Math.max(1, Math.floor(h / outHeight / 2));
  if (gapV > 1) ({ img, width: w, height: h } = boxShrink(img, w, h, gapV, 'v'));
  if (outHeight !== h || gapV > 1) {
    const cy = coefficients(h, outHeight, kernel, height / outHeight / gapV);
    const mid = new Uint8ClampedArray(w * outHeight * 3);
    for (let y = 0; y < outHeight; y++) {
      const { lo, w: k } = cy[y];
      for (let x = 0; x < w * 3; x++) {
        let v = 0;
        for (let i = 0; i < k.length; i++) v += img[(lo + i) * w * 3 + x] * k[i];
        mid[y * w * 3 + x] = clamp8(v);
      }
    }
    img = mid;
    h = outHeight;
  }
  const gapH = Math.max(1, Math.floor(w / outWidth / 2));
  if (gapH > 1) ({ img, width: w, height: h } = boxShrink(img, w, h, gapH, 'h'));
  if (outWidth !== w || gapH > 1) {
    const cx = coefficients(w, outWidth, kernel, width / outWidth / gapH);
    const out = new Uint8ClampedArray(outWidth * h * 3);
    for (let y = 0; y < h; y++) {
      const row = y * w * 3;
      for (let x = 0; x < outWidth; x++) {
        const { lo, w: k } = cx[x];
        for (let c = 0; c < 3; c++) {
          let v = 0;
          for (let i = 0; i < k.length; i++) v += img[row + (lo + i) * 3 + c] * k[i];
          out[(y * outWidth + x) * 3 + c] = clamp8(v);
        }
      }
    }
    img = out;
  }
  return img;
}

/** The size the resize step produces (Hugging Face: short side = size, long side = floor(size · long / short)). */
export function resizedSize(width, height, pre) {
  if (!pre.doResize) return { width, height };
  if (pre.resize.height !== undefined) return { width: pre.resize.width, height: pre.resize.height };
  const s = pre.resize.shortestEdge;
  return width <= height ? { width: s, height: Math.floor((s * height) / width) } : { width: Math.floor((s * width) / height), height: s };
}

/**
 * RGB bytes of a decoded image (alpha already composited on white) → the model's input [3, H, W] float32:
 * resize, centre crop (white padding where the image is smaller), rescale, normalise. `pre` is the manifest's
 * parsed preprocessor_config (src/clip/preprocess.ts PreprocessConfig).
 */
export function preprocessRgb(rgb, width, height, pre) {
  const H = pre.doCenterCrop ? pre.crop.height : pre.resize.height;
  const W = pre.doCenterCrop ? pre.crop.width : pre.resize.width;
  const size = pre.doCenterCrop ? resizedSize(width, height, pre) : { width: W, height: H };
  let img = resizeRgb(rgb, width, height, size.width, size.height, pre.kernel);
  let { width: rw, height: rh } = size;
  if (rw < W || rh < H) {
    const pw = Math.max(rw, W),
      ph = Math.max(rh, H);
    const padded = new Uint8ClampedArray(pw * ph * 3).fill(255);
    const left = (Math.max(0, W - rw) >> 1) * 3,
      top = Math.max(0, H - rh) >> 1;
    for (let y = 0; y < rh; y++) padded.set(img.subarray(y * rw * 3, (y + 1) * rw * 3), (top + y) * pw * 3 + left);
    img = padded;
    rw = pw;
    rh = ph;
  }
  const x0 = Math.floor((rw - W) / 2),
    y0 = Math.floor((rh - H) / 2);
  const out = new Float32Array(3 * H * W);
  const r = pre.doRescale ? pre.rescaleFactor : 1;
  for (let c = 0; c < 3; c++) {
    const m = pre.doNormalize ? pre.mean[c] : 0;
    const s = pre.doNormalize ? 1 / pre.std[c] : 1;
    for (let y = 0; y < H; y++)
      for (let x = 0; x < W; x++) out[c * H * W + y * W + x] = (img[((y0 + y) * rw + x0 + x) * 3 + c] * r - m) * s;
  }
  return out;
}

/** RGBA (canvas ImageData) → RGB. */
export function rgbaToRgb(rgba) {
  const n = rgba.length / 4;
  const out = new Uint8ClampedArray(n * 3);
  for (let i = 0; i < n; i++) {
    out[i * 3] = rgba[i * 4];
    out[i * 3 + 1] = rgba[i * 4 + 1];
    out[i * 3 + 2] = rgba[i * 4 + 2];
  }
  return out;
}

/**
 * Token-id rows → the text model's int64 inputs: each row truncated to maxLength, padded (right, or left when
 * padLeft) to the longest row or to maxLength; CLIP (eosId given) keeps its end-of-text token last.
 */
export function tokenBatch(rows, { maxLength, padding, padId, padLeft = false, eosId }) {
  const cut = rows.map((r) => r.slice(0, maxLength));
  const length = padding === 'max_length' ? maxLength : Math.max(1, ...cut.map((r) => r.length));
  const ids = new BigInt64Array(cut.length * length).fill(BigInt(padId));
  const mask = new BigInt64Array(cut.length * length);
  cut.forEach((r, i) => {
    const start = i * length + (padLeft ? length - r.length : 0);
    for (let j = 0; j < r.length; j++) {
      ids[start + j] = BigInt(r[j]);
      mask[start + j] = 1n;
    }
    if (eosId !== undefined && r.length > 0) ids[start + r.length - 1] = BigInt(eosId);
  });
  return { ids, mask, length };
}

/** Rows of x [n, dim] scaled to unit length (in place). */
export function l2normalizeRows(x, dim) {
  for (let off = 0; off < x.length; off += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += x[off + j] * x[off + j];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) x[off + j] *= inv;
  }
  return x;
}

/** Prompt ensemble: per-template embeddings [n, dim] → one query per label (normalised, or the plain mean). */
export function ensemble(perTemplate, dim, normalize) {
  const sum = new Float32Array(perTemplate[0].length);
  for (const emb of perTemplate) {
    if (normalize) l2normalizeRows(emb, dim);
    for (let i = 0; i < sum.length; i++) sum[i] += emb[i];
  }
  if (normalize) return l2normalizeRows(sum, dim);
  for (let i = 0; i < sum.length; i++) sum[i] /= perTemplate.length;
  return sum;
}

/**
 * The page's probabilities, as the Tagger forms them (src/tagger/tagger.ts, src/head/fusion.ts): `scoring` is
 * the manifest's. weights null: sigmoid(head logit). Else, per label l, with the `trained` weights for the head's
 * trained labels and `novel` for the rest: sigmoid(w.global · cos(image, query_l) + w.local · logit_l + w.bias),
 * where cos divides by the image embedding's norm only (the queries are the head's, as given to it).
 */
export function fusedProbabilities(logits, imageEmbed, queries, labels, dim, scoring) {
  const out = new Float32Array(labels.length);
  const sigmoid = (z) => 1 / (1 + Math.exp(-z));
  const w = scoring?.weights;
  if (!w) {
    for (let l = 0; l < labels.length; l++) out[l] = sigmoid(logits[l]);
    return out;
  }
  let n2 = 0;
  for (let e = 0; e < dim; e++) n2 += imageEmbed[e] * imageEmbed[e];
  const inv = n2 > 0 ? 1 / Math.sqrt(n2) : 0;
  const trained = new Set(scoring.trainedLabels || []);
  for (let l = 0; l < labels.length; l++) {
    let dot = 0;
    for (let e = 0; e < dim; e++) dot += imageEmbed[e] * queries[l * dim + e];
    const s = trained.has(labels[l]) ? w.trained : w.novel;
    out[l] = sigmoid(s.global * dot * inv + s.local * logits[l] + s.bias);
  }
  return out;
}
