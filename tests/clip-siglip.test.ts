// SigLIP folders (transformers.js layout) against PyTorch: tests/fixtures/tiny-siglip is a random SigLIP written
// by tools/make_siglip.py with HF SiglipModel's math; tiny-siglip-reference.json holds PyTorch's outputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../src/clip/model.ts';
import { openClipFolder } from '../src/clip/folder.ts';
import { readLogitTensors } from '../src/clip/logits.ts';
import { embedLabels } from '../src/clip/prompts.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { encodeSafetensors } from '../src/train/safetensors.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { trainTinyHead } from './helpers/tiny-head.ts';
import { notoSvg, renderPng } from './helpers/images.ts';
import { maxAbsDiff } from './helpers/assert-close.ts';

const DIR = 'tests/fixtures/tiny-siglip';
interface Flat {
  shape: number[];
  data: number[];
}
const ref = JSON.parse(readFileSync('tests/fixtures/tiny-siglip-reference.json', 'utf8')) as {
  logit_scale: number;
  logit_bias: number;
  tokenizer_cases: { text: string; ids: number[] }[];
  vision: { pixel_values: Flat; last_hidden_state: Flat; pooler_output: Flat };
  text: { texts: string[]; input_ids: Flat; last_hidden_state: Flat; pooler_output: Flat };
  logits_per_image: Flat;
  probabilities: Flat;
};

const rejectsWith = (code: string, message: RegExp) => (e: unknown) =>
  e instanceof ClipDecoderError && e.code === code && message.test(e.message);

function copyFixture(): string {
  const dir = mkdtempSync(join(tmpdir(), 'siglip-'));
  cpSync(DIR, dir, { recursive: true });
  return dir;
}

test('a SigLIP folder opens as SigLIP: no [CLS], pooled outputs, squash resize, mean/std 0.5, text length 16', async () => {
  const f = await openClipFolder(DIR);
  assert.equal(f.spec.family, 'siglip');
  assert.equal(f.spec.hasCls, false);
  assert.deepEqual(f.imageSize, { height: 32, width: 32 });
  assert.equal(f.preprocess.doCenterCrop, false);
  assert.deepEqual(f.preprocess.resize, { height: 32, width: 32 });
  assert.deepEqual(f.preprocess.mean, [0.5, 0.5, 0.5]);
  assert.deepEqual(f.preprocess.std, [0.5, 0.5, 0.5]);
  assert.equal(f.textMaxLength, 16);
  assert.equal(f.projectionDim, 32);
});

test('the SentencePiece (Unigram) tokenizer gives the reference ids and pads to the model length with </s>', async () => {
  const model = await ClipModel.load(DIR, { threads: 1 });
  for (const c of ref.tokenizer_cases) {
    if (c.text === '') continue; // an empty text is one </s>, checked padded below
    const { ids, mask, length } = model.tokenize([c.text]);
    assert.equal(length, 16);
    assert.deepEqual(Array.from(ids.subarray(0, c.ids.length), Number), c.ids, c.text);
    assert.ok(
      Array.from(ids.subarray(c.ids.length), Number).every((x) => x === 1),
      `${c.text}: padded with </s>`,
    );
    assert.equal(Array.from(mask, Number).filter((x) => x === 1).length, c.ids.length);
  }
  const { ids } = model.tokenize(ref.text.texts);
  assert.deepEqual(Array.from(ids, Number), ref.text.input_ids.data);
  await model.dispose();
});

test('vision tower: every patch token and the MAP-pooled embedding match PyTorch to 1e-4', async (t) => {
  const model = await ClipModel.load(DIR, { threads: 1 });
  assert.equal(model.numTokens, 16);
  const px = Float32Array.from(ref.vision.pixel_values.data);
  const { tokens, imageEmbeds } = await model.encodePixels(px, 2);
  assert.equal(model.numTokens, 16); // all 16 patches: nothing dropped as a [CLS]
  const dt = maxAbsDiff(tokens, ref.vision.last_hidden_state.data);
  const de = maxAbsDiff(imageEmbeds, ref.vision.pooler_output.data);
  assert.ok(dt <= 1e-4 && de <= 1e-4, `tokens ${dt}, embeds ${de}`);
  t.diagnostic(`vision max |Δ|: patch tokens ${dt.toExponential(2)}, pooled embeds ${de.toExponential(2)}`);
  await model.dispose();
});

test('text tower (last position → head) matches PyTorch to 1e-4', async (t) => {
  const model = await ClipModel.load(DIR, { threads: 1 });
  const emb = await model.encodeTexts(ref.text.texts);
  const d = maxAbsDiff(emb, ref.text.pooler_output.data);
  assert.ok(d <= 1e-4, `text embeds ${d}`);
  t.diagnostic(`text max |Δ|: pooled embeds ${d.toExponential(2)}`);
  await model.dispose();
});

test("plain scoring uses the checkpoint's own logit scale and bias (from onnx/model.onnx) and SigLIP's sigmoid", async (t) => {
  const model = await ClipModel.load(DIR, { threads: 1 });
  const p = await model.logitParams();
  assert.equal(p.source, 'onnx/model.onnx');
  assert.ok(Math.abs(p.scale - ref.logit_scale) <= 1e-4 && Math.abs(p.bias - ref.logit_bias) <= 1e-4, JSON.stringify(p));
  const logits = await model.plainLogits(Float32Array.from(ref.vision.pooler_output.data), Float32Array.from(ref.text.pooler_output.data));
  const dl = maxAbsDiff(logits, ref.logits_per_image.data);
  assert.ok(dl <= 1e-4, `logits ${dl}`);
  const probs = Array.from(logits, (x) => 1 / (1 + Math.exp(-x)));
  const dp = maxAbsDiff(probs, ref.probabilities.data);
  assert.ok(dp <= 1e-5, `probabilities ${dp}`);
  t.diagnostic(
    `scale ${p.scale.toFixed(6)} (ref ${ref.logit_scale.toFixed(6)}), bias ${p.bias.toFixed(6)} (ref ${ref.logit_bias.toFixed(6)}); max |Δ| logits ${dl.toExponential(2)}, probabilities ${dp.toExponential(2)}`,
  );
  await model.dispose();
});

test('logit scale and bias from model.safetensors, from options, or a clear error when the folder has neither', async () => {
  const dir = copyFixture();
  rmSync(join(dir, 'onnx/model.onnx'));
  await assert.rejects(
    (await ClipModel.load(dir)).logitParams(),
    rejectsWith('MODEL_NOT_FOUND', /needs onnx\/model\.onnx or model\.safetensors/),
  );
  await assert.rejects(Tagger.load({ model: dir, head: 'none' }), rejectsWith('MODEL_NOT_FOUND', /logit scale and bias/));
  const given = await (await ClipModel.load(dir, { logit: { scale: 3, bias: -1 } })).logitParams();
  assert.deepEqual(given, { scale: 3, bias: -1, source: 'options' });
  // HF stores log(scale); a stray big tensor in the file is not read.
  writeFileSync(
    join(dir, 'model.safetensors'),
    encodeSafetensors([
      ['logit_bias', { shape: [1], data: new Float32Array([-7.25]) }],
      ['logit_scale', { shape: [1], data: new Float32Array([Math.log(12.5)]) }],
      ['text_model.head.weight', { shape: [32, 32], data: new Float32Array(1024) }],
    ]),
  );
  const st = await (await ClipModel.load(dir)).logitParams();
  assert.equal(st.source, 'model.safetensors');
  assert.ok(Math.abs(st.scale - 12.5) < 1e-5 && st.bias === -7.25, JSON.stringify(st));
  rmSync(dir, { recursive: true, force: true });
});

test('--dtype picks the _fp16 (float16 inputs/outputs) and _quantized variants; a missing variant is named', async (t) => {
  const px = Float32Array.from(ref.vision.pixel_values.data);
  const fp32 = await ClipModel.load(DIR, { threads: 1 });
  const base = await fp32.encodePixels(px, 2);
  for (const [dtype, tol] of [
    ['fp16', 0.02],
    ['q8', 0.15],
  ] as const) {
    const model = await ClipModel.load(DIR, { threads: 1, dtype });
    assert.match(model.folder.visionModelPath, dtype === 'fp16' ? /vision_model_fp16\.onnx$/ : /vision_model_quantized\.onnx$/);
    const { imageEmbeds } = await model.encodePixels(px, 2);
    const d = maxAbsDiff(imageEmbeds, ref.vision.pooler_output.data);
    assert.ok(d > 0 && d <= tol, `${dtype}: max |Δ| ${d} vs fp32 PyTorch (tolerance ${tol})`);
    assert.notDeepEqual(Array.from(imageEmbeds), Array.from(base.imageEmbeds), `${dtype} ran the fp32 file`);
    const txt = await model.encodeTexts(ref.text.texts);
    const dtText = maxAbsDiff(txt, ref.text.pooler_output.data);
    assert.ok(dtText <= tol, `${dtype} text: ${dtText}`);
    t.diagnostic(`${dtype}: max |Δ| vs PyTorch fp32: image embeds ${d.toExponential(2)}, text embeds ${dtText.toExponential(2)}`);
    await model.dispose();
  }
  await fp32.dispose();
  await assert.rejects(
    ClipModel.load(DIR, { dtype: 'q4' }),
    rejectsWith('MODEL_NOT_FOUND', /vision_model_q4\.onnx: missing \(--dtype q4 reads the _q4 variant/),
  );
});

test('a folder of another model_type is refused with the type named and the supported list; a foreign tokenizer too', async () => {
  const dir = copyFixture();
  const cfgPath = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, model_type: 'blip' }));
  await assert.rejects(
    openClipFolder(dir),
    rejectsWith('MODEL_UNSUPPORTED', /config\.json: model_type "blip" is not supported; supported: clip, siglip$/),
  );
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, model_type: 'siglip2' }));
  await assert.rejects(
    openClipFolder(dir),
    rejectsWith('MODEL_UNSUPPORTED', /"siglip2" is not supported \(SigLIP 2 NaFlex.*supported: clip, siglip$/),
  );
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, text_config: { ...cfg.text_config, vocab_size: 50 } }));
  await assert.rejects(
    openClipFolder(dir),
    rejectsWith('MODEL_INVALID', /tokenizer\.json: has token ids up to 115 but .*vocab_size = 50: the tokenizer does not belong/),
  );
  rmSync(dir, { recursive: true, force: true });
});

test('`Tagger` with head "none" gives sigmoid(s·cos + b) per label; CLIP gets its temperature and no bias', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'siglip-img-'));
  const img = join(dir, 'dog.png');
  writeFileSync(img, renderPng(notoSvg('dog-face'), 80));
  const labels = ['dog', 'cat', 'sunset'];
  const tagger = await Tagger.load({ model: DIR, head: 'none', threads: 1 });
  assert.equal(tagger.head, null);
  const r = await tagger.tag(img, labels);
  // The same by hand: encode, embed with the default template, s·cos + b, sigmoid.
  const model = tagger.model;
  let imageEmbed: Float32Array | undefined;
  for await (const x of model.encodeImages([img])) if (!x.error) imageEmbed = x.imageEmbed;
  const text = await embedLabels(model, labels);
  const logits = await model.plainLogits(imageEmbed!, text);
  for (const l of r.labels) {
    const want = 1 / (1 + Math.exp(-logits[labels.indexOf(l.label)]!));
    assert.ok(Math.abs(l.probability - want) < 1e-6, `${l.label}: ${l.probability} vs ${want}`);
  }
  await assert.rejects(tagger.tag(img, labels, { attention: true }), rejectsWith('INPUT_INVALID', /attention maps come from the head/));
  await tagger.dispose();

  // CLIP: the trained temperature from model.safetensors where the folder has it, else the config's initial one.
  const clip = await ClipModel.load('tests/fixtures/tiny-clip');
  const p = await clip.logitParams();
  const { logitScale } = await readLogitTensors('tests/fixtures/tiny-clip/model.safetensors');
  assert.deepEqual(p, { scale: Math.exp(logitScale!), bias: 0, source: 'model.safetensors' });
  await clip.dispose();
  const pico = await ClipModel.load('models/pico-clip');
  assert.deepEqual(await pico.logitParams(), { scale: Math.exp(2.6592), bias: 0, source: 'config.json' });
  await pico.dispose();
  rmSync(dir, { recursive: true, force: true });
});

test('a CLIP-Decoder head trains on SigLIP patch tokens and tags through the Tagger', async () => {
  const tiny = await trainTinyHead(400, DIR);
  const tagger = await Tagger.load({ model: DIR, head: tiny.dir, threads: 1 });
  assert.equal(tagger.model.numTokens, 16);
  assert.deepEqual(tagger.grid, { height: 4, width: 4 });
  const results = await tagger.tag(
    tiny.images.map((i) => i.file),
    ['dog', 'animal', 'pizza', 'food', 'sun', 'sky'],
    { attention: true },
  );
  // Fitted on these four images: each image's own labels come first.
  results.forEach((res, i) => {
    const want = tiny.images[i]!.labels;
    assert.deepEqual(new Set(res.labels.slice(0, want.length).map((l) => l.label)), new Set(want), JSON.stringify(res.labels));
    assert.equal(res.labels[0]!.attention!.length, 16);
  });
  await tagger.dispose();
});

test('`clip-decoder tag --head none` scores with SigLIP from the command line; --dtype picks a variant', async () => {
  const { spawnSync } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'siglip-cli-'));
  const img = join(dir, 'sun.png');
  writeFileSync(img, renderPng(notoSvg('sun'), 64));
  // The sources' CLI (the bin runs dist/, which `npm test` builds first).
  const cli = (...args: string[]) =>
    spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '-e',
        "import { main } from './src/cli/main.ts'; process.exit(await main(process.argv))",
        'clip-decoder',
        ...args,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
  const tagger = await Tagger.load({ model: DIR, head: 'none', threads: 1 });
  const want = await tagger.tag(img, ['sun', 'sky']);
  await tagger.dispose();
  for (const dtype of [[], ['--dtype', 'fp16']]) {
    const r = cli('tag', img, '--model', DIR, '--head', 'none', '--labels', 'sun,sky', '--format', 'jsonl', ...dtype);
    assert.equal(r.status, 0, r.stderr);
    const got = (JSON.parse(r.stdout) as { labels: Record<string, number> }).labels;
    const tol = dtype.length ? 0.02 : 1e-6;
    for (const l of want.labels)
      assert.ok(Math.abs(got[l.label]! - l.probability) <= tol, `${dtype}: ${l.label} ${got[l.label]} vs ${l.probability}`);
  }
  const bad = cli('tag', img, '--model', DIR, '--head', 'none', '--labels', 'sun', '--dtype', 'fp8');
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--dtype must be one of fp32, fp16, q8/);
  rmSync(dir, { recursive: true, force: true });
});
