// The in-browser page's pure functions (src/web/assets/lib.js) against the library they stand in for: the
// resize against sharp (what src/clip/preprocess.ts runs), the whole preprocessing against preprocessImage,
// token batches against ClipModel.tokenize, the prompt ensemble against embedLabels' arithmetic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import sharp from 'sharp';
import { ClipModel } from '../src/clip/model.ts';
import { parsePreprocessConfig, preprocessImage } from '../src/clip/preprocess.ts';
import { TextTokenizer } from '../src/clip/tokenizer.ts';
import { preprocessRgb, resizeRgb, tokenBatch } from '../src/web/assets/lib.js';
import { notoSvg, renderPng } from './helpers/images.ts';
import { TINY_CLIP } from './helpers/tiny-head.ts';

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d;
}

test('resizeRgb shrinks as sharp does (cubic): within 1–2 levels up to 4.2× (box pre-shrink included), 8 at 10×', async () => {
  const w = 200,
    h = 150;
  const { data } = await sharp(renderPng(notoSvg('pizza'), w))
    .resize({ width: w, height: h, fit: 'fill' })
    .flatten({ background: '#fff' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  const seen: string[] = [];
  let ok = true;
  // [out size, max levels, mean levels]: measured bounds; the 10× case keeps a residual (a 5-pixel box, then
  // the filter at exactly 2×) that this model of libvips does not explain
  for (const [ow, oh, maxLevels, meanLevels] of [
    [85, 64, 1, 0.05], // 2.3×: the filter alone
    [48, 36, 2, 0.1], // 4.2×: a 2-pixel box first
    [20, 15, 8, 0.3], // 10×: a 5-pixel box first
  ] as const) {
    const want = await sharp(data, { raw: { width: w, height: h, channels: 3 } })
      .resize({ width: ow, height: oh, fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer();
    const got = resizeRgb(data, w, h, ow, oh, 'cubic');
    const d = maxDiff(got, want);
    let mean = 0;
    for (let i = 0; i < got.length; i++) mean += Math.abs(got[i]! - want[i]!) / got.length;
    // sharp's fixed-point coefficients round differently from these floating-point ones
    seen.push(`${w}×${h} → ${ow}×${oh}: max ${d} levels, mean ${mean.toFixed(3)}`);
    ok &&= d <= maxLevels && mean <= meanLevels;
  }
  console.log(seen.join('; '));
  assert.ok(ok, seen.join('; '));
});

test('preprocessRgb gives the tensor preprocessImage gives, within 2 levels of 8 bits', async () => {
  const pre = parsePreprocessConfig(
    { size: { shortest_edge: 36 }, crop_size: { height: 32, width: 32 }, do_center_crop: true, resample: 3 },
    'preprocessor_config.json',
  );
  const level = 1 / 255 / Math.min(...pre.std);
  for (const [w, h] of [
    [200, 150],
    [150, 200],
    [64, 64],
  ] as const) {
    const png = await sharp(renderPng(notoSvg('sun'), Math.max(w, h)))
      .resize({ width: w, height: h, fit: 'fill' })
      .png()
      .toBuffer();
    const { data } = await sharp(png).flatten({ background: '#fff' }).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    const d = maxDiff(preprocessRgb(data, w, h, pre), await preprocessImage(png, pre));
    assert.ok(d <= 2 * level + 1e-6, `${w}×${h}: ${d / level} levels`);
  }
});

test('tokenBatch builds the text model inputs ClipModel.tokenize builds (padding, truncation, end token)', async () => {
  const model = await ClipModel.load(TINY_CLIP, { threads: 1 });
  const f = model.folder;
  const tok = new TextTokenizer(f.tokenizerJSON, f.tokenizerConfig, 'tokenizer.json');
  const texts = ['a photo of dog', 'a photo of a slice of cheese pizza', Array.from({ length: 120 }, () => 'sun').join(' ')];
  const want = model.tokenize(texts);
  const got = tokenBatch(
    texts.map((t) => tok.encode(t)),
    {
      maxLength: Math.min(f.textMaxLength, tok.modelMaxLength),
      padding: f.spec.padding,
      padId: tok.padId,
      padLeft: tok.padLeft,
      eosId: tok.eosId,
    },
  );
  assert.equal(got.length, want.length);
  assert.deepEqual(got.ids, want.ids);
  assert.deepEqual(got.mask, want.mask);
  await model.dispose();
});
