// CLIP image preprocessing with sharp, reproducing Hugging Face's CLIPImageProcessor from a model folder's own
// preprocessor_config.json: convert to RGB (alpha composited on white), shortest-side resize (bicubic, with
// antialiasing as PIL does), centre crop, rescale, normalise, CHW float32.
import sharp, { type Metadata } from 'sharp';
import { ClipDecoderError } from '../errors.ts';
import { readRegularFile } from '../util/fs.ts';
import { DEFAULT_PIXEL_LIMIT } from './image-limits.ts';

export interface PreprocessConfig {
  doResize: boolean;
  /** Resize so the shortest side has this length (aspect kept), or to an exact size. */
  resize: { shortestEdge: number } | { height: number; width: number };
  /** sharp kernel standing for PIL's resample filter. */
  kernel: 'nearest' | 'linear' | 'cubic' | 'lanczos3';
  doCenterCrop: boolean;
  crop: { height: number; width: number };
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  mean: [number, number, number];
  std: [number, number, number];
}

export { DEFAULT_PIXEL_LIMIT };

const OPENAI_CLIP_MEAN: [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
const OPENAI_CLIP_STD: [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

// PIL resample codes as Hugging Face stores them → the closest sharp kernel (PIL's bicubic is Keys a = -0.5,
// i.e. Catmull-Rom, which is sharp's 'cubic').
const KERNELS: Record<number, PreprocessConfig['kernel']> = {
  0: 'nearest',
  1: 'lanczos3',
  2: 'linear',
  3: 'cubic',
  4: 'linear',
  5: 'linear',
};

function sizeOf(v: unknown, file: string, key: string): { height: number; width: number } | { shortestEdge: number } {
  if (typeof v === 'number' && v > 0) return { shortestEdge: v };
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.shortest_edge === 'number' && o.shortest_edge > 0) return { shortestEdge: o.shortest_edge };
    if (typeof o.height === 'number' && typeof o.width === 'number' && o.height > 0 && o.width > 0) {
      return { height: o.height, width: o.width };
    }
  }
  throw new ClipDecoderError('MODEL_INVALID', `${file}: "${key}" must be a positive number, {shortest_edge} or {height, width}`, file);
}

function triple(v: unknown, fallback: [number, number, number], file: string, key: string): [number, number, number] {
  if (v === undefined) return fallback;
  if (typeof v === 'number') return [v, v, v];
  if (Array.isArray(v) && v.length === 3 && v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
    return v as [number, number, number];
  }
  throw new ClipDecoderError('MODEL_INVALID', `${file}: "${key}" must be a number or a list of 3 numbers`, file);
}

/**
 * Parses a preprocessor_config.json object (CLIPImageProcessor or the older CLIPFeatureExtractor layout, or
 * SiglipImageProcessor: a squash resize to {height, width} and no crop, which `centerCrop: false` makes the
 * default when the file does not say).
 */
export function parsePreprocessConfig(
  raw: Record<string, unknown>,
  file: string,
  defaults: { centerCrop?: boolean } = {},
): PreprocessConfig {
  const doResize = raw.do_resize !== false;
  const doCenterCrop = raw.do_center_crop === undefined ? defaults.centerCrop !== false : raw.do_center_crop !== false;
  const resize = sizeOf(raw.size ?? 224, file, 'size');
  const cropRaw = sizeOf(raw.crop_size ?? raw.size ?? 224, file, 'crop_size');
  const crop = 'shortestEdge' in cropRaw ? { height: cropRaw.shortestEdge, width: cropRaw.shortestEdge } : cropRaw;
  const resample = typeof raw.resample === 'number' ? raw.resample : 3;
  const std = triple(raw.image_std, OPENAI_CLIP_STD, file, 'image_std');
  if (std.some((s) => s === 0)) throw new ClipDecoderError('MODEL_INVALID', `${file}: "image_std" has a zero`, file);
  return {
    doResize,
    resize,
    kernel: KERNELS[resample] ?? 'cubic',
    doCenterCrop,
    crop,
    doRescale: raw.do_rescale !== false,
    rescaleFactor: typeof raw.rescale_factor === 'number' ? raw.rescale_factor : 1 / 255,
    doNormalize: raw.do_normalize !== false,
    mean: triple(raw.image_mean, OPENAI_CLIP_MEAN, file, 'image_mean'),
    std,
  };
}

/** The [height, width] of the tensor the config produces (the model's input size). */
export function outputSize(cfg: PreprocessConfig): { height: number; width: number } {
  if (cfg.doCenterCrop) return cfg.crop;
  if ('height' in cfg.resize) return cfg.resize;
  throw new ClipDecoderError(
    'MODEL_INVALID',
    'preprocessor_config.json: without a centre crop, "size" must be {height, width} so every image has one shape',
  );
}

export type ImageSource = string | Uint8Array;

export interface PreprocessOptions {
  /** Images with more pixels than this are refused (decompression bombs). */
  pixelLimit?: number;
  /** Files with more bytes are refused, and only regular files are read (default DEFAULT_MAX_FILE_BYTES). */
  maxFileBytes?: number;
  /** Training augmentation, applied before the resize: a crop (fractions of the oriented image) and a mirror. */
  augment?: { flip?: boolean; crop?: { left: number; top: number; width: number; height: number } };
}

/** SVGs are vector: render them at (at least) the size the resize asks for, not at 72 dpi then upscale. */
export function svgDensity(width: number, height: number, cfg: PreprocessConfig): number {
  const target = 'shortestEdge' in cfg.resize ? cfg.resize.shortestEdge : Math.max(cfg.resize.height, cfg.resize.width);
  const scale = Math.max(1, target / Math.max(1, Math.min(width, height)));
  return Math.min(100000, 72 * scale);
}

function describe(src: ImageSource): string {
  return typeof src === 'string' ? src : `<buffer of ${src.byteLength} bytes>`;
}

/**
 * Decodes one image and writes its CLIP input tensor [3, H, W] into `out` at `offset` (so a batch is filled in
 * place). Throws IMAGE_INVALID / IMAGE_TOO_LARGE naming the file.
 */
export async function preprocessInto(
  src: ImageSource,
  cfg: PreprocessConfig,
  out: Float32Array,
  offset: number,
  options: PreprocessOptions = {},
): Promise<void> {
  const name = describe(src);
  const limit = options.pixelLimit ?? DEFAULT_PIXEL_LIMIT;
  const { height: H, width: W } = outputSize(cfg);
  let data: Uint8Array;
  try {
    data = typeof src === 'string' ? await readRegularFile(src, options.maxFileBytes) : src;
  } catch (e) {
    if (e instanceof ClipDecoderError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new ClipDecoderError('IMAGE_INVALID', `${name}: cannot read the file (${code ?? String(e)})`, name, { cause: e });
  }
  if (data.byteLength === 0) throw new ClipDecoderError('IMAGE_INVALID', `${name}: the file is empty`, name);

  let rgb: Buffer;
  try {
    let meta: Metadata;
    try {
      meta = await sharp(data, { limitInputPixels: false }).metadata();
    } catch (e) {
      throw new ClipDecoderError('IMAGE_INVALID', `${name}: not a readable image (${(e as Error).message})`, name, { cause: e });
    }
    const w0 = meta.width ?? 0;
    const h0 = meta.height ?? 0;
    let density: number | undefined;
    if (meta.format === 'svg') {
      density = svgDensity(w0, h0, cfg);
      const scale = density / 72;
      if (w0 * h0 * scale * scale > limit) {
        throw new ClipDecoderError('IMAGE_TOO_LARGE', `${name}: SVG renders to more than ${limit} pixels`, name);
      }
    } else if (w0 * h0 > limit) {
      throw new ClipDecoderError(
        'IMAGE_TOO_LARGE',
        `${name}: ${w0}×${h0} pixels exceeds the limit of ${limit} (raise pixelLimit to accept it)`,
        name,
      );
    }
    // failOn 'truncated': a cut-off JPEG/PNG is an error, not a half-grey image.
    let img = sharp(data, { limitInputPixels: limit, failOn: 'truncated', density, pages: 1, autoOrient: true });
    img = img.flatten({ background: { r: 255, g: 255, b: 255 } }).toColourspace('srgb');
    // EXIF orientations 5–8 swap width and height once applied.
    const swap = (meta.orientation ?? 1) >= 5;
    let iw = Math.round((swap ? h0 : w0) * (density ? density / 72 : 1));
    let ih = Math.round((swap ? w0 : h0) * (density ? density / 72 : 1));
    const crop = options.augment?.crop;
    if (crop) {
      const left = Math.min(iw - 1, Math.max(0, Math.round(crop.left * iw)));
      const top = Math.min(ih - 1, Math.max(0, Math.round(crop.top * ih)));
      const width = Math.max(1, Math.min(iw - left, Math.round(crop.width * iw)));
      const height = Math.max(1, Math.min(ih - top, Math.round(crop.height * ih)));
      img = img.extract({ left, top, width, height });
      iw = width;
      ih = height;
    }
    if (options.augment?.flip) img = img.flop();
    if (cfg.doResize) {
      let rw: number;
      let rh: number;
      if ('shortestEdge' in cfg.resize) {
        // Hugging Face: short side = size, long side = int(size * long / short).
        const s = cfg.resize.shortestEdge;
        if (iw <= ih) {
          rw = s;
          rh = Math.floor((s * ih) / iw);
        } else {
          rh = s;
          rw = Math.floor((s * iw) / ih);
        }
      } else {
        rw = cfg.resize.width;
        rh = cfg.resize.height;
      }
      img = img.resize({ width: rw, height: rh, fit: 'fill', kernel: cfg.kernel });
      if (cfg.doCenterCrop) {
        if (rw < W || rh < H) {
          // Hugging Face pads with zeros when the crop exceeds the image; pad in white like the alpha fill.
          const padW = Math.max(0, W - rw);
          const padH = Math.max(0, H - rh);
          img = sharp(await img.raw().toBuffer(), { raw: { width: rw, height: rh, channels: 3 } }).extend({
            left: padW >> 1,
            right: padW - (padW >> 1),
            top: padH >> 1,
            bottom: padH - (padH >> 1),
            background: { r: 255, g: 255, b: 255 },
          });
          rw = Math.max(rw, W);
          rh = Math.max(rh, H);
        }
        img = img.extract({ left: Math.floor((rw - W) / 2), top: Math.floor((rh - H) / 2), width: W, height: H });
      }
    } else {
      img = img.resize({ width: W, height: H, fit: 'cover', position: 'centre', kernel: cfg.kernel });
    }
    const res = await img.removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (res.info.width !== W || res.info.height !== H || res.info.channels !== 3) {
      throw new Error(`unexpected decoded shape ${res.info.width}×${res.info.height}×${res.info.channels}`);
    }
    rgb = res.data;
  } catch (e) {
    if (e instanceof ClipDecoderError) throw e;
    const msg = (e as Error).message ?? String(e);
    if (/pixel limit/i.test(msg)) {
      throw new ClipDecoderError('IMAGE_TOO_LARGE', `${name}: exceeds the pixel limit of ${limit}`, name, { cause: e });
    }
    throw new ClipDecoderError('IMAGE_INVALID', `${name}: cannot decode the image (${msg})`, name, { cause: e });
  }

  // HWC uint8 → CHW float32, (x * rescale - mean) / std.
  const plane = H * W;
  const r = cfg.doRescale ? cfg.rescaleFactor : 1;
  for (let c = 0; c < 3; c++) {
    const m = cfg.doNormalize ? cfg.mean[c]! : 0;
    const s = cfg.doNormalize ? 1 / cfg.std[c]! : 1;
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = (rgb[i * 3 + c]! * r - m) * s;
  }
}

/** Convenience: one image → a fresh [3, H, W] tensor. */
export async function preprocessImage(src: ImageSource, cfg: PreprocessConfig, options?: PreprocessOptions): Promise<Float32Array> {
  const { height, width } = outputSize(cfg);
  const out = new Float32Array(3 * height * width);
  await preprocessInto(src, cfg, out, 0, options);
  return out;
}
