import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../src/clip/model.ts';
import { extractFeatures, viewKey, viewAugmentation } from '../src/features/extract.ts';
import { FeatureCache } from '../src/features/cache.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { makeTestImages } from './helpers/images.ts';

const model = await ClipModel.load('tests/fixtures/tiny-clip', { threads: 1 });
const imgs = await makeTestImages();
const goodFiles = Object.values(imgs.good);

function items(n: number, extraViews = 0) {
  return Array.from({ length: n }, (_, i) => ({ id: `img${i}`, path: goodFiles[i % goodFiles.length]!, extraViews }));
}

function equalRecords(a: FeatureCache, b: FeatureCache, keys: string[]) {
  for (const k of keys) {
    const x = a.read(k);
    const y = b.read(k);
    assert.deepEqual(x.tokens, y.tokens, k);
    assert.deepEqual(x.imageEmbed, y.imageEmbed, k);
  }
}

test('extraction stores every image (and views), a rerun computes nothing, bad files are named', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'feat-'));
  const list = [...items(5, 2), { id: 'broken', path: imgs.bad.truncated! }];
  const errors: string[] = [];
  const s1 = await extractFeatures(model, list, {
    cacheDir,
    datasetFingerprint: 'd1',
    batchSize: 4,
    onError: (e) => errors.push(e.message),
  });
  assert.deepEqual([s1.total, s1.computed, s1.failed, s1.skipped], [16, 15, 1, 0]);
  assert.equal(errors.length, 1);
  assert.ok(errors[0]!.includes(imgs.bad.truncated!));
  const s2 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1', batchSize: 4 });
  assert.deepEqual([s2.computed, s2.skipped, s2.failed], [0, 15, 1]);

  const cache = await FeatureCache.openExisting(cacheDir);
  assert.equal(cache.size, 15);
  // The plain view equals a direct encoding; augmented views differ from it and from each other.
  const [direct] = await (async () => {
    const r = [];
    for await (const x of model.encodeImages([goodFiles[0]!])) r.push(x);
    return r;
  })();
  assert.ok(direct && !direct.error);
  const plain = cache.read('img0');
  for (let i = 0; i < plain.imageEmbed.length; i++) assert.ok(Math.abs(plain.imageEmbed[i]! - direct.imageEmbed[i]!) < 1e-5);
  assert.notDeepEqual(cache.read(viewKey('img0', 1)).imageEmbed, plain.imageEmbed);
  assert.notDeepEqual(cache.read(viewKey('img0', 1)).imageEmbed, cache.read(viewKey('img0', 2)).imageEmbed);
  assert.deepEqual(viewAugmentation('img0', 1, 0), viewAugmentation('img0', 1, 0), 'views are deterministic');
  cache.close();
});

test('a cache from another dataset or model is refused by name', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'feat-'));
  await extractFeatures(model, items(2), { cacheDir, datasetFingerprint: 'd1' });
  await assert.rejects(extractFeatures(model, items(2), { cacheDir, datasetFingerprint: 'other' }), (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError && e.code === 'CACHE_MISMATCH');
    assert.match(e.message, /made for another dataset manifest/);
    assert.ok(e.message.includes(cacheDir));
    return true;
  });
  await assert.rejects(
    extractFeatures(model, items(2), { cacheDir, datasetFingerprint: 'd1', keepCls: true }),
    /made for another model or preprocessing/,
  );
});

test('killed with SIGKILL mid-run, a rerun finishes without recomputing and without a corrupt record', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'feat-kill-'));
  const cacheDir = join(dir, 'cache');
  const list = items(400);
  const listFile = join(dir, 'items.json');
  writeFileSync(listFile, JSON.stringify(list));
  const child = spawn(process.execPath, ['--import', 'tsx', 'tests/helpers/extract-child.ts', cacheDir, listFile], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  await new Promise<void>((resolve) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const done = [...out.matchAll(/progress (\d+)/g)].map((m) => Number(m[1]));
      if (done.some((n) => n >= 10)) child.kill('SIGKILL');
    });
    child.on('exit', () => resolve());
  });
  assert.ok(!out.includes('finished'), 'the child was killed before it finished');
  // Simulate the worst moment too: a torn index line and stray bytes past the last record.
  appendFileSync(join(cacheDir, 'index.jsonl'), '{"key":"img39');
  const before = await FeatureCache.openExisting(cacheDir);
  const committed = before.size;
  before.close();
  assert.ok(committed >= 10 && committed < 400, `committed ${committed}`);

  const s = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'test-dataset', batchSize: 8 });
  assert.equal(s.skipped, committed);
  assert.equal(s.computed, 400 - committed);
  const resumed = await FeatureCache.openExisting(cacheDir);
  assert.equal(resumed.size, 400);
  // Every record equals an uninterrupted run's.
  const fresh = join(dir, 'fresh');
  await extractFeatures(model, list, { cacheDir: fresh, datasetFingerprint: 'test-dataset', batchSize: 8 });
  const ref = await FeatureCache.openExisting(fresh);
  equalRecords(
    resumed,
    ref,
    list.map((it) => it.id),
  );
  assert.ok(readFileSync(join(cacheDir, 'index.jsonl'), 'utf8').endsWith('\n'));
  resumed.close();
  ref.close();
});

async function encodeOne(path: string) {
  for await (const r of model.encodeImages([path])) {
    if (r.error) throw r.error;
    return r;
  }
  throw new Error('no result');
}

function expectCorrupt(f: () => unknown, re: RegExp, key: string) {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError, String(e));
    assert.equal(e.code, 'CACHE_CORRUPT');
    assert.equal(e.subject, key);
    assert.match(e.message, re);
    return true;
  });
}

test('a damaged shard, an edited index slot and NaN in a record are refused by name (CACHE_CORRUPT), never read', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'feat-corrupt-'));
  await extractFeatures(model, items(6), { cacheDir, datasetFingerprint: 'd1', batchSize: 4 });
  const shard = join(cacheDir, 'shard-0000.bin');
  const indexFile = join(cacheDir, 'index.jsonl');
  const clean = readFileSync(shard);
  const index = readFileSync(indexFile, 'utf8');
  const lines = index
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { key: string; slot: number; sha256: string; source: string });
  assert.equal(lines.length, 6);
  assert.ok(
    lines.every((l) => /^[0-9a-f]{64}$/.test(l.sha256) && /^\d+:\d+$/.test(l.source)),
    index,
  );
  const recordBytes = clean.length / 6;
  // 2,000 flipped bytes inside the records of img2 and img3
  const bad = Buffer.from(clean);
  const r = new (await import('../src/nn/rng.ts')).Rng(5);
  for (let k = 0; k < 2000; k++) bad[2 * recordBytes + Math.floor(r.uniform() * 2 * recordBytes)] ^= 0x5a;
  writeFileSync(shard, bad);
  let cache = await FeatureCache.openExisting(cacheDir);
  const slotOf = (key: string) => lines.find((l) => l.key === key)!.slot;
  expectCorrupt(
    () => cache.read('img2'),
    new RegExp(
      `^${shard}: record "img2" \\(slot ${slotOf('img2')}\\) does not match its SHA-256 in ${indexFile} \\(the shard or the index was changed\\)`,
    ),
    'img2',
  );
  expectCorrupt(() => cache.read('img3'), /record "img3"/, 'img3');
  assert.equal(cache.read('img1').tokens.length, cache.meta.numTokens * cache.meta.tokenDim); // the others still read
  cache.close();
  writeFileSync(shard, clean);
  // an index line edited to point img1 at img4's slot: the digest binds the line to its image
  const edited = index.replace(`"key":"img1","shard":0,"slot":${slotOf('img1')}`, `"key":"img1","shard":0,"slot":${slotOf('img4')}`);
  assert.notEqual(edited, index);
  writeFileSync(indexFile, edited);
  cache = await FeatureCache.openExisting(cacheDir);
  expectCorrupt(() => cache.read('img1'), /record "img1" \(slot \d+\) does not match its SHA-256/, 'img1');
  cache.close();
  // NaN in a record whose digest is consistent (as if it had been cached with it): named with file, record and index
  const nan = Buffer.from(clean);
  nan.writeFloatLE(NaN, slotOf('img0') * recordBytes + 4 * 7);
  const { createHash } = await import('node:crypto');
  const digest = createHash('sha256')
    .update('img0\n')
    .update(nan.subarray(slotOf('img0') * recordBytes, (slotOf('img0') + 1) * recordBytes))
    .digest('hex');
  writeFileSync(shard, nan);
  writeFileSync(indexFile, index.replace(lines.find((l) => l.key === 'img0')!.sha256, digest));
  cache = await FeatureCache.openExisting(cacheDir);
  expectCorrupt(
    () => cache.read('img0'),
    new RegExp(`^${shard}: record "img0" \\(slot ${slotOf('img0')}\\) holds a non-finite value at index 7`),
    'img0',
  );
  // and a non-finite record is never written
  const T = cache.meta.numTokens * cache.meta.tokenDim;
  assert.throws(
    () => cache.append([{ key: 'nan', tokens: new Float32Array(T).fill(NaN), imageEmbed: new Float32Array(cache.meta.embedDim) }]),
    /feature record "nan" holds a non-finite value at index 0/,
  );
  cache.close();
  // a damaged index line (not the last) is refused rather than skipped
  writeFileSync(indexFile, index.replace('"key":"img2"', '"kex":"img2"'));
  await assert.rejects(
    FeatureCache.openExisting(cacheDir),
    (e: unknown) =>
      e instanceof ClipDecoderError && e.code === 'CACHE_CORRUPT' && e.message.includes(`${indexFile}: line 3 is not a valid index entry`),
  );
  // and a truncated meta.json is one named error, not a stack trace
  writeFileSync(join(cacheDir, 'meta.json'), '{"format": 2, "model');
  await assert.rejects(
    FeatureCache.openExisting(cacheDir),
    (e: unknown) =>
      e instanceof ClipDecoderError && e.code === 'CACHE_CORRUPT' && e.message.startsWith(`${join(cacheDir, 'meta.json')}: unreadable (`),
  );
});

test('an image overwritten in place is extracted again (size + mtime per record); unchanged ones are not', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'feat-stale-'));
  const cacheDir = join(dir, 'cache');
  const files = [0, 1, 2].map((i) => join(dir, `img${i}.png`));
  files.forEach((f, i) => writeFileSync(f, readFileSync(goodFiles[i]!)));
  const list = files.map((f, i) => ({ id: `img${i}`, path: f, extraViews: 1 }));
  const s1 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1' });
  assert.deepEqual([s1.computed, s1.changed, s1.skipped], [6, 0, 0]);
  // overwrite img1 with another picture, in place (same path, same dataset fingerprint)
  writeFileSync(files[1]!, readFileSync(goodFiles[3]!));
  const s2 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1' });
  assert.deepEqual([s2.computed, s2.changed, s2.skipped], [2, 2, 4]);
  const cache = await FeatureCache.openExisting(cacheDir);
  assert.equal(cache.size, 6);
  const fresh = await encodeOne(files[1]!);
  assert.deepEqual(cache.read('img1').imageEmbed, fresh.imageEmbed);
  assert.notDeepEqual(cache.read('img1').imageEmbed, cache.read('img0').imageEmbed);
  cache.close();
  // the superseding record survives a reopen (last index line of a key wins), and nothing is recomputed
  const s3 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1' });
  assert.deepEqual([s3.computed, s3.skipped], [0, 6]);
  const again = await FeatureCache.openExisting(cacheDir);
  assert.deepEqual(again.read('img1').imageEmbed, fresh.imageEmbed);
  again.close();
});

test('a cache of the previous format (no digests) is refused with a message saying to rebuild it', async () => {
  const cacheDir = mkdtempSync(join(tmpdir(), 'feat-old-'));
  await extractFeatures(model, items(1), { cacheDir, datasetFingerprint: 'd1' });
  const metaPath = join(cacheDir, 'meta.json');
  writeFileSync(metaPath, JSON.stringify({ ...JSON.parse(readFileSync(metaPath, 'utf8')), format: 1 }));
  await assert.rejects(
    extractFeatures(model, items(1), { cacheDir, datasetFingerprint: 'd1' }),
    (e: unknown) =>
      e instanceof ClipDecoderError &&
      e.code === 'CACHE_MISMATCH' &&
      /format 1 \(this version reads 2 \(float32\) and 3 \(float16\)\).*delete this one/.test(e.message),
  );
});
