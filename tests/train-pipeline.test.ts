import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { loadDataset } from '../src/data/load.ts';
import { trainingSet } from '../src/data/types.ts';
import { ClipModel } from '../src/clip/model.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { autoEmaDecay, captionOf, trainOnDataset, trainingCaptions, evaluateClipZeroShot, type TrainRunOptions } from '../src/train/pipeline.ts';

const root = mkdtempSync(join(tmpdir(), 'pipeline-'));
const dataDir = join(root, 'emojitags');
await buildEmojiTags({ out: dataDir, size: 32, styles: ['noto', 'twemoji'], limit: 40, progress: false });
const dataset = loadDataset(dataDir);
const model = await ClipModel.load('tests/fixtures/tiny-clip', { threads: 1 });
const small = { dModel: 32, heads: 4, ffnDim: 64, dropout: 0.1 };

function run(out: string, over: Partial<TrainRunOptions> = {}) {
  return trainOnDataset({
    dataset, model, cacheDir: join(root, 'cache'), outDir: out, epochs: 3, batchSize: 8, seed: 7, extraViews: 1,
    trainer: { maxLr: 1e-3, emaDecay: 0.9, alpha: 0.5 }, head: small, ...over,
  });
}

test('captions name only the training labels', () => {
  assert.equal(captionOf(['dog', 'pet', 'animal']), 'a photo of dog, pet and animal');
  assert.equal(captionOf(['dog']), 'a photo of dog');
  const set = trainingSet(dataset, 'select');
  const unseen = new Set([...dataset.split.unseen, ...dataset.split.pseudoUnseen]);
  for (const c of trainingCaptions(set)) for (const u of unseen) assert.ok(!c.split(/, | and |a photo of /).includes(u), `caption "${c}" names held-out label ${u}`);
});

test('train: features cached, best and last checkpoints, log, curves, and a ZSL/GZSL test report', async () => {
  const out = join(root, 'run');
  const r = await run(out);
  assert.equal(r.fit.epochs.length, 3);
  assert.ok(r.fit.bestEpoch >= 1 && r.fit.bestEpoch <= 3);
  assert.ok(r.extract.computed > 0);
  for (const f of ['best/config.json', 'last/config.json', 'training-log.json', 'training-curves.svg', 'test-report/report.md', 'test-report/report.json']) {
    assert.ok(existsSync(join(out, f)), f);
  }
  assert.ok(r.test.zsl && r.test.zsl.mAP >= 0 && r.test.zsl.mAP <= 100);
  assert.ok(r.test.gzsl.labels === dataset.split.seen.length + dataset.split.unseen.length);
  // The best checkpoint was trained on seen labels only, minus the pseudo-unseen ones held out for selection.
  const best = await loadCheckpoint(join(out, 'best'), new TsMatmul());
  const trained = new Set(best.meta.labels);
  for (const u of [...dataset.split.unseen, ...dataset.split.pseudoUnseen]) assert.ok(!trained.has(u), u);
  assert.match(readFileSync(join(out, 'training-curves.svg'), 'utf8'), /^<svg/);
  // A second run reuses every cached feature.
  const again = await run(join(root, 'run-again'), { epochs: 1 });
  assert.equal(again.extract.computed, 0);
});

test('a run interrupted after an epoch and resumed ends where an uninterrupted run ends', async () => {
  const whole = await run(join(root, 'whole'));
  const partOut = join(root, 'part');
  await run(partOut, { stopAfterEpochs: 1 });
  const resumed = await run(partOut, { resume: true });
  assert.equal(resumed.fit.epochs.length, 3);
  const a = await loadCheckpoint(join(root, 'whole', 'last'), new TsMatmul());
  const b = await loadCheckpoint(join(partOut, 'last'), new TsMatmul());
  for (const p of a.head.params.list) {
    const q = b.head.params.list.find((x) => x.name === p.name)!;
    let d = 0;
    for (let i = 0; i < p.data.length; i++) d = Math.max(d, Math.abs(p.data[i]! - q.data[i]!));
    assert.ok(d <= 1e-6, `${p.name} differs by ${d}`);
  }
  assert.equal(whole.test.zsl!.mAP, resumed.test.zsl!.mAP);
});

test('word-vector queries, the upper bound and plain CLIP run through the same pipeline', async () => {
  const wv = await run(join(root, 'wv'), { queries: 'wordvec', epochs: 1, trainer: { alpha: 0, emaDecay: 0 } });
  assert.ok(wv.test.zsl);
  const ub = await run(join(root, 'ub'), { trainOnUnseen: true, epochs: 1 });
  const ubLabels = (await loadCheckpoint(join(root, 'ub', 'best'), new TsMatmul())).meta.labels;
  assert.ok(dataset.split.unseen.every((u) => ubLabels.includes(u)));
  assert.ok(ub.test.zsl);
  const zs = await evaluateClipZeroShot({ dataset, model, cacheDir: join(root, 'cache'), outDir: join(root, 'zs') });
  assert.ok(zs.zsl && zs.zsl.mAP > 0);
});

test('a final run trains on train + validation with every seen label and keeps its last epoch', async () => {
  const out = join(root, 'final');
  const r = await run(out, { final: true, epochs: 2 });
  assert.equal(r.fit.bestEpoch, 2);
  const ck = await loadCheckpoint(join(out, 'best'), new TsMatmul());
  assert.deepEqual(ck.meta.labels, dataset.split.seen);
  assert.ok(r.fit.epochs.every((e) => e.val.zslMAP === null));
});

test('EMA decay scales down for short runs', () => {
  assert.equal(autoEmaDecay(1_000_000), 0.9997);
  assert.equal(autoEmaDecay(1000), 0.99);
  assert.equal(autoEmaDecay(5), 0.5);
});
