// CLIP-Decoder+ scoring in the Tagger: a calibrated head scores sigmoid(w_g·cos + w_l·h + b) with the trained or
// novel weights per label, a residual head without calibration sigmoid(h + scale·cos + bias), plain CLIP with a
// calibration sigmoid(w·cos + b); each recomputed here from the model's own outputs, not through fusion.ts.
// Mismatched heads and calibrations are refused, as is plain scoring on a model without projections.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../src/clip/model.ts';
import { embedLabels } from '../src/clip/prompts.ts';
import type { ClipDecoderError } from '../src/errors.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { encodeModel } from '../src/nn/onnx.ts';
import { loadCheckpoint, saveCheckpoint } from '../src/train/checkpoint.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { FUSION, makeCalibratedHead, PLAIN_FUSION, RESIDUAL, TRAINED } from './helpers/calibrated-head.ts';
import { notoSvg, renderPng } from './helpers/images.ts';
import { TINY_CLIP } from './helpers/tiny-head.ts';

const h = await makeCalibratedHead();
const work = mkdtempSync(join(tmpdir(), 'tagger-fusion-'));
const images = ['dog-face', 'pizza', 'sun'].map((name) => {
  const file = join(work, `${name}.png`);
  writeFileSync(file, renderPng(notoSvg(name), 64));
  return file;
});
const LABELS = ['dog', 'tree', 'pizza', 'cat', 'sun'];
const sig = (z: number) => 1 / (1 + Math.exp(-z));

// The reference: image embeddings, head logits and cosines straight from the model and the checkpoint.
const ref = await (async () => {
  const model = await ClipModel.load(TINY_CLIP, { threads: 1 });
  const E = model.embedDim;
  const queries = await embedLabels(model, LABELS, { templates: ['a photo of {label}'] });
  const plainQueries = await embedLabels(model, LABELS);
  const { head } = await loadCheckpoint(h.dir, new TsMatmul());
  const cos: number[][] = [];
  const plainCos: number[][] = [];
  const local: number[][] = [];
  const plainLogits: number[][] = [];
  for await (const r of model.encodeImages(images)) {
    if (r.error) throw r.error;
    const img = r.imageEmbed;
    const norm = Math.hypot(...img);
    const cosines = (q: Float32Array) => LABELS.map((_, l) => img.reduce((s, v, e) => s + v * q[l * E + e]!, 0) / norm);
    cos.push(cosines(queries));
    plainCos.push(cosines(plainQueries));
    const { logits } = head.predict(r.tokens, 1, model.numTokens, head.prepareLabels(LABELS, queries));
    local.push(Array.from(logits));
    plainLogits.push(Array.from(await model.plainLogits(img, plainQueries)));
  }
  await model.dispose();
  return { cos, plainCos, local, plainLogits };
})();

/** Each image's probabilities by label, in LABELS order. */
async function probabilities(tagger: Tagger): Promise<number[][]> {
  const rs = await tagger.tag(images, LABELS);
  return rs.map((r) => LABELS.map((l) => r.labels.find((x) => x.label === l)!.probability));
}

function assertNear(got: number[][], want: number[][], what: string) {
  got.forEach((row, b) =>
    row.forEach((p, l) => assert.ok(Math.abs(p - want[b]![l]!) < 2e-6, `${what}: image ${b} ${LABELS[l]}: ${p} vs ${want[b]![l]}`)),
  );
}

test('a calibrated head: sigmoid(w_global·cos + w_local·head logit + bias), trained weights for trained labels', async () => {
  const tagger = await Tagger.load({ model: TINY_CLIP, head: h.dir, threads: 1 });
  assert.deepEqual(tagger.mode, { scoring: 'fused', calibrated: true });
  assert.equal(tagger.threshold, FUSION.threshold);
  assert.match(tagger.describeMode(), /CLIP-Decoder\+ .*calibrated by .*calibration\.json, threshold 0\.42/);
  const want = ref.cos.map((row, b) =>
    row.map((c, l) => {
      const w = TRAINED.includes(LABELS[l]!) ? FUSION.trained : FUSION.novel;
      return sig(w.global * c + w.local * ref.local[b]![l]! + w.bias);
    }),
  );
  assertNear(await probabilities(tagger), want, 'fused');
  // both weight sets matter here: the same cosine and head logit would score differently as a novel label
  assert.notEqual(FUSION.trained.global, FUSION.novel.global);
  const r = await tagger.tag(images[0]!, LABELS, { threshold: 'calibrated' });
  assert.deepEqual(r.mode, { scoring: 'fused', calibrated: true });
  assert.deepEqual(
    r.labels.map((l) => l.label).sort(),
    LABELS.filter((_, l) => want[0]![l]! >= FUSION.threshold).sort(),
    'threshold "calibrated" keeps exactly the labels at or above the calibration\'s threshold',
  );
  // attention still comes from the head
  const a = await tagger.tag(images[0]!, ['dog'], { attention: true });
  assert.equal(a.labels[0]!.attention!.length, 16);
  await tagger.dispose();
});

test('a residual head without calibration scores head logit + scale·cos + bias, never the head logit alone', async () => {
  const tagger = await Tagger.load({ model: TINY_CLIP, head: h.bareDir, threads: 1 });
  assert.deepEqual(tagger.mode, { scoring: 'residual', calibrated: false });
  assert.equal(tagger.threshold, null);
  const want = ref.cos.map((row, b) => row.map((c, l) => sig(ref.local[b]![l]! + RESIDUAL.scale * c + RESIDUAL.bias)));
  assertNear(await probabilities(tagger), want, 'residual');
  await assert.rejects(
    tagger.tag(images[0]!, LABELS, { threshold: 'calibrated' }),
    (e: ClipDecoderError) => e.code === 'BAD_PARAMETER' && /--threshold without a value .* has no calibration/.test(e.message),
  );
  await tagger.dispose();
});

test('an old head (no residual, no calibration, no fingerprint) keeps scoring sigmoid(head logit)', async () => {
  const { head, meta } = await loadCheckpoint(h.dir, new TsMatmul());
  const dir = join(work, 'old-head');
  await saveCheckpoint(dir, head, { ...meta, clipFingerprint: undefined, hyperParameters: {} });
  const tagger = await Tagger.load({ model: TINY_CLIP, head: dir, threads: 1 });
  assert.deepEqual(tagger.mode, { scoring: 'head', calibrated: false });
  assertNear(
    await probabilities(tagger),
    ref.local.map((row) => row.map(sig)),
    'head',
  );
  await tagger.dispose();
});

test("plain CLIP (head none / null): calibrated sigmoid(w·cos + b) with a calibration, the model's own rule without", async () => {
  const cal = await Tagger.load({ model: TINY_CLIP, head: null, calibration: h.plainCalibration, threads: 1 });
  assert.deepEqual(cal.mode, { scoring: 'clip', calibrated: true });
  assert.equal(cal.threshold, PLAIN_FUSION.threshold);
  const w = PLAIN_FUSION.novel;
  assertNear(
    await probabilities(cal),
    ref.plainCos.map((row) => row.map((c) => sig(w.global * c + w.bias))),
    'plain calibrated',
  );
  await cal.dispose();
  const plain = await Tagger.load({ model: TINY_CLIP, head: 'none', threads: 1 });
  assert.deepEqual(plain.mode, { scoring: 'clip', calibrated: false });
  assertNear(
    await probabilities(plain),
    ref.plainLogits.map((row) => row.map(sig)),
    'plain',
  );
  await plain.dispose();
  // a CLIP model folder may carry the calibration of plain CLIP itself
  const folder = join(work, 'tiny-clip-calibrated');
  cpSync(TINY_CLIP, folder, { recursive: true });
  cpSync(h.plainCalibration, join(folder, 'calibration.json'));
  const shipped = await Tagger.load({ model: folder, head: 'none', threads: 1 });
  assert.deepEqual(shipped.mode, { scoring: 'clip', calibrated: true });
  assert.equal(shipped.calibrationPath, join(folder, 'calibration.json'));
  await shipped.dispose();
});

test('a calibration of another head or of plain CLIP is refused for a head, and a head calibration for plain CLIP', async () => {
  await assert.rejects(
    Tagger.load({ model: TINY_CLIP, head: h.bareDir, calibration: join(h.dir, 'calibration.json'), threads: 1 }),
    (e: ClipDecoderError) => e.code === 'CALIBRATION_MISMATCH' && /fitted for head sha .* but the head is sha/.test(e.message),
  );
  await assert.rejects(
    Tagger.load({ model: TINY_CLIP, head: h.dir, calibration: h.plainCalibration, threads: 1 }),
    (e: ClipDecoderError) => e.code === 'CALIBRATION_MISMATCH' && /fitted for plain CLIP/.test(e.message),
  );
  await assert.rejects(
    Tagger.load({ model: TINY_CLIP, head: 'none', calibration: join(h.dir, 'calibration.json'), threads: 1 }),
    (e: ClipDecoderError) => e.code === 'CALIBRATION_MISMATCH' && /plain CLIP \(--head none\) is loaded/.test(e.message),
  );
});

test('a head trained with another CLIP model (recorded fingerprint) is refused naming both models', async () => {
  const { head, meta } = await loadCheckpoint(h.dir, new TsMatmul());
  const dir = join(work, 'foreign-head');
  await saveCheckpoint(dir, head, { ...meta, clipModel: 'other-clip', clipFingerprint: 'cd'.repeat(32) });
  await assert.rejects(
    Tagger.load({ model: TINY_CLIP, head: dir, threads: 1 }),
    (e: ClipDecoderError) =>
      e.code === 'HEAD_MODEL_MISMATCH' &&
      e.message.includes('trained with CLIP model other-clip (fingerprint cdcdcdcdcdcd') &&
      e.message.includes(`fingerprint ${h.fingerprint.slice(0, 12)}`),
  );
});

test('plain CLIP on a model whose vision tower has no image projection is refused saying so', async () => {
  const folder = join(work, 'no-projection');
  cpSync(TINY_CLIP, folder, { recursive: true });
  // a vision graph with only the transformer's output (here a stand-in: pixels passed through)
  const onnx = encodeModel({
    name: 'vision-without-projection',
    inputs: [{ name: 'pixel_values', shape: ['B', 3, 32, 32] }],
    outputs: [{ name: 'last_hidden_state', shape: ['B', 3, 32, 32] }],
    nodes: [{ opType: 'Identity', inputs: ['pixel_values'], outputs: ['last_hidden_state'] }],
  });
  writeFileSync(join(folder, 'onnx', 'vision_model.onnx'), onnx);
  await assert.rejects(
    Tagger.load({ model: folder, head: 'none', threads: 1 }),
    (e: ClipDecoderError) =>
      e.code === 'MODEL_OUTPUT_MISSING' &&
      /plain CLIP scoring \(--head none\) needs the image embedding \(the image projection\), but .*vision_model\.onnx has no output "image_embeds" \(it has: last_hidden_state\)/.test(
        e.message,
      ),
  );
});
