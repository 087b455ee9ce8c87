// npm run bench:capacity [-- --model DIR --images N]
//
// Capacity on paper for docs/scale.md, with the one rate it can measure here measured in this run:
//   - cache bytes per image (the feature cache's record: tokens T×C + image embedding E, float32 or float16) for
//     ViT-B/32 (7×7 patches) and ViT-B/16 (14×14), with and without the CLS token, and NUS-WIDE's totals;
//   - `extract` images/s per core: the whole path (read, decode, preprocess, ONNX, cache append, fsync) on a
//     random-weight ViT-B/32-sized CLIP (`tools/make_clip.py --size vit-b-32`) with one ONNX thread, then with
//     every core, and what a NUS-WIDE extraction takes in core-hours and node-hours at that rate;
//   - what the single-machine head training then needs, from the engine's measured step time (docs/engine.md,
//     `npm run bench:train`: 0.51 s mean per step of batch 32 at T = 49, C = 768, 80 labels, D = 768).
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { ClipModel } from '../src/clip/model.ts';
import { extractFeatures } from '../src/features/extract.ts';
import { notoSvg, renderPng } from '../tests/helpers/images.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench/models/vit-b-32-random' },
    images: { type: 'string', default: '96' },
  },
});
const NUS_WIDE = 269_648;
const NUS_TRAIN = 161_789;
/** docs/engine.md, `npm run bench:train`: mean step over a 200-step run, batch 32, T 49, C 768, N 80, D 768. */
const STEP_S = 0.51;
const STEP_BATCH = 32;
/** docs/engine.md: peak RSS of those 200 training steps. */
const TRAIN_RSS_MB = 805;

const GB = 1e9;
const models = [
  { name: 'ViT-B/32', patches: 49, C: 768, E: 512 },
  { name: 'ViT-B/16', patches: 196, C: 768, E: 512 },
];
console.log('cache record per image (tokens T×768 + embedding 512), and NUS-WIDE (269,648 images) in all:');
console.log('model     tokens T       float32 B/image  float16 B/image   NUS-WIDE float32   float16');
for (const m of models)
  for (const cls of [false, true]) {
    const T = m.patches + (cls ? 1 : 0);
    const f32 = (T * m.C + m.E) * 4;
    console.log(
      `${m.name}  ${String(T).padStart(3)} ${cls ? '(+CLS)' : '(default)'}  ${String(f32).padStart(15)}  ${String(f32 / 2).padStart(15)}   ${((f32 * NUS_WIDE) / GB).toFixed(1).padStart(8)} GB  ${((f32 * NUS_WIDE) / 2 / GB).toFixed(1).padStart(8)} GB`,
    );
  }

const modelDir = values.model!;
if (!existsSync(modelDir)) {
  console.error(
    `bench:capacity: ${modelDir} not found, so no rate is measured; make it with /usr/bin/python3 tools/make_clip.py --size vit-b-32 --out ${modelDir}`,
  );
  process.exit(2);
}
const N = Number(values.images);
// Photo-like inputs: an emoji on a coloured 900×700 background, as JPEG (what a photo library holds).
const dir = mkdtempSync(join(tmpdir(), 'bench-capacity-'));
const items: { id: string; path: string }[] = [];
for (let i = 0; i < N; i++) {
  const png = renderPng(notoSvg(['dog-face', 'pizza', 'bicycle', 'house'][i % 4]!), 320);
  const jpg = await sharp({ create: { width: 900, height: 700, channels: 3, background: { r: (i * 37) % 255, g: 128, b: 200 } } })
    .composite([{ input: png, left: 100 + (i % 7) * 30, top: 60 }])
    .jpeg({ quality: 88 })
    .toBuffer();
  const path = join(dir, `img${i}.jpg`);
  writeFileSync(path, jpg);
  items.push({ id: `img${i}`, path });
}
const cores = availableParallelism();
const rates: Record<number, number> = {};
const perCpuSecond: Record<number, number> = {};
for (const threads of [1, cores]) {
  const model = await ClipModel.load(modelDir, { threads });
  // warm-up batch into a throw-away cache, then the timed run into a fresh one
  await extractFeatures(model, items.slice(0, 16), { cacheDir: join(dir, `warm-${threads}`), datasetFingerprint: 'bench' });
  const cpu0 = process.cpuUsage();
  const s = await extractFeatures(model, items, { cacheDir: join(dir, `cache-${threads}`), datasetFingerprint: 'bench', batchSize: 16 });
  const cpu = process.cpuUsage(cpu0);
  rates[threads] = s.computed / s.seconds;
  // On a shared machine wall time includes waiting for a core; CPU time does not.
  perCpuSecond[threads] = s.computed / ((cpu.user + cpu.system) / 1e6);
  await model.dispose();
}
const perCore = perCpuSecond[1]!;
console.log(
  `\nextract (whole path, ${N} 900×700 JPEGs, batch 16, ${modelDir}): wall clock ${rates[1]!.toFixed(1)} images/s with 1 ONNX thread, ${rates[cores]!.toFixed(1)} with ${cores} (${(rates[cores]! / rates[1]!).toFixed(2)}×; load average ${loadavg()[0]!.toFixed(1)} on ${cores} cores); per CPU-second of the process: ${perCpuSecond[1]!.toFixed(1)} images with 1 thread, ${perCpuSecond[cores]!.toFixed(1)} with ${cores}`,
);
const coreHours = NUS_WIDE / perCore / 3600;
console.log(
  `NUS-WIDE extraction at ${perCore.toFixed(1)} images per core-second: ${coreHours.toFixed(1)} core-hours = ${(coreHours / 32).toFixed(2)} node-hours on 32-core nodes; 64 shards × 4 cores: ${((coreHours / 256) * 60).toFixed(1)} min of wall time (plus start-up and the merge)`,
);
const steps = Math.ceil(NUS_TRAIN / STEP_BATCH);
console.log(
  `\nhead training on NUS-WIDE's ${NUS_TRAIN.toLocaleString('en')} training images (ViT-B/32 features, batch ${STEP_BATCH}): ${steps} steps × ${STEP_S} s = ${((steps * STEP_S) / 60).toFixed(0)} min per epoch on 2 cores; process RSS ≈ ${TRAIN_RSS_MB} MB (records are read from the cache per batch), plus the page cache for the training records to stay in RAM: ${((NUS_TRAIN * (49 * 768 + 512) * 4) / GB).toFixed(1)} GB float32, ${((NUS_TRAIN * (49 * 768 + 512) * 2) / GB).toFixed(1)} GB float16`,
);
