import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { defaultHeadConfig } from '../src/head/config.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { Trainer } from '../src/train/trainer.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { attentionOverlayPng } from '../src/tagger/overlay.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { trainTinyHead, TINY_CLIP, TINY_LABELS } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1 });

test('probabilities are independent per label and rank the trained positives first', async () => {
  const results = await tagger.tag(
    tiny.images.map((i) => i.file),
    TINY_LABELS,
  );
  assert.equal(results.length, tiny.images.length);
  results.forEach((r, i) => {
    assert.equal(r.index, i);
    assert.equal(r.labels.length, TINY_LABELS.length);
    for (const l of r.labels) assert.ok(l.probability > 0 && l.probability < 1);
    const sorted = [...r.labels].sort((a, b) => b.probability - a.probability);
    assert.deepEqual(r.labels, sorted, 'sorted by probability');
    const want = tiny.images[i]!.labels;
    const topK = r.labels
      .slice(0, want.length)
      .map((l) => l.label)
      .sort();
    assert.deepEqual(topK, [...want].sort(), `${r.source}: ${JSON.stringify(r.labels.map((l) => [l.label, l.probability.toFixed(3)]))}`);
  });
  // Independent, not a softmax: one image's probabilities need not sum to 1, and adding a label leaves the
  // others' probabilities unchanged.
  const one = await tagger.tag(tiny.images[0]!.file, ['dog', 'pizza']);
  const more = await tagger.tag(tiny.images[0]!.file, ['dog', 'pizza', 'umbrella', 'guitar']);
  const p = (r: typeof one, l: string) => r.labels.find((x) => x.label === l)!.probability;
  assert.ok(Math.abs(p(one, 'dog') - p(more, 'dog')) < 1e-6);
  assert.ok(Math.abs(p(one, 'pizza') - p(more, 'pizza')) < 1e-6);
});

test('labels never trained on are scored too (open vocabulary), and top/threshold filter', async () => {
  const r = await tagger.tag(tiny.images[1]!.file, ['pizza', 'bicycle', 'tree', 'cheese'], { top: 2 });
  assert.equal(r.labels.length, 2);
  const all = await tagger.tag(tiny.images[1]!.file, ['pizza', 'bicycle', 'tree', 'cheese'], { threshold: 0.5 });
  assert.ok(all.labels.every((l) => l.probability >= 0.5));
});

test('a label set is prepared once and reused', async () => {
  const a = await tagger.prepareLabels(['dog', 'sky']);
  const b = await tagger.prepareLabels(['dog', 'sky']);
  assert.equal(a, b);
  await assert.rejects(tagger.tag(tiny.images[0]!.file, []), /label list is empty/);
  await assert.rejects(tagger.tag(tiny.images[0]!.file, ['dog', 'dog']), /label "dog" appears twice/);
});

test('attention maps cover the patch grid and render as an overlay', async () => {
  const r = await tagger.tag(tiny.images[0]!.file, ['dog', 'pizza'], { attention: true });
  assert.deepEqual(tagger.grid, { height: 4, width: 4 });
  for (const l of r.labels) {
    assert.equal(l.attention!.length, 16);
    const sum = l.attention!.reduce((s, x) => s + x, 0);
    assert.ok(Math.abs(sum - 1) < 1e-4, `softmax over the grid sums to 1 (${sum})`);
  }
  const png = await attentionOverlayPng(tiny.images[0]!.file, r.labels[0]!.attention!, 4, 4, { size: 96 });
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 96, 96]);
});

test('a bad image in a batch is named and the others are tagged', async () => {
  const bad = `${tiny.dir}/config.json`;
  const rs = await tagger.tag([tiny.images[0]!.file, bad, tiny.images[1]!.file], ['dog']);
  assert.deepEqual(
    rs.map((r) => Boolean(r.error)),
    [false, true, false],
  );
  assert.ok(rs[1]!.error instanceof ClipDecoderError && rs[1]!.error.message.includes(bad));
  const buf = readFileSync(tiny.images[0]!.file);
  const fromBuffer = await tagger.tag(buf, ['dog']);
  assert.ok(Math.abs(fromBuffer.labels[0]!.probability - rs[0]!.labels[0]!.probability) < 1e-6);
});

test('a head and a model of different widths are refused by name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'wide-head-'));
  const wide = Trainer.create(
    defaultHeadConfig({ inputDim: 48, queryDim: 16, dModel: 16, heads: 2, ffnDim: 32, clipProjDim: 0 }),
    new TsMatmul(),
    { totalSteps: 1 },
  );
  await wide.save(dir, { labels: ['x'], clipModel: 'another-clip', promptTemplates: ['a photo of {label}'] });
  await assert.rejects(Tagger.load({ model: TINY_CLIP, head: dir }), (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError);
    assert.match(
      e.message,
      /expects 48-wide image tokens and 16-wide text embeddings \(trained with another-clip\), but .*tiny-clip gives 32 and 16: pass the matching --model/,
    );
    return true;
  });
  await assert.rejects(Tagger.load({ model: 'bench/models/does-not-exist', head: tiny.dir }), /no such model folder/);
  await assert.rejects(Tagger.load({ model: TINY_CLIP, head: '/no/such/head' }), /no readable checkpoint at \/no\/such\/head/);
});

test('the overlay puts the heat where the attention is', async () => {
  const grid = new Float32Array(16);
  grid[0] = 1; // top-left patch only
  const png = await attentionOverlayPng(tiny.images[2]!.file, grid, 4, 4, { size: 64, alpha: 1 });
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.channels, 3);
  const px = (x: number, y: number) => [...data.subarray((y * 64 + x) * 3, (y * 64 + x) * 3 + 3)];
  // Hot = yellow (high green), cold = dark purple (low green).
  assert.ok(px(2, 2)[1]! > 200, `top-left ${px(2, 2)}`);
  assert.ok(px(60, 60)[1]! < 40, `bottom-right ${px(60, 60)}`);
});
