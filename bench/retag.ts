// npm run bench:retag [-- --images 10000 --first 10000 --keep]
//
// Incremental tagging of a photo library: `clip-decoder tag DIR --out results.jsonl` (the compiled CLI, bundled
// model and head, 8 labels) over a folder of generated 24×24 PNGs. Times, in this same run: the first run
// (tags everything; with --first N < --images it tags N images and the full first run is extrapolated from
// that rate, said so in the output), then a rerun over the unchanged folder (everything skipped), and a rerun
// after 1 % of the files changed. Prints each time and the ratio first run / rerun.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const { values } = parseArgs({
  options: {
    images: { type: 'string', default: '10000' },
    first: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const N = Number(values.images);
const FIRST = Math.min(N, Number(values.first ?? N));
const LABELS = 'red,green,blue,yellow,dog,cat,sky,food';
const root = mkdtempSync(join(tmpdir(), 'bench-retag-'));
const dir = join(root, 'library');
const results = join(root, 'results.jsonl');

async function makeImages(from: number, to: number): Promise<void> {
  const CHUNK = 64;
  for (let s = from; s < to; s += CHUNK) {
    await Promise.all(
      Array.from({ length: Math.min(CHUNK, to - s) }, (_, j) => {
        const i = s + j;
        const sub = join(dir, `roll-${Math.floor(i / 1000)}`);
        mkdirSync(sub, { recursive: true });
        const background = { r: (i * 37) % 256, g: (i * 91) % 256, b: (i * 151) % 256 };
        return sharp({ create: { width: 24, height: 24, channels: 3, background } })
          .png()
          .toFile(join(sub, `img-${String(i).padStart(5, '0')}.png`));
      }),
    );
  }
}

function tag(): { seconds: number; summary: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', 'tag', dir, '--labels', LABELS, '--out', results], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  const seconds = (performance.now() - t0) / 1000;
  if (r.status !== 0) throw new Error(`tag failed (${r.status}): ${r.stderr.slice(-2000)}`);
  return { seconds, summary: r.stderr.trim().split('\n').at(-1)! };
}

try {
  let t0 = performance.now();
  await makeImages(0, FIRST);
  console.log(`made ${FIRST} images in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const first = tag();
  const rate = FIRST / first.seconds;
  console.log(`first run, ${FIRST} images: ${first.seconds.toFixed(2)} s (${rate.toFixed(0)} images/s)  | ${first.summary}`);
  let firstFull = first.seconds;
  if (FIRST < N) {
    // The rest are tagged now too, so the reruns below run over a results file of all N images.
    t0 = performance.now();
    await makeImages(FIRST, N);
    console.log(`made ${N - FIRST} more images in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    const rest = tag();
    firstFull = N / rate;
    console.log(`tagged the other ${N - FIRST}: ${rest.seconds.toFixed(2)} s  | ${rest.summary}`);
    console.log(`first run over ${N} images, EXTRAPOLATED from the rate above: ${firstFull.toFixed(1)} s`);
  }
  const lines = readFileSync(results, 'utf8').split('\n').length - 1;
  const rerun = tag();
  console.log(`rerun, unchanged folder of ${N}: ${rerun.seconds.toFixed(2)} s  | ${rerun.summary}`);
  // 1 % of the files get a new mtime: only those are tagged again.
  const changed = Math.max(1, Math.floor(N / 100));
  const when = new Date(Date.now() + 60_000);
  for (let i = 0; i < changed; i++) {
    const k = Math.floor((i * N) / changed);
    utimesSync(join(dir, `roll-${Math.floor(k / 1000)}`, `img-${String(k).padStart(5, '0')}.png`), when, when);
  }
  const partial = tag();
  console.log(`rerun after ${changed} files changed: ${partial.seconds.toFixed(2)} s  | ${partial.summary}`);
  console.log(`results file: ${lines} records after the first run`);
  console.log(
    `RATIO first run / unchanged rerun = ${(firstFull / rerun.seconds).toFixed(1)}× (${firstFull.toFixed(1)} s / ${rerun.seconds.toFixed(2)} s, ${N} images)`,
  );
} finally {
  if (values.keep) console.log(`kept ${root}`);
  else rmSync(root, { recursive: true, force: true });
}
