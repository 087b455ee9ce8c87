// Renders SVG drawings with resvg: to PNG on white (EmojiTags) or to transparent RGBA pixels (scene members).
// Files already rendered with the same settings are reused; every file is written atomically, so an interrupted
// build resumes where it stopped. Rendering is synchronous (about 1-2 ms an image at 224 px here), with file
// writes overlapping it.
import { existsSync, statSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Resvg } from '@resvg/resvg-js';
import sharp from 'sharp';
import { writeFileAtomic } from '../../util/fs.ts';
import { svgDocument } from './sources.ts';
import type { SquareSvg } from './sources.ts';

export interface RenderJob {
  /** Absolute output path of the PNG. */
  out: string;
  /** The drawing (built lazily: only for files that need rendering). */
  svg: () => SquareSvg;
}

export interface RenderOptions {
  size: number;
  /** File writes in flight while rendering goes on. */
  concurrency?: number;
  onProgress?: (done: number, total: number) => void;
}

const RESVG_OPTIONS = { font: { loadSystemFonts: false }, logLevel: 'off' } as const; // no text in emoji

/**
 * Renders `s` to a size × size canvas; returns the resvg image and where the wanted square sits in it. resvg 2.6
 * panics (and aborts the process) on a group with opacity whose content lies wholly outside the canvas, which some
 * Noto drawings carry as leftovers. So when the drawing's bounding box leaves the view box, the canvas is grown to
 * hold everything and the caller crops the square back out (at padL, padT).
 */
function renderPadded(
  s: SquareSvg,
  size: number,
  background: string | undefined,
): { image: ReturnType<Resvg['render']>; padL: number; padT: number } {
  const options = { ...RESVG_OPTIONS, background };
  const scale = size / s.side; // pixels per user unit
  const doc = new Resvg(svgDocument(s), { ...options, fitTo: { mode: 'width', value: size } });
  const bb = doc.getBBox();
  const eps = 1e-3;
  if (!bb || (bb.x >= s.x - eps && bb.y >= s.y - eps && bb.x + bb.width <= s.x + s.side + eps && bb.y + bb.height <= s.y + s.side + eps)) {
    return { image: doc.render(), padL: 0, padT: 0 };
  }
  // Whole pixels of margin on each side keep the crop aligned with a plain render.
  const padL = Math.max(0, Math.ceil((s.x - bb.x) * scale));
  const padT = Math.max(0, Math.ceil((s.y - bb.y) * scale));
  const padR = Math.max(0, Math.ceil((bb.x + bb.width - (s.x + s.side)) * scale));
  const padB = Math.max(0, Math.ceil((bb.y + bb.height - (s.y + s.side)) * scale));
  const W = size + padL + padR;
  const H = size + padT + padB;
  const box = { x: s.x - padL / scale, y: s.y - padT / scale, w: W / scale, h: H / scale };
  return { image: new Resvg(svgDocument(s, box), { ...options, fitTo: { mode: 'width', value: W } }).render(), padL, padT };
}

/** Renders `s` to a size × size PNG on white. */
export async function renderSvgPng(s: SquareSvg, size: number): Promise<Uint8Array> {
  const { image, padL, padT } = renderPadded(s, size, 'white');
  if (image.width === size && image.height === size) return image.asPng();
  return sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 4 } })
    .extract({ left: padL, top: padT, width: size, height: size })
    .png()
    .toBuffer();
}

/** Renders `s` to size × size RGBA pixels on a transparent canvas, premultiplied alpha (resvg's own layout). */
export function renderSvgRgba(s: SquareSvg, size: number): Uint8Array {
  const { image, padL, padT } = renderPadded(s, size, undefined);
  const px = image.pixels;
  if (image.width === size && image.height === size) return px;
  const out = new Uint8Array(size * size * 4); // [size, size, 4]
  for (let y = 0; y < size; y++)
    out.set(px.subarray(((padT + y) * image.width + padL) * 4, ((padT + y) * image.width + padL + size) * 4), y * size * 4);
  return out;
}

/** A file to make: `render` gives its bytes (called only when the file is missing). */
export interface FileJob {
  out: string;
  render: () => Promise<Uint8Array>;
}

/** Makes the jobs whose file is missing, writing each atomically; returns how many were made and reused. */
export async function writeMissingFiles(
  jobs: readonly FileJob[],
  options: Omit<RenderOptions, 'size'>,
): Promise<{ rendered: number; reused: number }> {
  const todo = jobs.filter((j) => !(existsSync(j.out) && statSync(j.out).size > 0));
  const reused = jobs.length - todo.length;
  for (const d of new Set(todo.map((j) => dirname(j.out)))) await mkdir(d, { recursive: true });
  const maxWrites = Math.max(1, options.concurrency ?? 8);
  const pending = new Set<Promise<void>>();
  let done = reused;
  options.onProgress?.(done, jobs.length);
  for (const job of todo) {
    const bytes = await job.render();
    const write: Promise<void> = writeFileAtomic(job.out, bytes).then(() => {
      pending.delete(write);
      done++;
      options.onProgress?.(done, jobs.length);
    });
    pending.add(write);
    if (pending.size >= maxWrites) await Promise.race(pending);
  }
  await Promise.all(pending);
  return { rendered: todo.length, reused };
}

/** Renders the jobs whose file is missing; returns how many were rendered and how many reused. */
export function renderAll(jobs: readonly RenderJob[], options: RenderOptions): Promise<{ rendered: number; reused: number }> {
  return writeMissingFiles(
    jobs.map((j) => ({ out: j.out, render: () => renderSvgPng(j.svg(), options.size) })),
    options,
  );
}

/**
 * The settings renders in a folder were made with. When a style's settings change (size, package version),
 * its old renders are removed before anything new is written, so a stale file can never pass for a fresh one.
 */
export interface RenderStamp {
  size: number;
  renderer: string;
  styles: Record<string, string>;
}

export async function prepareRenderDir(imagesDir: string, stamp: RenderStamp): Promise<void> {
  await mkdir(imagesDir, { recursive: true });
  const stampPath = join(imagesDir, 'render.json');
  let old: RenderStamp | undefined;
  try {
    old = JSON.parse(await readFile(stampPath, 'utf8')) as RenderStamp;
  } catch {
    old = undefined;
  }
  const merged: RenderStamp = { ...stamp, styles: { ...stamp.styles } };
  const sameBase = old !== undefined && old.size === stamp.size && old.renderer === stamp.renderer;
  if (old && sameBase) {
    // Keep stamps of styles rendered earlier and not asked for now: their files stay valid.
    for (const [style, version] of Object.entries(old.styles)) if (!(style in merged.styles)) merged.styles[style] = version;
  }
  for (const style of new Set([...Object.keys(stamp.styles), ...Object.keys(old?.styles ?? {})])) {
    const stale = !sameBase || old?.styles[style] !== stamp.styles[style];
    if (stale && style in stamp.styles) await rm(join(imagesDir, style), { recursive: true, force: true });
    if (!sameBase && !(style in stamp.styles)) await rm(join(imagesDir, style), { recursive: true, force: true });
  }
  await writeFileAtomic(stampPath, `${JSON.stringify(merged, null, 2)}\n`);
}
