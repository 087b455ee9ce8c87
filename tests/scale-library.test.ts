// `embed` and `tag` sharded as users run them: --shard i/n writes OUT/shard-i-of-n/ (embed) or
// FILE.shards/shard-i-of-n/ (tag --out FILE); `embeddings merge` / `results merge` give the files an unsharded run
// writes, byte for byte; a failed shard is named incomplete and the same command finishes it; shards of another
// label set are refused naming both.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiTags } from '../src/data/emoji/build.ts';

const root = mkdtempSync(join(tmpdir(), 'scale-library-'));
await buildEmojiTags({ out: join(root, 'data'), size: 32, styles: ['noto'], limit: 12 });
const images = join(root, 'data', 'images');
const MODEL = 'tests/fixtures/tiny-clip';
const cli = (args: string[]) => {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('SLURM_ARRAY_') || k === 'JOB_COMPLETION_INDEX') delete env[k];
  return spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], { encoding: 'utf8', timeout: 120_000, env });
};
const same = (a: string, b: string) => assert.ok(readFileSync(a).equals(readFileSync(b)), `${a} ≠ ${b}`);

test('embed --shard i/n, then embeddings merge: the .npy files, metadata and embeddings.json of an unsharded run, byte for byte', () => {
  const full = join(root, 'emb-full');
  const sharded = join(root, 'emb');
  const r = cli(['embed', images, '--out', full, '--model', MODEL, '--tokens']);
  assert.equal(r.status, 0, r.stderr);
  for (let i = 0; i < 3; i++) {
    const s = cli(['embed', images, '--out', sharded, '--model', MODEL, '--tokens', '--shard', `${i}/3`]);
    assert.equal(s.status, 0, s.stderr);
    assert.equal(s.stderr, `clip-decoder: 4 embedded, 0 skipped (already in ${join(sharded, `shard-000${i}-of-0003`)}), 0 failed\n`);
  }
  const m = cli(['embeddings', 'merge', sharded]);
  assert.equal(m.status, 0, m.stderr);
  assert.equal(m.stderr, `clip-decoder: merged 3 shards, 12 images, into ${sharded}\n`);
  for (const f of ['img_emb/img_emb_0.npy', 'patch_tokens/patch_tokens_0.npy', 'metadata/metadata_0.jsonl', 'embeddings.json'])
    same(join(full, f), join(sharded, f));
  // a rerun of a shard skips what it has
  const again = cli(['embed', images, '--out', sharded, '--model', MODEL, '--tokens', '--shard', '1/3']);
  assert.match(again.stderr, /0 embedded, 4 skipped/);
});

test('tag --out FILE --shard i/n, then results merge FILE: the unsharded results file byte for byte; a failed shard is named, the same command finishes it', () => {
  const tag = (out: string, more: string[] = []) =>
    cli(['tag', images, '--labels', 'smile,cat,heart', '--model', MODEL, '--head', 'none', '--out', out, ...more]);
  const out = join(root, 'tags.jsonl');
  assert.equal(tag(out, ['--shard', '0/3']).status, 0);
  assert.equal(tag(out, ['--shard', '2/3']).status, 0);
  // shard 1 with one of its images unreadable: it ends with exit 1, its manifest incomplete
  const files = readFileSync(join(root, 'data', 'manifest.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => join(root, 'data', JSON.parse(l).file as string))
    .sort();
  const victim = files[1]!; // sorted position 1 → shard 1 of 3
  const good = readFileSync(victim);
  writeFileSync(victim, good.subarray(0, 30));
  let failed: ReturnType<typeof tag>;
  try {
    failed = tag(out, ['--shard', '1/3']);
  } finally {
    writeFileSync(victim, good);
  }
  assert.equal(failed.status, 1, failed.stderr);
  const m1 = cli(['results', 'merge', out]);
  assert.equal(m1.status, 2);
  assert.match(m1.stderr, /shard-0001-of-0003 is incomplete \(killed or failed midway\): rerun its command: node \S+ tag .* --shard 1\/3/);
  const rerun = tag(out, ['--shard', '1/3']);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.match(rerun.stderr, /1 tagged, 3 skipped/);
  const m2 = cli(['results', 'merge', out]);
  assert.equal(m2.status, 0, m2.stderr);
  // (the victim was rewritten: compare with an unsharded run of the files as they are now)
  const now = join(root, 'tags-now.jsonl');
  assert.equal(tag(now).status, 0);
  same(now, out);
});

test('results merge refuses shards of another label set, naming both shards; tag --shard needs --out', () => {
  const out = join(root, 'mixed.jsonl');
  const base = ['tag', images, '--model', MODEL, '--head', 'none', '--out', out];
  assert.equal(cli([...base, '--labels', 'smile,cat', '--shard', '0/2']).status, 0);
  assert.equal(cli([...base, '--labels', 'smile,dog', '--shard', '1/2']).status, 0);
  const m = cli(['results', 'merge', out]);
  assert.equal(m.status, 2);
  assert.match(
    m.stderr,
    /shard-0000-of-0002 and shard-0001-of-0002 are shards of different runs: labelSet "sha256:[0-9a-f]+" \(shard-0000-of-0002\) vs "sha256:[0-9a-f]+" \(shard-0001-of-0002\)/,
  );
  const noOut = cli(['tag', images, '--model', MODEL, '--head', 'none', '--labels', 'a', '--shard', '0/2']);
  assert.equal(noOut.status, 2);
  assert.equal(noOut.stderr, 'clip-decoder: a sharded tag run writes OUT.shards/shard-i-of-n/: give --out <results.jsonl>\n');
});
