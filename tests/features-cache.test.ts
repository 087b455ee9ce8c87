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
  const s1 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1', batchSize: 4, onError: (e) => errors.push(e.message) });
  assert.deepEqual([s1.total, s1.computed, s1.failed, s1.skipped], [16, 15, 1, 0]);
  assert.equal(errors.length, 1);
  assert.ok(errors[0]!.includes(imgs.bad.truncated!));
  const s2 = await extractFeatures(model, list, { cacheDir, datasetFingerprint: 'd1', batchSize: 4 });
  assert.deepEqual([s2.computed, s2.skipped, s2.failed], [0, 15, 1]);

  const cache = await FeatureCache.openExisting(cacheDir);
  assert.equal(cache.size, 15);
  // The plain view equals a direct encoding; augmented views differ from it and from each other.
  const [direct] = await (async () => { const r = []; for await (const x of model.encodeImages([goodFiles[0]!])) r.push(x); return r; })();
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
  await assert.rejects(extractFeatures(model, items(2), { cacheDir, datasetFingerprint: 'd1', keepCls: true }), /made for another model or preprocessing/);
});

test('killed with SIGKILL mid-run, a rerun finishes without recomputing and without a corrupt record', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'feat-kill-'));
  const cacheDir = join(dir, 'cache');
  const list = items(400);
  const listFile = join(dir, 'items.json');
  writeFileSync(listFile, JSON.stringify(list));
  const child = spawn(process.execPath, ['--import', 'tsx', 'tests/helpers/extract-child.ts', cacheDir, listFile], { stdio: ['ignore', 'pipe', 'inherit'] });
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
  equalRecords(resumed, ref, list.map((it) => it.id));
  assert.ok(readFileSync(join(cacheDir, 'index.jsonl'), 'utf8').endsWith('\n'));
  resumed.close();
  ref.close();
});
