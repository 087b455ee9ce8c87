// npm run bench:encode [-- --model DIR --images N --batch B]
// Throughput of the whole image path (read, decode, preprocess, ONNX; pipelined) against the bare ONNX session on
// the same already-preprocessed tensors, and against transformers.js's RawImage + CLIPImageProcessor path, all
// measured in this run on the same model. Default model: a random-weight ViT-B/32-sized CLIP made by
// `tools/make_clip.py --size vit-b-32 --out bench/models/vit-b-32-random`.
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { CLIPImageProcessor, RawImage } from '@huggingface/transformers';
import { ClipModel, sessionOptions } from '../src/clip/model.ts';
import { preprocessInto } from '../src/clip/preprocess.ts';
import { notoSvg, renderPng } from '../tests/helpers/images.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'bench/models/vit-b-32-random' },
    images: { type: 'string', default: '96' },
    batch: { type: 'string', default: '16' },
  },
});
const modelDir = values.model!;
if (!existsSync(modelDir)) {
  console.error(`bench:encode: ${modelDir} not found; make it with /usr/bin/python3 tools/make_clip.py --size vit-b-32 --out ${modelDir}`);
  process.exit(2);
}
const N = Number(values.images);
const B = Number(values.batch);

// Real inputs: emoji drawings as PNGs at a few sizes and as JPEG "photos" (an emoji on a coloured background).
const dir = mkdtempSync(join(tmpdir(), 'bench-encode-'));
const names = ['dog-face', 'pizza', 'red-apple', 'bicycle', 'house', 'sun', 'cat-face', 'rocket'];
const files: string[] = [];
for (let i = 0; i < N; i++) {
  const png = renderPng(notoSvg(names[i % names.length]!), 256 + 64 * (i % 5));
  const file = join(dir, `img${i}.${i % 2 ? 'jpg' : 'png'}`);
  if (i % 2) {
    const bg = await sharp({ create: { width: 900, height: 700, channels: 3, background: { r: (i * 37) % 255, g: 128, b: 200 } } })
      .composite([{ input: png, left: 100, top: 60 }])
      .jpeg({ quality: 88 })
      .toBuffer();
    writeFileSync(file, bg);
  } else writeFileSync(file, png);
  files.push(file);
}

const model = await ClipModel.load(modelDir);
const per = model.pixelsPerImage;
const { height: H, width: W } = model.folder.imageSize;
const pre = new Float32Array(N * per);
for (let i = 0; i < N; i++) await preprocessInto(files[i]!, model.folder.preprocess, pre, i * per);
const session = await ort.InferenceSession.create(
  model.folder.visionModelPath,
  sessionOptions((await import('node:os')).availableParallelism()),
);

async function bare(): Promise<number> {
  const t0 = performance.now();
  for (let s = 0; s < N; s += B) {
    const n = Math.min(B, N - s);
    await session.run({ pixel_values: new ort.Tensor('float32', pre.slice(s * per, (s + n) * per), [n, 3, H, W]) });
  }
  return N / ((performance.now() - t0) / 1000);
}
async function whole(): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  for await (const r of model.encodeImages(files, { batchSize: B })) if (!r.error) n++;
  if (n !== N) throw new Error(`only ${n} of ${N} images encoded`);
  return N / ((performance.now() - t0) / 1000);
}
const processor = new CLIPImageProcessor(
  JSON.parse((await import('node:fs')).readFileSync(join(modelDir, 'preprocessor_config.json'), 'utf8')),
);
async function transformersJs(): Promise<number> {
  const t0 = performance.now();
  for (let s = 0; s < N; s += B) {
    const batch = files.slice(s, s + B);
    const pv = await Promise.all(batch.map(async (f) => (await processor(await RawImage.read(f))).pixel_values.data as Float32Array));
    const x = new Float32Array(batch.length * per);
    pv.forEach((p, i) => x.set(p, i * per));
    await session.run({ pixel_values: new ort.Tensor('float32', x, [batch.length, 3, H, W]) });
  }
  return N / ((performance.now() - t0) / 1000);
}

await bare(); // warm-up
const rounds = 3;
const r = { bare: [] as number[], whole: [] as number[], tjs: [] as number[] };
for (let k = 0; k < rounds; k++) {
  r.bare.push(await bare());
  r.whole.push(await whole());
  r.tjs.push(await transformersJs());
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const bareRate = med(r.bare),
  wholeRate = med(r.whole),
  tjsRate = med(r.tjs);
console.log(
  `model ${modelDir}: ${H}×${W}, ${model.numTokens} tokens × ${model.tokenDim}, batch ${B}, ${N} images, median of ${rounds} rounds`,
);
console.log(`bare ONNX session (preprocessed tensors): ${bareRate.toFixed(2)} images/s`);
console.log(
  `whole path (read+decode+preprocess+ONNX): ${wholeRate.toFixed(2)} images/s  = ${(wholeRate / bareRate).toFixed(3)}× bare (goal ≥ 0.85)`,
);
console.log(`transformers.js RawImage+processor path:  ${tjsRate.toFixed(2)} images/s  = ${(tjsRate / bareRate).toFixed(3)}× bare`);
console.log(`whole path vs transformers.js path: ${(wholeRate / tjsRate).toFixed(2)}× faster`);
await model.dispose();
await session.release();
