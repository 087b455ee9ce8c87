import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, cpSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel, type ImageResult } from '../src/clip/model.ts';
import { embedLabels, validateLabels } from '../src/clip/prompts.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { makeTestImages } from './helpers/images.ts';
import { maxAbsDiff } from './helpers/assert-close.ts';

const FIXTURE = 'tests/fixtures/tiny-clip';
type T = { shape: number[]; data: number[] };
const ref = JSON.parse(readFileSync('tests/fixtures/tiny-clip-reference.json', 'utf8')) as {
  vision: { pixel_values: T; image_embeds: T; last_hidden_state: T };
  text: { texts: string[]; input_ids: T; text_embeds: T };
};

const model = await ClipModel.load(FIXTURE, { threads: 1 });

test('patch tokens and image embeddings match PyTorch (≤ 1e-4), CLS dropped by default', async () => {
  const { pixel_values, image_embeds, last_hidden_state } = ref.vision;
  const B = pixel_values.shape[0]!;
  const out = await model.encodePixels(Float32Array.from(pixel_values.data), B);
  assert.equal(model.numTokens, 16);
  assert.equal(model.tokenDim, 32);
  assert.ok(maxAbsDiff(out.imageEmbeds, image_embeds.data) <= 1e-4);
  // Reference [B, 17, 32] with CLS first → ours [B, 16, 32].
  const [, T1, C] = last_hidden_state.shape as [number, number, number];
  const noCls: number[] = [];
  for (let b = 0; b < B; b++) noCls.push(...last_hidden_state.data.slice((b * T1 + 1) * C, (b + 1) * T1 * C));
  assert.ok(maxAbsDiff(out.tokens, noCls) <= 1e-4);

  const withCls = await ClipModel.load(FIXTURE, { keepCls: true, threads: 1 });
  const out2 = await withCls.encodePixels(Float32Array.from(pixel_values.data), B);
  assert.equal(withCls.numTokens, 17);
  assert.ok(maxAbsDiff(out2.tokens, last_hidden_state.data) <= 1e-4);
  await withCls.dispose();
});

test('text embeddings and token ids match PyTorch (≤ 1e-4)', async () => {
  const { texts, input_ids, text_embeds } = ref.text;
  const tok = model.tokenize(texts);
  assert.deepEqual(Array.from(tok.ids, Number), input_ids.data);
  const emb = await model.encodeTexts(texts);
  assert.ok(maxAbsDiff(emb, text_embeds.data) <= 1e-4, `max diff ${maxAbsDiff(emb, text_embeds.data)}`);
  // Batching does not change results.
  const one = await model.encodeTexts([texts[1]!]);
  assert.ok(maxAbsDiff(one, text_embeds.data.slice(16, 32)) <= 1e-4);
});

test('prompt templates: default template, ensembling, L2-normalisation', async () => {
  const single = await embedLabels(model, ['dog', 'cat']);
  const manual = await model.encodeTexts(['a photo of dog', 'a photo of cat']);
  for (let i = 0; i < 2; i++) {
    const v = manual.subarray(i * 16, (i + 1) * 16);
    const n = Math.hypot(...v);
    assert.ok(
      maxAbsDiff(
        single.subarray(i * 16, (i + 1) * 16),
        Array.from(v, (x) => x / n),
      ) < 1e-6,
    );
  }
  const templates = ['a photo of {label}', 'a drawing of a {label}'];
  const ens = await embedLabels(model, ['dog'], { templates });
  const parts = await model.encodeTexts(['a photo of dog', 'a drawing of a dog']);
  const a = parts.subarray(0, 16),
    b = parts.subarray(16, 32);
  const na = Math.hypot(...a),
    nb = Math.hypot(...b);
  const avg = Array.from(a, (x, j) => x / na + b[j]! / nb);
  const navg = Math.hypot(...avg);
  assert.ok(
    maxAbsDiff(
      ens,
      avg.map((x) => x / navg),
    ) < 1e-6,
  );
  const raw = await embedLabels(model, ['dog'], { templates, normalize: false });
  assert.ok(
    maxAbsDiff(
      raw,
      Array.from(a, (x, j) => (x + b[j]!) / 2),
    ) < 1e-6,
  );
  await assert.rejects(embedLabels(model, ['dog'], { templates: ['no placeholder'] }), /has no \{label\} placeholder/);
});

test('label lists are validated by name', () => {
  assert.throws(() => validateLabels([]), /label list is empty/);
  assert.throws(() => validateLabels(['dog', ' ']), /label 2 is blank/);
  assert.throws(() => validateLabels(['dog', 'cat', 'dog']), /label "dog" appears twice/);
});

test('a batch with bad files encodes the good ones, in order, and names the bad ones', async () => {
  const imgs = await makeTestImages();
  const files = [imgs.good.pngAlpha!, imgs.bad.text!, imgs.good.jpegWide!, imgs.bad.empty!, imgs.good.svg!, join(imgs.dir, 'missing.png')];
  const results: ImageResult[] = [];
  for await (const r of model.encodeImages(files, { batchSize: 4 })) results.push(r);
  assert.deepEqual(
    results.map((r) => r.index),
    [0, 1, 2, 3, 4, 5],
  );
  assert.deepEqual(
    results.map((r) => (r.error ? r.error.code : 'ok')),
    ['ok', 'IMAGE_INVALID', 'ok', 'IMAGE_INVALID', 'ok', 'IMAGE_INVALID'],
  );
  assert.ok(results[1]!.error!.message.includes(files[1]!));
  // Each good image's encoding equals what a batch of one gives.
  for (const i of [0, 2, 4]) {
    const r = results[i]!;
    assert.ok(!r.error);
    let solo: ImageResult | undefined;
    for await (const s of model.encodeImages([files[i]!])) solo = s;
    assert.ok(solo && !solo.error);
    assert.ok(maxAbsDiff(r.tokens, solo.tokens) < 1e-5);
    assert.ok(maxAbsDiff(r.imageEmbed, solo.imageEmbed) < 1e-5);
    assert.equal(r.tokens.length, 16 * 32);
  }
});

test('a model whose graph lacks an output is refused by name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'clip-out-'));
  cpSync(FIXTURE, dir, { recursive: true });
  const m = await ClipModel.load(dir, { outputs: { imageEmbeds: 'pooled_output' }, threads: 1 });
  await assert.rejects(m.encodePixels(new Float32Array(3 * 32 * 32), 1), (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError);
    assert.equal(e.code, 'MODEL_OUTPUT_MISSING');
    assert.match(e.message, /vision_model\.onnx: has no output "pooled_output" \(it has: .*image_embeds/);
    return true;
  });
  writeFileSync(join(dir, 'onnx/vision_model.onnx'), 'garbage');
  const broken = await ClipModel.load(dir, { threads: 1 });
  await assert.rejects(broken.encodePixels(new Float32Array(3 * 32 * 32), 1), /vision_model\.onnx: ONNX Runtime cannot load it/);
  await m.dispose();
});

test('a text longer than the model takes is truncated but still ends with <|endoftext|>', async () => {
  const long = Array.from({ length: 60 }, (_, i) => `word${i} xylophone`).join(' ');
  const { ids, mask, length } = model.tokenize([long, 'dog']);
  assert.equal(length, 77);
  assert.equal(Number(ids[76]), 999, 'EOS at the end of the truncated row');
  assert.equal(Number(ids[0]), 998);
  assert.equal(
    mask.slice(0, 77).every((m) => m === 1n),
    true,
  );
  // The short row keeps its own EOS and padding.
  const row = Array.from(ids.slice(77, 154), Number);
  assert.equal(row[row.indexOf(999)], 999);
  const emb = await model.encodeTexts([long]);
  assert.ok(emb.every(Number.isFinite));
});
