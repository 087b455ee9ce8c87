// CLIP-Decoder+ scoring through every output: `tag` (JSON lines with the mode, a stderr line saying how it
// scores, --threshold without a value = the calibration's), the HTTP answer (mode, threshold,
// threshold=calibrated), and the in-browser page (its manifest's scoring and lib.js's formula give the Tagger's
// probabilities).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../src/clip/model.ts';
import { embedLabels } from '../src/clip/prompts.ts';
import { buildServer } from '../src/serve/server.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { fusedProbabilities } from '../src/web/assets/lib.js';
import { taggerWebScoring, webBundle } from '../src/web/bundle.ts';
import { FUSION, makeCalibratedHead, PLAIN_FUSION, RESIDUAL, TRAINED } from './helpers/calibrated-head.ts';
import { notoSvg, renderPng } from './helpers/images.ts';
import { TINY_CLIP } from './helpers/tiny-head.ts';

const h = await makeCalibratedHead();
const work = mkdtempSync(join(tmpdir(), 'calibrated-outputs-'));
const dogFile = join(work, 'dog-face.png');
writeFileSync(dogFile, renderPng(notoSvg('dog-face'), 64));
const LABELS = ['dog', 'tree', 'pizza', 'cat', 'sun'];
const tagger = await Tagger.load({ model: TINY_CLIP, head: h.dir, threads: 1 });
after(() => tagger.dispose());

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', 'tag', '--model', TINY_CLIP, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('tag: the mode in every JSON line, one stderr line saying how it scores, --threshold without a value', async () => {
  const all = await tagger.tag(dogFile, LABELS);
  const want = all.labels.filter((l) => l.probability >= FUSION.threshold).map((l) => l.label);
  assert.ok(want.length > 0 && want.length < LABELS.length, `the threshold splits the labels: ${JSON.stringify(all.labels)}`);
  const r = cli(dogFile, '--head', h.dir, '--labels', LABELS.join(','), '--format', 'jsonl', '--threshold');
  assert.equal(r.code, 0, r.stderr);
  const line = JSON.parse(r.stdout) as { labels: Record<string, number>; mode: unknown };
  assert.deepEqual(line.mode, { scoring: 'fused', calibrated: true });
  assert.deepEqual(Object.keys(line.labels), want, "exactly the labels at or above the calibration's threshold");
  assert.match(r.stderr, /^clip-decoder: scoring: CLIP-Decoder\+ \(.*calibrated by .*calibration\.json, threshold 0\.42\)\n$/);
  // a number still works
  const n = cli(dogFile, '--head', h.dir, '--labels', LABELS.join(','), '--format', 'jsonl', '--threshold', '0');
  assert.equal(Object.keys(JSON.parse(n.stdout).labels).length, LABELS.length);
  // without a calibration, no value is an error naming the flag (exit 2)
  const bare = cli(dogFile, '--head', h.bareDir, '--labels', 'dog', '--threshold');
  assert.equal(bare.code, 2);
  assert.match(bare.stderr, /--threshold without a value uses the calibration's threshold, but the head .* has no calibration/);
  // the residual head without calibration, and plain CLIP with --calibration, say so too
  const res = cli(dogFile, '--head', h.bareDir, '--labels', 'dog', '--format', 'jsonl');
  assert.deepEqual(JSON.parse(res.stdout).mode, { scoring: 'residual', calibrated: false });
  assert.match(res.stderr, /scoring: CLIP-Decoder\+ residual .*uncalibrated/);
  const plain = cli(
    dogFile,
    '--head',
    'none',
    '--calibration',
    h.plainCalibration,
    '--labels',
    'dog,sun',
    '--format',
    'jsonl',
    '--threshold',
  );
  assert.equal(plain.code, 0, plain.stderr);
  assert.deepEqual(JSON.parse(plain.stdout).mode, { scoring: 'clip', calibrated: true });
  assert.match(plain.stderr, /scoring: plain CLIP .*threshold 0\.37/);
  const wrong = cli(dogFile, '--head', h.bareDir, '--calibration', join(h.dir, 'calibration.json'), '--labels', 'dog');
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /calibration .*calibration\.json was fitted for head sha \w+… but the head is sha \w+…/);
});

test('HTTP: the answer gives the mode and the calibration threshold; threshold=calibrated filters by it', async () => {
  const app = buildServer(tagger, { maxConcurrent: 1 });
  try {
    const img = readFileSync(dogFile);
    const url = `/v1/tag?labels=${LABELS.join(',')}`;
    const res = await app.inject({ method: 'POST', url, payload: img, headers: { 'content-type': 'image/png' } });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json() as { mode: unknown; threshold: number; labels: { label: string; probability: number }[] };
    assert.deepEqual(body.mode, { scoring: 'fused', calibrated: true });
    assert.equal(body.threshold, FUSION.threshold);
    const cut = await app.inject({
      method: 'POST',
      url: `${url}&threshold=calibrated`,
      payload: img,
      headers: { 'content-type': 'image/png' },
    });
    const kept = (cut.json() as typeof body).labels.map((l) => l.label);
    assert.deepEqual(
      kept,
      body.labels.filter((l) => l.probability >= FUSION.threshold).map((l) => l.label),
    );
    const health = (await app.inject({ method: 'GET', url: '/healthz' })).json() as { mode: unknown; threshold: number };
    assert.deepEqual([health.mode, health.threshold], [{ scoring: 'fused', calibrated: true }, FUSION.threshold]);
  } finally {
    await app.close();
  }
  const bare = await Tagger.load({ model: TINY_CLIP, head: h.bareDir, threads: 1 });
  const app2 = buildServer(bare, { maxConcurrent: 1 });
  try {
    const r = await app2.inject({
      method: 'POST',
      url: '/v1/tag?labels=dog&threshold=calibrated',
      payload: readFileSync(dogFile),
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(r.statusCode, 400);
    const { error } = r.json() as { error: { code: string; message: string } };
    assert.equal(error.code, 'BAD_PARAMETER');
    assert.match(error.message, /^"threshold" without a value uses the calibration's threshold, but the head .* has no calibration/);
  } finally {
    await app2.close();
    await bare.dispose();
  }
});

test("the in-browser page: the manifest carries the scoring, and lib.js's formula gives the Tagger's probabilities", async () => {
  const files = webBundle({ folder: tagger.model.folder, head: tagger.head!, meta: tagger.meta, scoring: taggerWebScoring(tagger) });
  const manifest = JSON.parse(files.find((f) => f.path === 'manifest.json')!.data as string);
  assert.deepEqual(manifest.scoring, {
    mode: { scoring: 'fused', calibrated: true },
    weights: { trained: FUSION.trained, novel: FUSION.novel },
    trainedLabels: TRAINED,
    threshold: FUSION.threshold,
  });
  assert.equal(manifest.vision.imageEmbeds, 'image_embeds');
  // without a scoring given, a residual head's bundle still scores by its residual rule
  const bare = webBundle({ folder: tagger.model.folder, head: tagger.head!, meta: { ...tagger.meta } });
  const bareScoring = JSON.parse(bare.find((f) => f.path === 'manifest.json')!.data as string).scoring;
  assert.deepEqual(bareScoring.weights.trained, { global: RESIDUAL.scale, local: 1, bias: RESIDUAL.bias });
  // what the page computes from the towers' and the head's outputs
  const model = await ClipModel.load(TINY_CLIP, { threads: 1 });
  const queries = await embedLabels(model, LABELS, { templates: manifest.prompts.templates });
  let embed: Float32Array | undefined;
  let logits: Float32Array | undefined;
  for await (const r of model.encodeImages([dogFile])) {
    if (r.error) throw r.error;
    embed = r.imageEmbed;
    logits = tagger.head!.predict(r.tokens, 1, model.numTokens, tagger.head!.prepareLabels(LABELS, queries)).logits;
  }
  await model.dispose();
  const page = fusedProbabilities(logits!, embed!, queries, LABELS, manifest.embedDim, manifest.scoring);
  const lib = (await tagger.tag(dogFile, LABELS)).labels;
  LABELS.forEach((l, i) => {
    const p = lib.find((x) => x.label === l)!.probability;
    assert.ok(Math.abs(page[i]! - p) < 1e-6, `${l}: page ${page[i]} vs Tagger ${p}`);
  });
  // plain head rule (weights null): sigmoid(logit)
  const head = fusedProbabilities([0, 2], [1, 0], [1, 0, 0, 1], ['a', 'b'], 2, { weights: null, trainedLabels: [] });
  assert.ok(Math.abs(head[1]! - 1 / (1 + Math.exp(-2))) < 1e-7);
  assert.equal(PLAIN_FUSION.trained.local, 0);
});
