// The shipped pico-CLIP folder: loads with the standard loader, describes itself consistently, fits the size
// budget, and onnxruntime-node reproduces the PyTorch outputs recorded in models/pico-clip/reference.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ClipModel } from '../src/clip/model.ts';
import { embedLabels } from '../src/clip/prompts.ts';

const DIR = 'models/pico-clip';
const json = (f: string) => JSON.parse(readFileSync(join(DIR, f), 'utf8'));

interface Flat {
  shape: number[];
  data: number[];
}
interface Reference {
  vision: { pixel_values: Flat; image_embeds: Flat; last_hidden_state_first_rows: Flat };
  text: { texts: string[]; input_ids: Flat; text_embeds: Flat };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    n += statSync(p).isDirectory() ? folderBytes(p) : statSync(p).size;
  }
  return n;
}

test('pico-clip: config and preprocessor describe the graph; the folder is at most 32 MB', async () => {
  const cfg = json('config.json');
  const pre = json('preprocessor_config.json');
  const v = cfg.vision_config;
  assert.equal(pre.crop_size.height, v.image_size);
  assert.equal(pre.crop_size.width, v.image_size);
  assert.equal(pre.size.shortest_edge, v.image_size);
  const model = await ClipModel.load(DIR, { threads: 1, keepCls: true });
  try {
    const S = v.image_size;
    const { tokens } = await model.encodePixels(new Float32Array(2 * 3 * S * S), 2);
    const T = (S / v.patch_size) ** 2;
    assert.equal(model.numTokens, T + 1, 'the graph emits (image_size / patch_size)^2 patch tokens + CLS');
    assert.equal(tokens.length, 2 * (T + 1) * v.hidden_size);
    assert.equal(model.embedDim, cfg.projection_dim);
  } finally {
    await model.dispose();
  }
  assert.ok(folderBytes(DIR) <= 32 * 1024 * 1024, `models/pico-clip holds ${folderBytes(DIR)} bytes`);
});

test('pico-clip: onnxruntime-node reproduces PyTorch (images, tokens, texts)', async () => {
  const ref = json('reference.json') as Reference;
  const model = await ClipModel.load(DIR, { threads: 1, keepCls: true });
  try {
    const px = ref.vision.pixel_values;
    const B = px.shape[0]!;
    const { tokens, imageEmbeds } = await model.encodePixels(Float32Array.from(px.data), B);
    assert.ok(maxAbsDiff(imageEmbeds, ref.vision.image_embeds.data) < 1e-4, 'image_embeds differ');
    const [, rows, C] = ref.vision.last_hidden_state_first_rows.shape as [number, number, number];
    const T = model.numTokens;
    const got: number[] = [];
    for (let b = 0; b < B; b++) got.push(...tokens.subarray(b * T * C, (b * T + rows) * C));
    assert.ok(maxAbsDiff(got, ref.vision.last_hidden_state_first_rows.data) < 1e-4, 'last_hidden_state differs');

    // the transformers.js tokenizer gives PyTorch's ids, and the text tower its embeddings
    const { ids, length } = model.tokenize(ref.text.texts);
    const refIds = ref.text.input_ids;
    assert.equal(length, refIds.shape[1]);
    assert.deepEqual(Array.from(ids, Number), refIds.data);
    const te = await model.encodeTexts(ref.text.texts);
    assert.ok(maxAbsDiff(te, ref.text.text_embeds.data) < 1e-4, 'text_embeds differ');
  } finally {
    await model.dispose();
  }
});

test('pico-clip: label embeddings are unit vectors and unseen words still embed', async () => {
  const model = await ClipModel.load(DIR, { threads: 1 });
  try {
    const e = await embedLabels(model, ['dog', 'quixotic zyzzyva']);
    const E = model.embedDim;
    for (let r = 0; r < 2; r++) {
      let s = 0;
      for (let k = 0; k < E; k++) s += e[r * E + k]! ** 2;
      assert.ok(Math.abs(s - 1) < 1e-5);
    }
  } finally {
    await model.dispose();
  }
});

test('pico-clip: patch_embeds are the tokens through the image head (its CLS row is image_embeds)', async () => {
  const v = json('config.json').vision_config;
  const model = await ClipModel.load(DIR, { threads: 1, keepCls: true, outputs: { patchTokens: 'patch_embeds' } });
  try {
    const S = v.image_size;
    const pixels = Float32Array.from({ length: 2 * 3 * S * S }, (_, i) => Math.sin(i * 0.37));
    const { tokens, imageEmbeds } = await model.encodePixels(pixels, 2);
    const E = model.embedDim;
    const T = model.numTokens;
    assert.equal(T, (S / v.patch_size) ** 2 + 1);
    assert.equal(tokens.length, 2 * T * E, 'patch_embeds is [B, 1 + patches, projection_dim]');
    for (let b = 0; b < 2; b++) {
      assert.ok(maxAbsDiff(tokens.subarray(b * T * E, b * T * E + E), imageEmbeds.subarray(b * E, (b + 1) * E)) < 1e-4);
    }
  } finally {
    await model.dispose();
  }
});
