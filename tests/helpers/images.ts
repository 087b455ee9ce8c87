// Real test images made on the fly: emoji drawings from the Noto set (rendered with resvg), written in every
// format the decoder must read, plus broken files. Nothing here is committed.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { Resvg } from '@resvg/resvg-js';
import sharp from 'sharp';

const require = createRequire(import.meta.url);

/** Noto emoji SVG source by icon name (e.g. "dog-face"). */
export function notoSvg(name: string): string {
  const set = JSON.parse(readFileSync(require.resolve('@iconify-json/noto/icons.json'), 'utf8')) as {
    icons: Record<string, { body: string; width?: number; height?: number }>;
    width?: number;
    height?: number;
  };
  const icon = set.icons[name];
  if (!icon) throw new Error(`no noto icon ${name}`);
  const w = icon.width ?? set.width ?? 16;
  const h = icon.height ?? set.height ?? 16;
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}">${icon.body}</svg>`;
}

export function renderPng(svg: string, width: number): Buffer {
  return Buffer.from(new Resvg(svg, { fitTo: { mode: 'width', value: width } }).render().asPng());
}

export interface TestImages {
  dir: string;
  /** Good images by description. */
  good: Record<string, string>;
  /** Files that must be refused, by description. */
  bad: Record<string, string>;
}

export async function makeTestImages(): Promise<TestImages> {
  const dir = mkdtempSync(join(tmpdir(), 'clip-decoder-img-'));
  const dog = renderPng(notoSvg('dog-face'), 300);
  const pizza = renderPng(notoSvg('pizza'), 360);
  const good: Record<string, string> = {};
  const bad: Record<string, string> = {};
  const put = (name: string, data: Buffer | string) => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };
  good.pngAlpha = put('dog.png', dog);
  // A wide photo-like JPEG (emoji on a gradient), non-square so resize + crop both matter.
  const grad = await sharp({ create: { width: 640, height: 400, channels: 3, background: { r: 30, g: 120, b: 200 } } })
    .composite([{ input: pizza, left: 140, top: 20 }])
    .jpeg({ quality: 90 })
    .toBuffer();
  good.jpegWide = put('pizza.jpg', grad);
  good.webp = put('dog.webp', await sharp(dog).webp({ quality: 90 }).toBuffer());
  good.gif = put('dog.gif', await sharp(dog).gif().toBuffer());
  good.tall = put('pizza-tall.png', await sharp(pizza).resize(200, 450, { fit: 'fill' }).png().toBuffer());
  good.svg = put('dog.svg', notoSvg('dog-face'));
  // EXIF orientation 6 (rotate 90° clockwise to display) on a landscape JPEG.
  good.exifRotated = put('rotated.jpg', await sharp(grad).withMetadata({ orientation: 6 }).jpeg().toBuffer());
  bad.empty = put('empty.png', Buffer.alloc(0));
  bad.text = put('notes.jpg', 'this is not an image\n');
  bad.truncated = put('truncated.jpg', grad.subarray(0, Math.floor(grad.length / 2)));
  return { dir, good, bad };
}
