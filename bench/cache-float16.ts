// npm run bench:cache-float16 [-- --data DIR --model DIR --epochs 2 --d-model 64]
//
// What a float16 feature cache (`--cache-dtype float16`) costs in accuracy, against a float32 cache of the same
// images, measured in this run: the bytes per record, the largest relative rounding of any cached value, plain
// CLIP zero-shot test mAP (no head), and the test mAP of a short head training (same seed, same settings) from
// each cache. Default data: a small EmojiScenes build (docs/scale.md gives the command); default model: the
// bundled pico-CLIP.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ClipModel } from '../src/clip/model.ts';
import { loadDataset } from '../src/data/load.ts';
import { FeatureCache, type CacheDtype } from '../src/features/cache.ts';
import { DEFAULT_MODEL } from '../src/tagger/defaults.ts';
import { ensureFeatures, evaluateClipZeroShot, trainOnDataset } from '../src/train/pipeline.ts';

const { values } = parseArgs({
  options: {
    data: { type: 'string', default: '/work/wt/es-small' },
    model: { type: 'string', default: DEFAULT_MODEL },
    epochs: { type: 'string', default: '2' },
    'd-model': { type: 'string', default: '64' },
  },
});
if (!existsSync(values.data!)) {
  console.error(
    `bench:cache-float16: ${values.data} not found; build it with: node bin/clip-decoder.js data scenes --out ${values.data} --train-scenes 1500 --val-scenes 300 --test-scenes 600 --style-scenes 150 --pretrain-scenes 100`,
  );
  process.exit(2);
}
const dataset = loadDataset(values.data!);
const model = await ClipModel.load(values.model!);
const root = mkdtempSync(join(tmpdir(), 'bench-f16-'));
const D = Number(values['d-model']);
const fmt = (x: number | undefined) => (x === undefined ? '   -  ' : x.toFixed(2).padStart(6));

interface Row {
  dtype: CacheDtype;
  bytes: number;
  extractS: number;
  clipZsl?: number;
  clipGzsl: number;
  headZsl?: number;
  headGzsl: number;
}
const rows: Row[] = [];
for (const dtype of ['float32', 'float16'] as const) {
  const cacheDir = join(root, `cache-${dtype}`);
  const ex = await ensureFeatures(model, dataset, cacheDir, 0, undefined, undefined, { dtype });
  const cache = await FeatureCache.openExisting(cacheDir);
  const bytes = cache.recordBytes;
  cache.close();
  const clip = await evaluateClipZeroShot({ dataset, model, cacheDir, outDir: join(root, `clip-${dtype}`) });
  const head = await trainOnDataset({
    dataset,
    model,
    cacheDir,
    outDir: join(root, `head-${dtype}`),
    epochs: Number(values.epochs),
    batchSize: 32,
    seed: 0,
    head: { dModel: D, heads: 4, ffnDim: 2 * D },
    checkpointEveryMinutes: 0,
  });
  rows.push({
    dtype,
    bytes,
    extractS: ex.seconds,
    clipZsl: clip.zsl?.mAP,
    clipGzsl: clip.gzsl.mAP,
    headZsl: head.test.zsl?.mAP,
    headGzsl: head.test.gzsl.mAP,
  });
}

// The largest relative rounding of any value, float16 against float32 (|x| below float16's normal range counts
// against 2^-14, where float16 turns subnormal).
const a = await FeatureCache.openExisting(join(root, 'cache-float32'));
const b = await FeatureCache.openExisting(join(root, 'cache-float16'));
let worst = 0;
for (const k of a.keys()) {
  const x = a.read(k);
  const y = b.read(k);
  for (const [u, v] of [
    [x.tokens, y.tokens],
    [x.imageEmbed, y.imageEmbed],
  ] as const)
    for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i]! - v[i]!) / Math.max(Math.abs(u[i]!), 2 ** -14));
}
const images = a.size;
a.close();
b.close();
await model.dispose();

console.log(
  `bench:cache-float16: ${dataset.name}, ${images} images (train + val + test), model ${model.id} (${model.numTokens}×${model.tokenDim} tokens + ${model.embedDim}), head D ${D}, ${values.epochs} epochs, seed 0`,
);
console.log('cache    bytes/image  extract s  CLIP ZSL  CLIP GZSL  head ZSL  head GZSL   (test mAP, %)');
for (const r of rows)
  console.log(
    `${r.dtype}  ${String(r.bytes).padStart(11)}  ${r.extractS.toFixed(1).padStart(9)}    ${fmt(r.clipZsl)}     ${fmt(r.clipGzsl)}    ${fmt(r.headZsl)}     ${fmt(r.headGzsl)}`,
  );
const [f32, f16] = rows as [Row, Row];
console.log(
  `float16 / float32: bytes ${(f16.bytes / f32.bytes).toFixed(3)}; Δ mAP (float16 − float32): CLIP ZSL ${fmt((f16.clipZsl ?? 0) - (f32.clipZsl ?? 0))}, CLIP GZSL ${fmt(f16.clipGzsl - f32.clipGzsl)}, head ZSL ${fmt((f16.headZsl ?? 0) - (f32.headZsl ?? 0))}, head GZSL ${fmt(f16.headGzsl - f32.headGzsl)}; largest relative rounding of a value ${worst.toExponential(2)} (2^-11 = ${(2 ** -11).toExponential(2)})`,
);
