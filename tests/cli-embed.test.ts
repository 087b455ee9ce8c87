import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { makeTestImages } from './helpers/images.ts';

const FIXTURE = 'tests/fixtures/tiny-clip';
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--help lists the commands', () => {
  const r = cli('--help');
  assert.equal(r.code, 0);
  assert.match(r.stdout, /embed-text/);
  assert.match(r.stdout, /embed-image/);
});

test('embed-text --json gives one embedding per text', () => {
  const r = cli('embed-text', '--model', FIXTURE, '--labels', 'dog', 'red car', '--json');
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { text: string; embedding: number[] });
  assert.deepEqual(
    lines.map((l) => l.text),
    ['dog', 'red car'],
  );
  for (const l of lines) {
    assert.equal(l.embedding.length, 16);
    assert.ok(Math.abs(Math.hypot(...l.embedding) - 1) < 1e-5, 'labels are L2-normalised');
  }
});

test('embed-image walks folders, names bad files, goes on, exits 1 at the end', async () => {
  const imgs = await makeTestImages();
  const r = cli('embed-image', '--model', FIXTURE, '--json', '--tokens', imgs.dir, join(imgs.dir, 'nope.png'));
  assert.equal(r.code, 1);
  const out = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { file: string; embedding: number[]; tokens: number[]; tokensShape: number[] });
  assert.equal(out.length, Object.keys(imgs.good).length);
  for (const o of out) {
    assert.equal(o.embedding.length, 16);
    assert.deepEqual(o.tokensShape, [16, 32]);
    assert.equal(o.tokens.length, 16 * 32);
  }
  for (const bad of Object.values(imgs.bad)) assert.ok(r.stderr.includes(bad), `stderr names ${bad}`);
  assert.ok(r.stderr.includes('nope.png: no such file or folder'));
  assert.match(r.stderr, /4 of \d+ inputs failed/);
});

test('a missing model folder is one line and exit code 2', () => {
  const r = cli('embed-text', '--model', '/no/such/model', 'dog');
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^clip-decoder: \/no\/such\/model: no such model folder/);
});

test('a bad flag value is named, exit code 2', () => {
  const r = cli('embed-image', '--model', FIXTURE, '--batch-size', 'zero', 'x.png');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--batch-size must be a positive integer, got "zero"/);
});
