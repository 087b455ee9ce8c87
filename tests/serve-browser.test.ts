// Drives the web page in Debian's Chromium with playwright-core: upload an image, enter labels, check the bars
// and the attention overlay render; saves a screenshot under tests/output/.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { Tagger } from '../src/tagger/tagger.ts';
import { buildServer } from '../src/serve/server.ts';
import { launchChromium } from './helpers/browser.ts';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1 });
const app = buildServer(tagger);
const address = await app.listen({ host: '127.0.0.1', port: 0 });
const browser = await launchChromium();
after(async () => {
  await browser.close();
  await app.close();
});

test('upload an image, enter labels, see the bars and the overlay', async () => {
  const page = await browser.newPage({ viewport: { width: 1000, height: 620 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(address);
  await page.setInputFiles('#file', tiny.images[1]!.file);
  await page.waitForSelector('#view:not([hidden])');
  await page.fill('#labels', 'pizza, dog, sun, food');
  await page.click('#tag');
  await page.waitForSelector('.bar');
  const rows = await page.$$eval('.bar', (els) =>
    els.map((e) => ({
      label: (e as HTMLElement).dataset.label,
      pct: e.querySelector('.pct')!.textContent,
      // The drawn bar: its rendered width as a fraction of the track.
      drawn: e.querySelector('.fill')!.getBoundingClientRect().width / e.querySelector('.track')!.getBoundingClientRect().width,
    })),
  );
  assert.deepEqual(rows.map((r) => r.label).sort(), ['dog', 'food', 'pizza', 'sun']);
  for (const r of rows) {
    assert.match(r.pct!, /^\d+\.\d%$/);
    assert.ok(Math.abs(r.drawn - parseFloat(r.pct!) / 100) < 0.02, `${r.label}: bar drawn at ${r.drawn}, label says ${r.pct}`);
  }
  assert.ok(['pizza', 'food'].includes(rows[0]!.label!), `top label ${rows[0]!.label}`);
  // The first label's overlay is drawn; clicking another label redraws it.
  assert.equal(await page.getAttribute('#view', 'data-overlay'), rows[0]!.label);
  await page.click(`.bar[data-label="sun"]`);
  assert.equal(await page.getAttribute('#view', 'data-overlay'), 'sun');
  assert.equal(await page.$eval('.bar.selected', (e) => (e as HTMLElement).dataset.label), 'sun');
  // The canvas holds the heat colours, not just the image: count purple-ish pixels.
  const tinted = await page.$eval('#view', (c) => {
    const d = (c as HTMLCanvasElement).getContext('2d')!.getImageData(0, 0, 320, 320).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 2]! > d[i + 1]! + 30) n++;
    return n;
  });
  assert.ok(tinted > 1000, `tinted pixels ${tinted}`);
  mkdirSync('tests/output', { recursive: true });
  await page.screenshot({ path: 'tests/output/web-page.png' });
  // A bad upload shows the server's message.
  await page.setInputFiles('#file', { name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image') });
  await page.click('#tag');
  await page.waitForSelector('#status.error');
  assert.match((await page.textContent('#status'))!, /not a readable image/);
  assert.deepEqual(errors, []);
});
