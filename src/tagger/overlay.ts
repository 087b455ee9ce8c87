// Attention maps as pictures: a label's cross-attention over the patch grid, upsampled and blended as a heat
// map over the view of the image the model saw (a centred square crop).
import sharp from 'sharp';
import { readFile } from 'node:fs/promises';
import { ClipDecoderError } from '../errors.ts';
import type { ImageSource } from '../clip/preprocess.ts';

// A perceptually ordered colour map (dark purple → orange → yellow), 5 stops linearly interpolated.
const STOPS: [number, number, number][] = [
  [13, 8, 135],
  [126, 3, 168],
  [204, 71, 120],
  [248, 149, 64],
  [240, 249, 33],
];

function colour(v: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, v)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i]!, b = STOPS[i + 1]!;
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

export interface OverlayOptions {
  /** Side of the output square in pixels (default 224). */
  size?: number;
  /** Heat-map opacity (default 0.55). */
  alpha?: number;
}

/**
 * Renders `weights` (a [gh, gw] attention grid, row-major, in patch-token order) over the centre crop of the
 * image. The grid is min-max scaled: the picture shows where the label looked, not how strongly.
 */
export async function attentionOverlayPng(
  src: ImageSource,
  weights: ArrayLike<number>,
  gh: number,
  gw: number,
  options: OverlayOptions = {},
): Promise<Buffer> {
  if (weights.length !== gh * gw) {
    throw new ClipDecoderError('INPUT_INVALID', `attention grid has ${weights.length} values, expected ${gh}×${gw}`);
  }
  const size = options.size ?? 224;
  const alpha = options.alpha ?? 0.55;
  const data = typeof src === 'string' ? await readFile(src) : src;
  const base = await sharp(data, { failOn: 'truncated', autoOrient: true })
    .flatten({ background: '#ffffff' })
    .resize({ width: size, height: size, fit: 'cover', position: 'centre', kernel: 'cubic' })
    .removeAlpha()
    .raw()
    .toBuffer();
  let lo = Infinity, hi = -Infinity;
  for (let i = 0; i < weights.length; i++) {
    lo = Math.min(lo, weights[i]!);
    hi = Math.max(hi, weights[i]!);
  }
  const grid = new Uint8Array(gh * gw);
  for (let i = 0; i < grid.length; i++) grid[i] = hi > lo ? Math.round((255 * (weights[i]! - lo)) / (hi - lo)) : 0;
  const heat = await sharp(grid, { raw: { width: gw, height: gh, channels: 1 } })
    .resize({ width: size, height: size, fit: 'fill', kernel: 'cubic' })
    .extractChannel(0) // sharp widens one-channel raw input to sRGB on output
    .raw()
    .toBuffer();
  const out = Buffer.alloc(size * size * 3);
  for (let p = 0; p < size * size; p++) {
    const [r, g, b] = colour(heat[p]! / 255);
    out[p * 3] = Math.round(base[p * 3]! * (1 - alpha) + r * alpha);
    out[p * 3 + 1] = Math.round(base[p * 3 + 1]! * (1 - alpha) + g * alpha);
    out[p * 3 + 2] = Math.round(base[p * 3 + 2]! * (1 - alpha) + b * alpha);
  }
  return sharp(out, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
}
