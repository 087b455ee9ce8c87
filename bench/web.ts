// npm run bench:web [-- --runs 3]
// The in-browser page (export-web) with the bundled pico-CLIP and head, in Debian's Chromium: page size, time
// from navigation to models loaded, to the first tag done (cold: label embeddings computed), and a second tag
// with the labels cached; without cross-origin isolation (1 thread) and with it (threads), against the Node
// Tagger tagging the same image in the same run. Medians over --runs page loads each.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { chromium } from 'playwright-core';
import { DEFAULT_HEAD, DEFAULT_MODEL } from '../src/tagger/defaults.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { exportWeb } from '../src/web/bundle.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const runs = Number(values.runs);
const dir = mkdtempSync(join(tmpdir(), 'bench-web-'));
const { files, bytes } = await exportWeb({ model: DEFAULT_MODEL, head: DEFAULT_HEAD, out: dir });
const image = join(dir, 'scene.png');
const svg =
  `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320"><rect width="480" height="320" fill="#3a7bd5"/>` +
  `<circle cx="140" cy="160" r="90" fill="#f5c542"/><rect x="270" y="90" width="150" height="150" fill="#d63a3a"/></svg>`;
writeFileSync(image, await sharp(Buffer.from(svg)).png().toBuffer());
const labels = 'dog, beach, sunset, food, sun, heart, car, tree';

const server = (isolated: boolean) =>
  new Promise<ReturnType<typeof createServer>>((resolve) => {
    const s = createServer((req, res) => {
      const path = new URL(req.url!, 'http://x').pathname.replace(/^\/+/, '') || 'index.html';
      const headers: Record<string, string> = {};
      if (isolated) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
      if (/\.m?js$/.test(path)) headers['content-type'] = 'text/javascript';
      else if (path.endsWith('.wasm')) headers['content-type'] = 'application/wasm';
      else if (path.endsWith('.html')) headers['content-type'] = 'text/html';
      let body: Buffer;
      try {
        body = readFileSync(join(dir, path));
      } catch {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, headers).end(body);
    });
    s.listen(0, '127.0.0.1', () => resolve(s));
  });

const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu', '--no-first-run'] });
const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
console.log(`page: ${files} files, ${(bytes / 1e6).toFixed(1)} MB (of which onnxruntime-web's wasm 14.3 MB)`);
for (const isolated of [false, true]) {
  const s = await server(isolated);
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
  const load: number[] = [],
    first: number[] = [],
    firstRun: number[] = [],
    second: number[] = [];
  let threads = 0;
  for (let r = 0; r < runs; r++) {
    const page = await browser.newPage();
    await page.goto(url);
    await page.waitForFunction(
      () => (window as unknown as { clipDecoderStats: { loadMs: number } }).clipDecoderStats.loadMs != null,
      null,
      {
        timeout: 60000,
      },
    );
    for (let k = 0; k < 2; k++) {
      await page.setInputFiles('#file', image);
      await page.fill('#labels', labels);
      await page.waitForSelector('#tag:not([disabled])');
      await page.click('#tag');
      await page.waitForFunction(
        (n) => (window as unknown as { clipDecoderStats: { tagMs: number[] } }).clipDecoderStats.tagMs.length > n,
        k,
      );
    }
    const st = await page.evaluate(
      () =>
        (window as unknown as { clipDecoderStats: { loadMs: number; firstTagMs: number; tagMs: number[]; threads: number } })
          .clipDecoderStats,
    );
    load.push(st.loadMs);
    first.push(st.firstTagMs);
    firstRun.push(st.tagMs[0]!);
    second.push(st.tagMs[1]!);
    threads = st.threads;
    await page.close();
  }
  s.close();
  console.log(
    `${isolated ? 'cross-origin isolated' : 'plain static server  '} (${threads} thread${threads > 1 ? 's' : ''}): models loaded ${median(load)} ms, ` +
      `first tag done ${median(first)} ms after navigation (the tag itself ${median(firstRun)} ms, labels embedded), second tag ${median(second)} ms (labels cached)`,
  );
}
await browser.close();
const tagger = await Tagger.load({});
const t0 = performance.now();
await tagger.tag(image, labels.split(', '));
const t1 = performance.now();
await tagger.tag(image, labels.split(', '));
console.log(
  `Node Tagger, same run: first tag ${Math.round(t1 - t0)} ms (sessions opened, labels embedded), second ${Math.round(performance.now() - t1)} ms`,
);
await tagger.dispose();
