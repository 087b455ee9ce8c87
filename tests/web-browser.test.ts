// The in-browser page (src/web/, export-web) in Debian's Chromium: served by a plain static file server on
// loopback, it loads the tiny CLIP and a tiny head with onnxruntime-web, tags sample images, and its
// probabilities match the Node Tagger's on the same images and labels within 1e-3; a failed model load and an
// unreadable image are reported in the page. Screenshot: tests/output/web-browser.png.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os, { tmpdir } from 'node:os';
import { join, normalize } from 'node:path';
import sharp from 'sharp';
import type { Page } from 'playwright-core';
import { openClipFolder } from '../src/clip/folder.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { buildServer } from '../src/serve/server.ts';
import { taggerWebScoring, webBundle, writeWebBundle } from '../src/web/bundle.ts';
import { makeCalibratedHead } from './helpers/calibrated-head.ts';
import { notoSvg, renderPng } from './helpers/images.ts';
import { launchChromium } from './helpers/browser.ts';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const dir = mkdtempSync(join(tmpdir(), 'web-page-'));
const { head, meta } = await loadCheckpoint(tiny.dir, new TsMatmul());
const written = await writeWebBundle(dir, webBundle({ folder: await openClipFolder(TINY_CLIP), head, meta }));
// A photo-like input: larger than the model's 64 px and not square, so the page resizes and crops.
const wide = join(dir, 'wide.png');
writeFileSync(
  wide,
  await sharp(renderPng(notoSvg('pizza'), 200))
    .resize({ width: 200, height: 150, fit: 'fill' })
    .png()
    .toBuffer(),
);

/** A plain static file server (no special headers: a page that is not cross-origin isolated, one thread). */
function staticServer(root: string, missing: string[] = []): Promise<Server> {
  const types: Record<string, string> = {
    html: 'text/html',
    js: 'text/javascript',
    mjs: 'text/javascript',
    json: 'application/json',
    wasm: 'application/wasm',
  };
  const server = createServer((req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url!, 'http://x').pathname)).replace(/^\/+/, '') || 'index.html';
    const file = join(root, path);
    if (missing.includes(path) || !file.startsWith(root) || !existsSync(file)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': types[path.split('.').pop()!] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}
const url = (s: Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;

const server = await staticServer(dir);
const broken = await staticServer(dir, ['head.onnx']);
const noScripts = await staticServer(dir, ['vendor/ort.wasm.min.mjs']);
const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1 });
const app = buildServer(tagger);
const served = await app.listen({ host: '127.0.0.1', port: 0 });
const browser = await launchChromium();
after(async () => {
  await browser.close();
  await tagger.dispose();
  server.close();
  broken.close();
  noScripts.close();
  await app.close();
});

async function tagInPage(page: Page, file: string, labels: string): Promise<Map<string, number>> {
  await page.setInputFiles('#file', file);
  await page.fill('#labels', labels);
  await page.waitForSelector('#tag:not([disabled])');
  await page.click('#tag');
  // the status line reports the run: "N labels in X ms" (the bars of an earlier run are replaced)
  await page.waitForFunction(() => /labels in \d+ ms/.test(document.getElementById('status')!.textContent ?? ''));
  const rows = await page.$$eval('.bar', (els) =>
    els.map((e) => [(e as HTMLElement).dataset.label!, Number((e as HTMLElement).dataset.probability)] as const),
  );
  return new Map(rows);
}

test('the page tags in the browser as the Node Tagger does (≤ 1e-3), with bars and overlay', async () => {
  console.log(`page: ${written.files} files, ${(written.bytes / 1e6).toFixed(2)} MB`);
  const page = await browser.newPage({ viewport: { width: 1000, height: 620 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(url(server));
  await page.waitForFunction(
    () => (window as unknown as { clipDecoderStats?: { loadMs: number } }).clipDecoderStats?.loadMs != null,
    null,
    {
      timeout: 30000,
    },
  );
  const labels = ['pizza', 'dog', 'sun', 'food', 'sky', 'a slice of cheese pizza'];
  for (const [name, file] of [
    ['64 px pizza (resize to 36 + crop)', tiny.images[1]!.file],
    ['200×150 pizza (resize + crop)', wide],
    ['64 px dog', tiny.images[0]!.file],
  ] as const) {
    const got = await tagInPage(page, file, labels.join(', '));
    const want = await tagger.tag(file, labels);
    let worst = 0;
    for (const l of want.labels) worst = Math.max(worst, Math.abs(got.get(l.label)! - l.probability));
    console.log(
      `${name}: max |page − Tagger| = ${worst.toExponential(2)}; ${want.labels.map((l) => `${l.label} ${l.probability.toFixed(3)}`).join(', ')}`,
    );
    assert.deepEqual([...got.keys()].sort(), [...labels].sort());
    assert.ok(worst <= 1e-3, `${name}: page and Tagger differ by ${worst}`);
  }
  const stats = await page.evaluate(() => (window as unknown as { clipDecoderStats: Record<string, unknown> }).clipDecoderStats);
  console.log(
    `load ${stats.loadMs} ms, first tag done at ${stats.firstTagMs} ms after navigation; tag runs ${JSON.stringify(stats.tagMs)} ms; threads ${stats.threads}`,
  );
  // the overlay of the top label is drawn; clicking another label redraws it
  const top = await page.$eval('.bar', (e) => (e as HTMLElement).dataset.label);
  assert.equal(await page.getAttribute('#view', 'data-overlay'), top);
  await page.click('.bar[data-label="sun"]');
  assert.equal(await page.getAttribute('#view', 'data-overlay'), 'sun');
  mkdirSync('tests/output', { recursive: true });
  await page.screenshot({ path: 'tests/output/web-browser.png' });
  // an unreadable image: the page says so
  await page.setInputFiles('#file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image') });
  await page.click('#tag');
  await page.waitForSelector('#status.error');
  assert.match((await page.textContent('#status'))!, /notes\.png: not a readable image/);
  assert.deepEqual(errors, []);
});

test('a model that fails to load is reported in the page, not a blank screen', async () => {
  const page = await browser.newPage();
  await page.goto(url(broken));
  await page.waitForSelector('#status.error', { timeout: 30000 });
  assert.match((await page.textContent('#status'))!, /cannot load the model: head\.onnx: HTTP 404/);
  assert.equal(await page.getAttribute('#tag', 'disabled'), '');
  // a script the page cannot fetch: said in the page too
  await page.goto(url(noScripts));
  await page.waitForSelector('#status.error', { timeout: 30000 });
  assert.match((await page.textContent('#status'))!, /cannot load the page's scripts/);
});

test('serve answers the page at /web/, cross-origin isolated: onnxruntime-web runs threads, same probabilities', async () => {
  const page = await browser.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`${served}/web/`);
  await page.waitForFunction(
    () => (window as unknown as { clipDecoderStats?: { loadMs: number } }).clipDecoderStats?.loadMs != null,
    null,
    {
      timeout: 30000,
    },
  );
  const stats = await page.evaluate(
    () => (window as unknown as { clipDecoderStats: { threads: number; isolated: boolean } }).clipDecoderStats,
  );
  assert.equal(stats.isolated, true);
  assert.ok(stats.threads >= Math.min(2, os.availableParallelism()), `threads ${stats.threads}`);
  const labels = ['pizza', 'dog', 'food'];
  const got = await tagInPage(page, wide, labels.join(', '));
  const want = await tagger.tag(wide, labels);
  for (const l of want.labels)
    assert.ok(Math.abs(got.get(l.label)! - l.probability) <= 1e-3, `${l.label}: ${got.get(l.label)} vs ${l.probability}`);
  console.log(
    `/web/: ${stats.threads} threads; ${JSON.stringify(await page.evaluate(() => (window as unknown as { clipDecoderStats: object }).clipDecoderStats))}`,
  );
  assert.deepEqual(errors, []);
});

test("a calibrated CLIP-Decoder+ head: the page fuses CLIP's score with the head's as the Tagger does, and marks the calibrated threshold", async () => {
  const h = await makeCalibratedHead();
  const cal = await Tagger.load({ model: TINY_CLIP, head: h.dir, threads: 1 });
  const calDir = mkdtempSync(join(tmpdir(), 'web-page-calibrated-'));
  await writeWebBundle(
    calDir,
    webBundle({ folder: cal.model.folder, head: cal.head!, meta: cal.meta, scoring: taggerWebScoring(cal), defaultLabels: ['dog'] }),
  );
  const calServer = await staticServer(calDir);
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(url(calServer));
    await page.waitForFunction(
      () => /fused, calibrated, threshold 0\.42/.test(document.getElementById('status')!.textContent ?? ''),
      null,
      {
        timeout: 30000,
      },
    );
    const labels = ['dog', 'tree', 'pizza', 'cat', 'sun'];
    for (const file of [tiny.images[0]!.file, tiny.images[1]!.file]) {
      const got = await tagInPage(page, file, labels.join(', '));
      const want = await cal.tag(file, labels);
      let worst = 0;
      for (const l of want.labels) worst = Math.max(worst, Math.abs(got.get(l.label)! - l.probability));
      assert.ok(worst <= 1e-3, `${file}: page and Tagger differ by ${worst}`);
      const pass = await page.$$eval('.bar', (els) =>
        els.map((e) => [(e as HTMLElement).dataset.label!, (e as HTMLElement).dataset.pass] as const),
      );
      for (const [label, p] of pass) assert.equal(p, String(got.get(label)! >= 0.42), label);
      assert.match((await page.textContent('#status'))!, /at or above the calibrated threshold 0\.42/);
    }
    assert.deepEqual(errors, []);
  } finally {
    calServer.close();
    await cal.dispose();
  }
});
