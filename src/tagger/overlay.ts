// Attention maps as pictures: a label's cross-attention over the patch grid, upsampled and blended as a heat
// map over the view of the image the model saw (a centred square crop).
import sharp from 'sharp';
import { createHash } from 'node:crypto';
import { basename, extname } from 'node:path';
import { readRegularFile } from '../util/fs.ts';
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
  const a = STOPS[i]!,
    b = STOPS[i + 1]!;
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
  const data = typeof src === 'string' ? await readRegularFile(src) : src;
  const base = await sharp(data, { failOn: 'truncated', autoOrient: true })
    .flatten({ background: '#ffffff' })
    .resize({ width: size, height: size, fit: 'cover', position: 'centre', kernel: 'cubic' })
    .removeAlpha()
    .raw()
    .toBuffer();
  let lo = Infinity,
    hi = -Infinity;
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
  return sharp(out, { raw: { width: size, height: size, channels: 3 } })
    .png()
    .toBuffer();
}

// Overlay file names: `<index>-<image stem>--<label>.png`. The index (the image's position in the input) keeps
// images apart, even two `a.png` in different folders; the label part is injective, so `a/b`, `a_b` and
// `a b` stay three files. Unicode letters, marks and digits are kept as they are (readable: `猫`), a space
// becomes `_`, and every other character (`/`, `_`, `%`, emoji, …) is written as %XX of its UTF-8 bytes.
const KEEP = /^[\p{L}\p{M}\p{N}.-]$/u;
/** Bytes of a name part before it is cut and suffixed with a hash (file names are limited to 255 bytes). */
const MAX_PART_BYTES = 100;

function hash8(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex').slice(0, 8);
}

/** A string as an injective, readable file-name part (no `/`, no `~` except before a hash suffix). */
export function fileNamePart(s: string): string {
  const parts: string[] = [];
  for (const ch of s) {
    if (ch === ' ') parts.push('_');
    else if (KEEP.test(ch)) parts.push(ch);
    else parts.push(Array.from(Buffer.from(ch, 'utf8'), (b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''));
  }
  let out = parts.join('');
  if (Buffer.byteLength(out) > MAX_PART_BYTES) {
    // Cut at a whole character, then the hash of the full string keeps long names apart.
    let cut = '';
    for (const p of parts) {
      if (Buffer.byteLength(cut + p) > MAX_PART_BYTES - 9) break;
      cut += p;
    }
    out = `${cut}~${hash8(s)}`;
  }
  return out;
}

/**
 * The label part of each label's overlay file name. Names that differ only in case or Unicode normalisation
 * (`Dog`/`dog`, é composed/decomposed) would collide on macOS and Windows file systems: those get a hash suffix.
 */
export function overlayLabelParts(labels: readonly string[]): Map<string, string> {
  const parts = new Map(labels.map((l) => [l, fileNamePart(l)]));
  const byKey = new Map<string, string[]>();
  for (const [label, part] of parts) {
    const key = part.normalize('NFC').toLowerCase();
    byKey.set(key, [...(byKey.get(key) ?? []), label]);
  }
  for (const group of byKey.values()) {
    if (group.length > 1) for (const l of group) if (!parts.get(l)!.includes('~')) parts.set(l, `${parts.get(l)}~${hash8(l)}`);
  }
  return parts;
}

/** The overlay file name of one image (by input position and path) and one label part. */
export function overlayFileName(index: number, source: string, labelPart: string): string {
  const stem = fileNamePart(basename(source, extname(source)));
  return `${String(index).padStart(4, '0')}-${stem}--${labelPart}.png`;
}
