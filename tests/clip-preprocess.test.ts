import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { CLIPImageProcessor, RawImage } from '@huggingface/transformers';
import { parsePreprocessConfig, preprocessImage } from '../src/clip/preprocess.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { makeTestImages } from './helpers/images.ts';

// The public openai/clip-vit-base-patch32 preprocessor_config.json.
const CLIP_B32 = {
  crop_size: { height: 224, width: 224 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_processor_type: 'CLIPImageProcessor',
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 224 },
};

const images = await makeTestImages();
const cfg = parsePreprocessConfig(CLIP_B32, 'preprocessor_config.json');

test('matches transformers.js CLIPImageProcessor on real images (shape equal, small mean abs difference)', async () => {
  const processor = new CLIPImageProcessor(CLIP_B32 as never);
  const diffs: Record<string, number> = {};
  for (const name of ['pngAlpha', 'jpegWide', 'webp', 'tall']) {
    const file = images.good[name]!;
    const ours = await preprocessImage(file, cfg);
    // transformers.js keeps alpha out by converting to RGB without compositing; give it the white-composited RGB.
    const rgb = await sharp(file).flatten({ background: '#ffffff' }).removeAlpha().png().toBuffer();
    const flat = join(images.dir, `${name}-flat.png`);
    writeFileSync(flat, rgb);
    const theirs = await processor(await RawImage.read(flat));
    const pv = theirs.pixel_values;
    assert.deepEqual(pv.dims, [1, 3, 224, 224]);
    assert.equal(ours.length, 3 * 224 * 224);
    let sum = 0;
    const data = pv.data as Float32Array;
    for (let i = 0; i < ours.length; i++) sum += Math.abs(ours[i]! - data[i]!);
    diffs[name] = sum / ours.length;
  }
  // Both use bicubic (Catmull-Rom); transformers.js resizes with sharp's affine (no antialiasing) where we use
  // a true reduction as PIL does, so strong downscales differ by a little in normalised units (std ≈ 0.27).
  process.stdout.write(`# mean |ours - transformers.js| in normalised units: ${JSON.stringify(diffs)}\n`);
  for (const [name, d] of Object.entries(diffs)) assert.ok(d < 0.05, `${name}: mean abs difference ${d}`);
});

test('composites alpha on white', async () => {
  const x = await preprocessImage(images.good.pngAlpha!, cfg);
  // The top-left corner of the emoji render is transparent → white → (1 - mean) / std per channel.
  for (let c = 0; c < 3; c++) {
    const white = (1 - CLIP_B32.image_mean[c]!) / CLIP_B32.image_std[c]!;
    assert.ok(Math.abs(x[c * 224 * 224]! - white) < 1e-5, `channel ${c}: ${x[c * 224 * 224]} vs ${white}`);
  }
});

test('decodes PNG, JPEG, WebP, GIF and SVG to the same-shaped tensor', async () => {
  for (const [name, file] of Object.entries(images.good)) {
    const x = await preprocessImage(file, cfg);
    assert.equal(x.length, 3 * 224 * 224, name);
    assert.ok(x.every(Number.isFinite), name);
  }
  // The GIF of the dog is close to its PNG (palette quantisation aside).
  const a = await preprocessImage(images.good.pngAlpha!, cfg);
  const b = await preprocessImage(images.good.gif!, cfg);
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  assert.ok(d / a.length < 0.1, `gif vs png ${d / a.length}`);
});

test('applies EXIF orientation', async () => {
  // The rotated JPEG displays as portrait: its preprocessed tensor equals that of the pixels rotated by hand.
  const upright = join(images.dir, 'upright.png');
  writeFileSync(upright, await sharp(images.good.exifRotated!).autoOrient().png().toBuffer());
  const meta = await sharp(upright).metadata();
  assert.ok(meta.height! > meta.width!, 'orientation 6 turns landscape into portrait');
  const a = await preprocessImage(images.good.exifRotated!, cfg);
  const b = await preprocessImage(upright, cfg);
  let d = 0;
  for (let i = 0; i < a.length; i++) d += Math.abs(a[i]! - b[i]!);
  assert.ok(d / a.length < 1e-6);
});

test('refuses empty, non-image and truncated files by name', async () => {
  for (const [name, file] of Object.entries(images.bad)) {
    await assert.rejects(preprocessImage(file, cfg), (e: unknown) => {
      assert.ok(e instanceof ClipDecoderError, name);
      assert.equal(e.code, 'IMAGE_INVALID', name);
      assert.ok(e.message.includes(file), `${name}: ${e.message}`);
      return true;
    });
  }
  await assert.rejects(preprocessImage(join(images.dir, 'nope.png'), cfg), /nope\.png: cannot read the file \(ENOENT\)/);
});

test('refuses images over the pixel limit by name', async () => {
  const big = join(images.dir, 'big.png');
  writeFileSync(
    big,
    await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#808080' } })
      .png()
      .toBuffer(),
  );
  await assert.rejects(preprocessImage(big, cfg, { pixelLimit: 4_000_000 }), (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError);
    assert.equal(e.code, 'IMAGE_TOO_LARGE');
    assert.match(e.message, /big\.png: 3000×3000 pixels exceeds the limit of 4000000/);
    return true;
  });
});

test('parses the older CLIPFeatureExtractor layout and rejects bad values', () => {
  const old = parsePreprocessConfig({ size: 224, crop_size: 224, resample: 3, feature_extractor_type: 'CLIPFeatureExtractor' }, 'p.json');
  assert.deepEqual(old.resize, { shortestEdge: 224 });
  assert.deepEqual(old.crop, { height: 224, width: 224 });
  assert.equal(old.kernel, 'cubic');
  assert.throws(() => parsePreprocessConfig({ size: -3 }, 'p.json'), /p\.json: "size" must be/);
  assert.throws(() => parsePreprocessConfig({ image_std: [1, 0, 1] }, 'p.json'), /zero/);
});
