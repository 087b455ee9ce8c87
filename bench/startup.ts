// npm run bench:startup [-- --runs 7 --bin bin/clip-decoder.js]
// Whole-process wall time of the command line, as a user sees it: `clip-decoder --help`, and tagging one image
// with the bundled model, against the bare Node script (bench/startup-bare.mjs) that loads the same two ONNX
// sessions and runs them once, measured in the same run. Goals: --help under 0.3 s; tag within 1.5× bare.
// Medians over --runs runs each, the three commands interleaved so a busy machine slows all of them alike.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';

const { values } = parseArgs({
  options: { runs: { type: 'string', default: '7' }, bin: { type: 'string', default: 'bin/clip-decoder.js' } },
});
const runs = Number(values.runs);
const bin = resolve(values.bin);
const dir = mkdtempSync(join(tmpdir(), 'bench-startup-'));
const image = join(dir, 'scene.png');
// A 480×320 photo-sized scene: coloured shapes on a gradient-like background.
const svg =
  `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="320"><rect width="480" height="320" fill="#3a7bd5"/>` +
  `<circle cx="140" cy="160" r="90" fill="#f5c542"/><rect x="270" y="90" width="150" height="150" fill="#d63a3a"/></svg>`;
writeFileSync(image, await sharp(Buffer.from(svg)).png().toBuffer());

const commands = {
  help: [bin, '--help'],
  tag: [bin, 'tag', image, '--labels', 'dog, beach, sunset, food', '--format', 'jsonl'],
  bare: [resolve('bench/startup-bare.mjs'), image],
} as const;
const times: Record<keyof typeof commands, number[]> = { help: [], tag: [], bare: [] };
for (let i = 0; i < runs + 1; i++) {
  for (const [name, args] of Object.entries(commands) as [keyof typeof commands, readonly string[]][]) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${name} failed (${r.status}): ${r.stderr}`);
    if (i > 0) times[name].push(ms); // the first round warms the page cache
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const fmt = (xs: number[]) => `${(median(xs) / 1000).toFixed(3)} s (min ${(Math.min(...xs) / 1000).toFixed(3)})`;
const help = median(times.help),
  tag = median(times.tag),
  bare = median(times.bare);
console.log(`bin ${values.bin}; ${runs} runs each, medians`);
console.log(`clip-decoder --help: ${fmt(times.help)}; goal < 0.3 s: ${help < 300 ? 'met' : 'missed'}`);
console.log(`clip-decoder tag (1 image, 4 labels, bundled model): ${fmt(times.tag)}`);
console.log(`bare script (same two ONNX sessions, run once): ${fmt(times.bare)}`);
console.log(
  `tag / bare = ${(tag / bare).toFixed(2)}× (goal ≤ 1.5×: ${tag / bare <= 1.5 ? 'met' : 'missed'}); --help / bare = ${(help / bare).toFixed(2)}×`,
);
