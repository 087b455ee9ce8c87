// The committed tiny CLIP fixture (tests/fixtures/tiny-clip, written by tools/make_clip.py) against the outputs
// PyTorch computed for it (tests/fixtures/tiny-clip-reference.json). Runs the ONNX files with onnxruntime-node
// and the tokenizer with transformers.js directly, so a failure here is the fixture's, not the project's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { AutoTokenizer, CLIPTokenizer, env } from '@huggingface/transformers';
import { maxAbsDiff } from './helpers/assert-close.ts';
import { REQUIRED_FILES } from '../src/clip/folder.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const DIR = join(FIXTURES, 'tiny-clip');
const ATOL = 1e-4;

interface Flat {
  shape: number[];
  data: number[];
}
interface Reference {
  eos_token_id: number;
  pad_token_id: number;
  tokenizer_cases: { text: string; ids: number[] }[];
  vision: { pixel_values: Flat; image_embeds: Flat; last_hidden_state: Flat };
  text: { texts: string[]; input_ids: Flat; attention_mask: Flat; text_embeds: Flat; last_hidden_state: Flat };
}

const ref = JSON.parse(readFileSync(join(FIXTURES, 'tiny-clip-reference.json'), 'utf8')) as Reference;

function int64(flat: Flat): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(flat.data, (x) => BigInt(x)),
    flat.shape,
  );
}

function folderBytes(dir: string): number {
  let n = 0;
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const s = statSync(p);
    n += s.isDirectory() ? folderBytes(p) : s.size;
  }
  return n;
}

test('tiny-clip folder holds the Hugging Face CLIP files and stays under 2 MB', () => {
  for (const f of REQUIRED_FILES) {
    assert.ok(statSync(join(DIR, f)).isFile(), f);
  }
  const bytes = folderBytes(DIR);
  assert.ok(bytes <= 2 * 1024 * 1024, `tiny-clip is ${bytes} bytes`);
  const config = JSON.parse(readFileSync(join(DIR, 'config.json'), 'utf8'));
  assert.equal(config.model_type, 'clip');
  assert.equal(config.text_config.eos_token_id, ref.eos_token_id);
  const pre = JSON.parse(readFileSync(join(DIR, 'preprocessor_config.json'), 'utf8'));
  assert.equal(pre.crop_size.height, config.vision_config.image_size);
  assert.notEqual(pre.size.shortest_edge, pre.crop_size.height, 'resize and crop should both do something');
});

test('vision ONNX matches PyTorch (image_embeds, last_hidden_state), at batch 2 and batch 1', async () => {
  const session = await ort.InferenceSession.create(join(DIR, 'onnx/vision_model.onnx'));
  const px = ref.vision.pixel_values; // [2, 3, 32, 32]
  const out = await session.run({ pixel_values: new ort.Tensor('float32', Float32Array.from(px.data), px.shape) });
  assert.deepEqual(out.image_embeds.dims, ref.vision.image_embeds.shape);
  assert.deepEqual(out.last_hidden_state.dims, ref.vision.last_hidden_state.shape);
  const dEmb = maxAbsDiff(out.image_embeds.data as Float32Array, ref.vision.image_embeds.data);
  const dHid = maxAbsDiff(out.last_hidden_state.data as Float32Array, ref.vision.last_hidden_state.data);
  assert.ok(dEmb < ATOL, `image_embeds max abs diff ${dEmb}`);
  assert.ok(dHid < ATOL, `last_hidden_state max abs diff ${dHid}`);

  // dynamic batch: the second image alone gives the second row
  const per = px.data.length / px.shape[0];
  const one = await session.run({
    pixel_values: new ort.Tensor('float32', Float32Array.from(px.data.slice(per)), [1, ...px.shape.slice(1)]),
  });
  const E = ref.vision.image_embeds.shape[1];
  const d1 = maxAbsDiff(one.image_embeds.data as Float32Array, ref.vision.image_embeds.data.slice(E));
  assert.ok(d1 < ATOL, `batch-1 image_embeds max abs diff ${d1}`);
  await session.release();
});

test('text ONNX matches PyTorch (text_embeds, last_hidden_state); padding does not change an embedding', async () => {
  const session = await ort.InferenceSession.create(join(DIR, 'onnx/text_model.onnx'));
  const t = ref.text;
  const out = await session.run({ input_ids: int64(t.input_ids), attention_mask: int64(t.attention_mask) });
  assert.deepEqual(out.text_embeds.dims, t.text_embeds.shape);
  const dEmb = maxAbsDiff(out.text_embeds.data as Float32Array, t.text_embeds.data);
  const dHid = maxAbsDiff(out.last_hidden_state.data as Float32Array, t.last_hidden_state.data);
  assert.ok(dEmb < ATOL, `text_embeds max abs diff ${dEmb}`);
  assert.ok(dHid < ATOL, `last_hidden_state max abs diff ${dHid}`);

  // the first text unpadded, alone: same embedding as its padded row (pooled at EOS, causal mask)
  const [B, L] = t.input_ids.shape;
  assert.ok(B >= 2);
  const len = t.attention_mask.data.slice(0, L).reduce((a, b) => a + b, 0);
  assert.ok(len < L, 'the first reference text should be padded');
  const ids = t.input_ids.data.slice(0, len);
  const alone = await session.run({
    input_ids: int64({ shape: [1, len], data: ids }),
    attention_mask: int64({ shape: [1, len], data: ids.map(() => 1) }),
  });
  const E = t.text_embeds.shape[1];
  const d1 = maxAbsDiff(alone.text_embeds.data as Float32Array, t.text_embeds.data.slice(0, E));
  assert.ok(d1 < ATOL, `unpadded text_embeds max abs diff ${d1}`);
  await session.release();
});

test('transformers.js tokenizer loaded from the folder gives the reference ids, unseen words included', async () => {
  env.allowRemoteModels = false; // an absolute folder path loads locally; never reach for the hub
  const tokenizer = await AutoTokenizer.from_pretrained(DIR);
  for (const { text, ids } of ref.tokenizer_cases) {
    const got = Array.from(tokenizer(text).input_ids.data as BigInt64Array, Number);
    assert.deepEqual(got, ids, JSON.stringify(text));
    assert.ok(!got.slice(1, -1).includes(ref.eos_token_id), `${JSON.stringify(text)} has an unknown token`);
  }

  // batch padding to the longest, with EOS as the pad token, as the reference batch was built
  const batch = tokenizer(ref.text.texts, { padding: true });
  assert.deepEqual(batch.input_ids.dims, ref.text.input_ids.shape);
  assert.deepEqual(Array.from(batch.input_ids.data as BigInt64Array, Number), ref.text.input_ids.data);
  assert.deepEqual(Array.from(batch.attention_mask.data as BigInt64Array, Number), ref.text.attention_mask.data);

  // the same from the parsed files, with no global setting involved
  const direct = new (CLIPTokenizer as unknown as new (json: unknown, config: unknown) => CLIPTokenizer)(
    JSON.parse(readFileSync(join(DIR, 'tokenizer.json'), 'utf8')),
    JSON.parse(readFileSync(join(DIR, 'tokenizer_config.json'), 'utf8')),
  );
  for (const { text, ids } of ref.tokenizer_cases) {
    assert.deepEqual(Array.from(direct(text).input_ids.data as BigInt64Array, Number), ids, JSON.stringify(text));
  }
});
