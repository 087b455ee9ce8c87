// `tag DIR --out results.jsonl`: incremental tagging of a library with the bundled model, through the real CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';

const LABELS = 'red,green,blue,dog';

function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A library of small solid-colour images, with awkward names, in PNG, JPEG and WebP. */
async function makeLibrary(n = 6): Promise<{ dir: string; files: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'library-tag-'));
  mkdirSync(join(dir, 'holiday 2024', 'día uno'), { recursive: true });
  const names = ['red.png', 'holiday 2024/blue sky.jpg', 'holiday 2024/día uno/grün 🌲.webp', 'two\nlines.png'];
  for (let i = names.length; i < n; i++) names.push(`more/img-${i}.png`);
  mkdirSync(join(dir, 'more'), { recursive: true });
  const colours = [
    [220, 20, 20],
    [20, 20, 220],
    [20, 200, 20],
  ];
  const files: string[] = [];
  for (const [i, name] of names.entries()) {
    const [r, g, b] = colours[i % 3]!;
    const img = sharp({ create: { width: 40, height: 32, channels: 3, background: { r, g, b } } });
    const file = join(dir, name);
    await (name.endsWith('.jpg') ? img.jpeg() : name.endsWith('.webp') ? img.webp() : img.png()).toFile(file);
    files.push(file);
  }
  return { dir, files };
}

interface Rec {
  path: string;
  size: number;
  mtimeNs: string;
  model: string;
  head: string;
  labelSet: string;
  probabilities: Record<string, number>;
  sha256: string;
}

const records = (file: string): Rec[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Rec);

function validDigest(line: string): boolean {
  const { sha256, ...rest } = JSON.parse(line) as Rec;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex') === sha256;
}

test('tag --out: one record per image with file state, model, head, label set and probabilities equal to plain tag', async () => {
  const { dir, files } = await makeLibrary();
  const out = join(dir, '..', `${dir.split('/').at(-1)}-results.jsonl`);
  const r = cli('tag', dir, '--labels', LABELS, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '', 'records go to the file, not stdout');
  assert.match(r.stderr, new RegExp(`${files.length} tagged, 0 skipped \\(already in .*\\), 0 failed`));
  const recs = records(out);
  assert.deepEqual(recs.map((x) => x.path).sort(), [...files].sort());
  for (const line of readFileSync(out, 'utf8').split('\n').filter(Boolean)) assert.ok(validDigest(line));
  const plain = cli('tag', dir, '--labels', LABELS, '--format', 'jsonl')
    .stdout.trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { file: string; labels: Record<string, number> });
  for (const rec of recs) {
    const st = statSync(rec.path, { bigint: true });
    assert.equal(rec.size, Number(st.size));
    assert.equal(rec.mtimeNs, String(st.mtimeNs));
    assert.match(rec.model, /^pico-clip@[0-9a-f]{16}$/);
    assert.match(rec.head, /^pico-clip-decoder@[0-9a-f]{16}\+calibration@[0-9a-f]{16}$/); // the bundled head ships its calibration
    assert.match(rec.labelSet, /^sha256:[0-9a-f]{16}$/);
    assert.deepEqual(rec.probabilities, plain.find((p) => p.file === rec.path)!.labels, rec.path);
  }
});

test('a rerun skips what is done, redoes changed files, --force redoes all; another label set is refused', async () => {
  const { dir, files } = await makeLibrary();
  const out = join(dir, 'results.jsonl');
  assert.equal(cli('tag', dir, '--labels', LABELS, '--out', out).code, 0);
  const before = readFileSync(out);
  const again = cli('tag', dir, '--labels', 'dog, blue,green,red', '--out', out); // same set, other order
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, new RegExp(`0 tagged, ${files.length} skipped`));
  assert.deepEqual(readFileSync(out), before, 'an unchanged library appends nothing');

  // One file rewritten (new size and mtime), one only touched: both are tagged again, the last record wins.
  await sharp({ create: { width: 40, height: 32, channels: 3, background: { r: 20, g: 20, b: 220 } } })
    .png()
    .toFile(files[0]!);
  const later = new Date(Date.now() + 5000);
  utimesSync(files[1]!, later, later);
  const changed = cli('tag', dir, '--labels', LABELS, '--out', out);
  assert.match(changed.stderr, new RegExp(`2 tagged, ${files.length - 2} skipped`));
  const recs = records(out);
  assert.equal(recs.length, files.length + 2);
  const last = recs.filter((x) => x.path === files[0]).at(-1)!;
  assert.ok(last.probabilities.blue! > last.probabilities.red!, 'red.png is blue now');

  const other = cli('tag', dir, '--labels', 'cat,dog', '--out', out);
  assert.equal(other.code, 2);
  assert.match(other.stderr, /--out .*results\.jsonl: holds results of another label set: .*name a new --out file, or pass --force/);
  assert.equal(records(out).length, files.length + 2, 'nothing mixed in');
  const forced = cli('tag', dir, '--labels', 'cat,dog', '--out', out, '--force');
  assert.equal(forced.code, 0, forced.stderr);
  const fresh = records(out);
  assert.equal(fresh.length, files.length, '--force starts a new file');
  assert.deepEqual(Object.keys(fresh[0]!.probabilities).sort(), ['cat', 'dog']);
  const head = cli('tag', dir, '--labels', 'cat,dog', '--out', out, '--head', 'none');
  assert.equal(head.code, 2);
  assert.match(head.stderr, /holds results of another head: head pico-clip-decoder@\S+ \(this run: none\+calibration@[0-9a-f]{16}\)/);
});

test('a torn last line is cut off and a damaged line ignored: their images are tagged again', async () => {
  const { dir, files } = await makeLibrary(5);
  const out = join(dir, 'results.jsonl');
  assert.equal(cli('tag', dir, '--labels', LABELS, '--out', out).code, 0);
  const lines = readFileSync(out, 'utf8').split('\n').filter(Boolean);
  // Line 2's probability edited (digest no longer matches); a half-written record after the last line.
  const damaged = lines[1]!.replace(/"red":0\.\d+/, '"red":0.999');
  assert.notEqual(damaged, lines[1]);
  writeFileSync(out, `${[lines[0], damaged, ...lines.slice(2)].join('\n')}\n`);
  appendFileSync(out, lines[2]!.slice(0, 40));
  const r = cli('tag', dir, '--labels', LABELS, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /line 2 is damaged \(its SHA-256 does not match its content\): ignored/);
  assert.match(r.stderr, /the last line was cut short/);
  assert.match(r.stderr, new RegExp(`1 tagged, ${files.length - 1} skipped`));
  const text = readFileSync(out, 'utf8');
  assert.ok(text.endsWith('\n'));
  assert.equal(text.split('\n').filter(Boolean).length, files.length + 1);
});

test('kill -9 during a run leaves only whole records; the rerun finishes the rest', async () => {
  const { dir } = await makeLibrary(4);
  // Enough images that the run is still going when the poll below sees its 20th record, on a loaded machine too.
  for (let i = 0; i < 1000; i++)
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: i % 256, g: 90, b: 30 } } })
      .png()
      .toFile(join(dir, 'more', `k-${i}.png`));
  const total = 1004;
  const out = join(dir, 'results.jsonl');
  const child = spawn(process.execPath, ['bin/clip-decoder.js', 'tag', dir, '--labels', LABELS, '--out', out, '--batch-size', '1'], {
    stdio: 'ignore',
  });
  // Killed once some records are in, before all are.
  let n = 0;
  for (let i = 0; i < 1200 && n < 20; i++) {
    await new Promise((r) => setTimeout(r, 25));
    try {
      n = readFileSync(out, 'utf8').split('\n').length - 1;
    } catch {}
  }
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const text = readFileSync(out, 'utf8');
  const lines = text.split('\n');
  assert.equal(lines.pop(), '', 'one write per record: no torn line after kill -9');
  assert.ok(lines.length >= 20 && lines.length < total, `killed mid-run (${lines.length} records)`);
  for (const l of lines) assert.ok(validDigest(l));
  const r = cli('tag', dir, '--labels', LABELS, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`${total - lines.length} tagged, ${lines.length} skipped`));
  const recs = records(out);
  assert.equal(recs.length, total);
  assert.equal(new Set(recs.map((x) => x.path)).size, total);
});

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

test('on a terminal: a progress bar with rate and ETA over the images to tag, then the summary line', {
  skip: !hasScript && 'needs script(1) from util-linux',
}, async () => {
  const { dir } = await makeLibrary(4);
  for (let i = 0; i < 36; i++)
    await sharp({ create: { width: 24, height: 24, channels: 3, background: { r: 9 * i, g: 90, b: 30 } } })
      .png()
      .toFile(join(dir, 'more', `t-${i}.png`));
  const out = join(dir, 'results.jsonl');
  // Half of them done already: the bar counts the 20 left.
  const first = [...readdirSync(join(dir, 'more'))]
    .sort()
    .slice(0, 20)
    .map((f) => join(dir, 'more', f));
  assert.equal(cli('tag', ...first, '--labels', LABELS, '--out', out).code, 0);
  const q = (a: string) => `'${a.replace(/'/g, "'\\''")}'`;
  const cmd = [process.execPath, 'bin/clip-decoder.js', 'tag', dir, '--labels', LABELS, '--out', out, '--batch-size', '2'].map(q).join(' ');
  const r = spawnSync('script', ['-qec', `stty cols 160 rows 40; ${cmd}`, '/dev/null'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /tagging \[[^\]]*\] \d+\/20 \d+% \| [\d.]+\/s \| ETA /, r.stdout);
  assert.match(r.stdout, /clip-decoder: 20 tagged, 20 skipped \(already in .*results\.jsonl\), 0 failed/);
});

test('bad input: --xmp, --force, --dry-run need --out; --out with --format is refused; an unreadable image is named, exit 1', async () => {
  const { dir, files } = await makeLibrary(4);
  for (const flag of ['--xmp', '--force', '--dry-run']) {
    const r = cli('tag', dir, '--labels', LABELS, flag);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`${flag} works with --out <results.jsonl>`));
  }
  assert.match(cli('tag', dir, '--labels', LABELS, '--out', join(dir, 'r.jsonl'), '--format', 'csv').stderr, /--out writes records/);
  writeFileSync(join(dir, 'broken.jpg'), 'not a jpeg');
  const out = join(dir, 'r.jsonl');
  const r = cli('tag', dir, '--labels', LABELS, '--out', out);
  assert.equal(r.code, 1);
  assert.ok(r.stderr.includes(`${join(dir, 'broken.jpg')}: not a readable image`), r.stderr);
  assert.match(r.stderr, new RegExp(`${files.length} tagged, 0 skipped .*, 1 failed`));
  const foreign = join(dir, 'foreign.jsonl');
  writeFileSync(foreign, '{"file":"x.jpg","labels":{}}\n');
  const f = cli('tag', files[0]!, '--labels', LABELS, '--out', foreign);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /line 1 is not a clip-decoder tag record: this is not a results file/);
  const unwritable = cli('tag', files[0]!, '--labels', LABELS, '--out', join(dir, 'more'));
  assert.equal(unwritable.code, 2);
  assert.match(unwritable.stderr, /--out .*more: cannot (read|open) the results file/);
});
