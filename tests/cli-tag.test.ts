import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

const tiny = await trainTinyHead();
const folder = join(tiny.dir, '..');
function tag(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', 'tag', '--model', TINY_CLIP, '--head', tiny.dir, ...args], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('tag a folder as JSON lines: one line per image, every label with a probability', () => {
  const r = tag(folder, '--labels', 'dog,pizza,sun', '--format', 'jsonl');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { file: string; labels: Record<string, number> });
  assert.equal(lines.length, tiny.images.length);
  for (const l of lines) {
    assert.deepEqual(Object.keys(l.labels).sort(), ['dog', 'pizza', 'sun']);
    for (const p of Object.values(l.labels)) assert.ok(p > 0 && p < 1);
  }
  const dog = lines.find((l) => l.file.endsWith('dog-face.png'))!;
  assert.ok(dog.labels.dog! > dog.labels.pizza!);
});

test('CSV with --top, labels from a file, and the table format', () => {
  const lf = join(mkdtempSync(join(tmpdir(), 'labels-')), 'labels.txt');
  writeFileSync(lf, '# my vocabulary\ndog\npizza\n\nsun\n');
  const r = tag(tiny.images[0]!.file, '--labels-file', lf, '--format', 'csv', '--top', '1');
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.trim().split('\n');
  assert.equal(rows[0], 'file,label,probability');
  assert.equal(rows.length, 2);
  assert.match(rows[1]!, /dog-face\.png,dog,0\.\d+/);
  const t = tag(tiny.images[1]!.file, '--labels', 'dog,pizza', '--format', 'table');
  assert.match(t.stdout, /pizza\.png\s+pizza 0\.\d{3}\s+dog 0\.\d{3}/);
});

test('--explain writes an attention overlay per image and kept label', () => {
  const out = mkdtempSync(join(tmpdir(), 'explain-'));
  const r = tag(tiny.images[0]!.file, tiny.images[1]!.file, '--labels', 'dog,pizza,sun', '--top', '2', '--explain', out);
  assert.equal(r.code, 0, r.stderr);
  const files = readdirSync(out).sort();
  assert.equal(files.length, 4);
  assert.ok(files.some((f) => /dog-face--dog\.png$/.test(f)));
});

test('bad input: a broken file is named and the rest tagged (exit 1); bad flags exit 2', () => {
  const broken = join(mkdtempSync(join(tmpdir(), 'broken-')), 'broken.jpg');
  writeFileSync(broken, 'not a jpeg');
  const r = tag(tiny.images[0]!.file, broken, '--labels', 'dog', '--format', 'jsonl');
  assert.equal(r.code, 1);
  assert.equal(r.stdout.trim().split('\n').length, 1);
  assert.ok(r.stderr.includes(`${broken}: not a readable image`));
  assert.equal(tag(tiny.images[0]!.file).code, 2);
  assert.match(tag(tiny.images[0]!.file).stderr, /no labels: give --labels/);
  assert.match(
    tag(tiny.images[0]!.file, '--labels', 'a', '--threshold', '2').stderr,
    /--threshold must be a probability in \[0, 1\], got "2"/,
  );
  assert.match(tag(tiny.images[0]!.file, '--labels', 'a,a').stderr, /label "a" appears twice/);
});
