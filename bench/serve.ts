// npm run bench:serve [-- --model DIR --head DIR]
// The product's speed, all on loopback and bounded in requests and time:
//  1. POST /v1/tag latency p50/p95 for 10 and 1,000 labels (label sets cached after the first request), against
//     the bare work of one request (the Tagger called in-process) measured in the same run;
//  2. a load test with autocannon: 32 connections, a fixed number of requests, no errors, RSS before/after;
//  3. `tag` over a folder (Tagger.tagStream: read, decode, encode, head) in images/s against the bare ONNX vision
//     session on the same preprocessed tensors (goal ≥ 0.8×).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import ort from 'onnxruntime-node';
import sharp from 'sharp';
import { Tagger } from '../src/tagger/tagger.ts';
import { buildServer } from '../src/serve/server.ts';
import { sessionOptions } from '../src/clip/model.ts';
import { preprocessInto } from '../src/clip/preprocess.ts';
import { notoSvg, renderPng } from '../tests/helpers/images.ts';

const { values } = parseArgs({
  options: { model: { type: 'string' }, head: { type: 'string' }, images: { type: 'string', default: '200' } },
});
const tagger = await Tagger.load({ model: values.model, head: values.head });
const dir = mkdtempSync(join(tmpdir(), 'bench-serve-'));
const names = ['dog-face', 'pizza', 'red-apple', 'bicycle', 'house', 'sun', 'cat-face', 'rocket', 'guitar', 'deciduous-tree'];
const files: string[] = [];
for (let i = 0; i < Number(values.images); i++) {
  const png = renderPng(notoSvg(names[i % names.length]!), 128 + 32 * (i % 4));
  const file = join(dir, `img${i}.${i % 2 ? 'jpg' : 'png'}`);
  writeFileSync(file, i % 2 ? await sharp(png).flatten({ background: '#fff' }).jpeg({ quality: 90 }).toBuffer() : png);
  files.push(file);
}
const vocabulary = readFileSync('src/data/nus-wide/TagList1k.txt', 'utf8')
  .split('\n')
  .map((s) => s.trim())
  .filter(Boolean);
const labels10 = vocabulary.slice(0, 10);
const labels1000 = vocabulary.slice(0, 1000);
const image = readFileSync(files[0]!);

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const app = buildServer(tagger, { maxConcurrent: 2, maxQueue: 64, maxLabels: 2000 });
const address = await app.listen({ host: '127.0.0.1', port: 0 });

async function post(labels: string[]): Promise<number> {
  const t0 = performance.now();
  const res = await fetch(`${address}/v1/tag?labels=${encodeURIComponent(labels.join(','))}`, {
    method: 'POST',
    body: image,
    headers: { 'content-type': 'image/png' },
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  await res.json();
  return performance.now() - t0;
}
console.log(
  `model ${tagger.model.id}, head trained with ${tagger.meta.clipModel}; ${tagger.model.numTokens} tokens × ${tagger.model.tokenDim}`,
);
for (const [name, labels] of [
  ['10 labels', labels10],
  ['1,000 labels', labels1000],
] as const) {
  const first = await post(labels); // encodes the label set once
  const http: number[] = [],
    lib: number[] = [];
  for (let i = 0; i < 30; i++) {
    http.push(await post(labels));
    const t0 = performance.now();
    await tagger.tag(image, labels);
    lib.push(performance.now() - t0);
  }
  console.log(
    `POST /v1/tag, ${name}: p50 ${pct(http, 50).toFixed(1)} ms, p95 ${pct(http, 95).toFixed(1)} ms (first request ${first.toFixed(0)} ms, label set encoded); ` +
      `in-process tag p50 ${pct(lib, 50).toFixed(1)} ms → HTTP overhead ${(pct(http, 50) / pct(lib, 50)).toFixed(2)}×`,
  );
}

const loadTest = () =>
  autocannon({
    url: `${address}/v1/tag?labels=${encodeURIComponent(labels10.join(','))}`,
    method: 'POST',
    headers: { 'content-type': 'image/png' },
    body: image,
    connections: 32,
    amount: 2000,
    timeout: 30,
  });
const rss0 = process.memoryUsage().rss;
const load = await loadTest();
const rss1 = process.memoryUsage().rss;
const load2 = await loadTest();
const rss2 = process.memoryUsage().rss;
const non2xx = load.non2xx + load2.non2xx;
console.log(
  `load: 32 connections, 2 × 2,000 requests: ${load.requests.average.toFixed(0)} and ${load2.requests.average.toFixed(0)} req/s, latency p50 ${load.latency.p50} ms, p97.5 ${load.latency.p97_5} ms; ` +
    `errors ${load.errors + load2.errors}, non-2xx ${non2xx} (503 when the queue of 64 is full); RSS ${(rss0 / 2 ** 20).toFixed(0)} → ${(rss1 / 2 ** 20).toFixed(0)} → ${(rss2 / 2 ** 20).toFixed(0)} MiB`,
);
await app.close();

// tag over a folder against the bare vision session on the same preprocessed tensors.
const model = tagger.model;
const per = model.pixelsPerImage;
const { height: H, width: W } = model.folder.imageSize;
const pre = new Float32Array(files.length * per);
for (let i = 0; i < files.length; i++) await preprocessInto(files[i]!, model.folder.preprocess, pre, i * per);
const session = await ort.InferenceSession.create(
  model.folder.visionModelPath,
  sessionOptions((await import('node:os')).availableParallelism()),
);
const B = 16;
async function bare(): Promise<number> {
  const t0 = performance.now();
  for (let s = 0; s < files.length; s += B) {
    const n = Math.min(B, files.length - s);
    await session.run({ pixel_values: new ort.Tensor('float32', pre.slice(s * per, (s + n) * per), [n, 3, H, W]) });
  }
  return files.length / ((performance.now() - t0) / 1000);
}
async function tagFolder(labels: string[]): Promise<number> {
  const t0 = performance.now();
  let n = 0;
  for await (const r of tagger.tagStream(files, labels, { batchSize: B })) if (!r.error) n++;
  if (n !== files.length) throw new Error('some images failed');
  return files.length / ((performance.now() - t0) / 1000);
}
await bare();
await tagFolder(labels10);
const rounds = { bare: [] as number[], t10: [] as number[] };
for (let k = 0; k < 3; k++) {
  rounds.bare.push(await bare());
  rounds.t10.push(await tagFolder(labels10));
}
const med = (a: number[]) => pct(a, 50);
console.log(
  `tag over a folder (${files.length} images, 10 labels): ${med(rounds.t10).toFixed(1)} images/s vs bare ONNX session ${med(rounds.bare).toFixed(1)} images/s = ` +
    `${(med(rounds.t10) / med(rounds.bare)).toFixed(2)}× (goal ≥ 0.8)`,
);
await session.release();
await tagger.dispose();
