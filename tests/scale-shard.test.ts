// Sharded extraction as users run it: --shard i/n (or a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with
// --shard-count) writes CACHE/shard-i-of-n/, `cache merge` joins the shards into the cache an unsharded run
// writes, record for record; bad --shard values, a shard that failed midway and shards of another model are
// refused by name. The float16 cache option. (The Slurm array run is in scale-slurm.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { loadDataset } from '../src/data/load.ts';
import { imagePath } from '../src/data/types.ts';
import { FeatureCache } from '../src/features/cache.ts';
import { assignShard, resolveShard, shardName, thisCommand } from '../src/scale/shard.ts';
import { ClipDecoderError } from '../src/errors.ts';
import { assertSameCache } from './helpers/same-cache.ts';

const root = mkdtempSync(join(tmpdir(), 'scale-shard-'));
const data = join(root, 'data');
await buildEmojiTags({ out: data, size: 32, styles: ['noto'], limit: 12 });
const MODEL = 'tests/fixtures/tiny-clip';
const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['bin/clip-decoder.js', ...args], {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...stripSchedulerEnv(process.env), ...env },
  });
/** This test may itself run inside a Slurm job: its own array variables must not shard the unsharded runs. */
function stripSchedulerEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of Object.keys(out)) if (k.startsWith('SLURM_ARRAY_') || k === 'JOB_COMPLETION_INDEX') delete out[k];
  return out;
}
const extract = (cache: string, more: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  cli(['extract', '--dataset', data, '--cache', cache, '--model', MODEL, ...more], env);

const full = join(root, 'full');
const r0 = extract(full);
assert.equal(r0.status, 0, r0.stderr);

const badShard = (e: unknown, flag: string, pattern: RegExp) =>
  e instanceof ClipDecoderError && e.code === 'BAD_PARAMETER' && e.subject === flag && pattern.test(e.message);

test('--shard i/n is validated (0 ≤ i < n, integers), naming the flag; the Slurm and Kubernetes environments give the shard', () => {
  assert.deepEqual(resolveShard({ shard: '2/8' }, {}), { index: 2, count: 8 });
  assert.equal(resolveShard({}, {}), undefined);
  assert.equal(resolveShard({ shard: 'none' }, { SLURM_ARRAY_TASK_ID: '1', SLURM_ARRAY_TASK_COUNT: '3' }), undefined);
  assert.throws(
    () => resolveShard({ shard: '3/3' }, {}),
    (e) => badShard(e, '--shard', /shard index 3 is not below the shard count 3/),
  );
  assert.throws(
    () => resolveShard({ shard: '-1/3' }, {}),
    (e) => badShard(e, '--shard index', /an integer ≥ 0, got "-1"/),
  );
  assert.throws(
    () => resolveShard({ shard: '1/0' }, {}),
    (e) => badShard(e, '--shard count', /a positive integer, got "0"/),
  );
  assert.throws(
    () => resolveShard({ shard: '1' }, {}),
    (e) => badShard(e, '--shard', /must be i\/n/),
  );
  assert.throws(
    () => resolveShard({ shard: '0x1/3' }, {}),
    (e) => badShard(e, '--shard index', /got "0x1"/),
  );
  // Slurm: the task id relative to the array's first, of the array's task count.
  const slurm = { SLURM_ARRAY_TASK_ID: '5', SLURM_ARRAY_TASK_COUNT: '3', SLURM_ARRAY_TASK_MIN: '4' };
  assert.deepEqual(resolveShard({}, slurm), { index: 1, count: 3 });
  assert.deepEqual(resolveShard({ shard: '0/2' }, slurm), { index: 0, count: 2 }, '--shard wins over the environment');
  assert.throws(
    () => resolveShard({}, { SLURM_ARRAY_TASK_ID: '3', SLURM_ARRAY_TASK_COUNT: '3' }),
    (e) => badShard(e, 'SLURM_ARRAY_TASK_ID', /not below the shard count 3/),
  );
  // Kubernetes Indexed Job: the index from the environment, the count from --shard-count.
  assert.deepEqual(resolveShard({ shardCount: '4' }, { JOB_COMPLETION_INDEX: '3' }), { index: 3, count: 4 });
  assert.throws(
    () => resolveShard({}, { JOB_COMPLETION_INDEX: '0' }),
    (e) => badShard(e, '--shard-count', /JOB_COMPLETION_INDEX is set/),
  );
  assert.throws(
    () => resolveShard({ shardCount: '4' }, {}),
    (e) => badShard(e, '--shard-count', /needs JOB_COMPLETION_INDEX/),
  );
  assert.throws(
    () => resolveShard({ shardCount: '4' }, { JOB_COMPLETION_INDEX: '4' }),
    (e) => badShard(e, 'JOB_COMPLETION_INDEX', /not below the shard count 4/),
  );
  // the command a manifest names to finish a shard: explicit --shard i/n (a rerun outside the array gets no index)
  assert.equal(
    thisCommand({ index: 1, count: 3 }, ['node', 'bin/clip-decoder.js', 'extract', '--shard-count', '3', '--cache', 'my cache']),
    "node bin/clip-decoder.js extract --cache 'my cache' --shard 1/3",
  );
  assert.equal(thisCommand({ index: 1, count: 3 }, ['node', 'x.js', '--shard', '1/3']), 'node x.js --shard 1/3');
  // from the command line: exit 2, one line naming the flag
  const r = extract(join(root, 'bad'), ['--shard', '3/3']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'clip-decoder: --shard 3/3: shard index 3 is not below the shard count 3 (shards are 0 … 2)\n');
});

test('the assignment is deterministic, balanced (sizes differ by at most one) and covers every item exactly once', () => {
  const ids = Array.from({ length: 1003 }, (_, i) => `img-${(i * 7919) % 1003}`);
  for (const n of [1, 2, 3, 8, 64]) {
    const parts = Array.from({ length: n }, (_, i) => assignShard(ids, (x) => x, { index: i, count: n }));
    const sizes = parts.map((p) => p.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `n=${n}: ${sizes}`);
    assert.deepEqual(parts.flat().sort(), [...ids].sort(), `n=${n}`);
    // the same in any input order
    const shuffled = [...ids].reverse();
    assert.deepEqual(assignShard(shuffled, (x) => x, { index: 0, count: n }).sort(), [...parts[0]!].sort());
  }
  assert.equal(shardName({ index: 3, count: 8 }), 'shard-0003-of-0008');
  assert.equal(shardName({ index: 7, count: 12000 }), 'shard-00007-of-12000');
});

test('Kubernetes Indexed Job: JOB_COMPLETION_INDEX + --shard-count shards; cache merge equals the unsharded cache record for record', async () => {
  const cache = join(root, 'k8s');
  for (let i = 0; i < 3; i++) {
    const r = extract(cache, ['--shard-count', '3'], { JOB_COMPLETION_INDEX: String(i) });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`^shard ${i}/3: 4 computed`, 'm'));
  }
  // before the merge, the shards are read as they are: nothing to extract, and training reads them directly
  const early = extract(cache);
  assert.equal(early.status, 0, early.stderr);
  assert.match(early.stderr, /^0 computed, 12 already cached/m);
  const small = ['--d-model', '16', '--heads', '2', '--ffn', '32', '--batch-size', '4', '--epochs', '1'];
  const train = (out: string) => cli(['train', '--dataset', data, '--cache', cache, '--model', MODEL, '--out', out, ...small]);
  const fromShards = train(join(root, 'run-shards'));
  assert.equal(fromShards.status, 0, fromShards.stderr);
  const m = cli(['cache', 'merge', cache, '--dataset', data]);
  assert.equal(m.status, 0, m.stderr);
  assert.equal(m.stderr, `clip-decoder: merged 3 shards, 12 records, into ${cache}\n`);
  await assertSameCache(full, cache);
  // training from the merged cache gives what training from the shards gave
  const fromMerged = train(join(root, 'run-merged'));
  assert.equal(fromMerged.status, 0, fromMerged.stderr);
  const report = (run: string) => JSON.parse(readFileSync(join(root, run, 'test-report', 'report.json'), 'utf8'));
  assert.deepEqual(report('run-merged').gzsl, report('run-shards').gzsl);
  // the merged cache is the cache: extract (and train) find every record there
  const again = extract(cache);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /^0 computed, 12 already cached/m);
  const twice = cli(['cache', 'merge', cache]);
  assert.equal(twice.status, 2);
  assert.match(twice.stderr, /already holds a feature cache \(meta\.json\): these shards were merged already/);
});

test('a shard that failed midway is named incomplete, with its command; the same command finishes it; a missing shard is named', async () => {
  const cache = join(root, 'failing');
  const dataset = loadDataset(data);
  // Break one image of shard 1: that shard stops with the others of it cached, its manifest still incomplete.
  const victim = assignShard(dataset.items, (it) => it.id, { index: 1, count: 3 })[2]!;
  const file = imagePath(dataset, victim);
  const good = readFileSync(file);
  const r0 = extract(cache, ['--shard', '0/3']);
  assert.equal(r0.status, 0, r0.stderr);
  const missing = cli(['cache', 'merge', cache]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /shard-0001-of-0003 is missing \(it never ran\); shard-0002-of-0003 is missing/);
  writeFileSync(file, good.subarray(0, 40));
  try {
    const r1 = extract(cache, ['--shard', '1/3']);
    assert.equal(r1.status, 2);
    assert.match(r1.stderr, new RegExp(`${victim.file.replace(/[.]/g, '\\.')}`));
  } finally {
    writeFileSync(file, good);
  }
  assert.equal(extract(cache, ['--shard', '2/3']).status, 0);
  const manifest = JSON.parse(readFileSync(join(cache, 'shard-0001-of-0003', 'shard.json'), 'utf8'));
  assert.equal(manifest.complete, false);
  const incomplete = cli(['cache', 'merge', cache]);
  assert.equal(incomplete.status, 2);
  assert.match(
    incomplete.stderr,
    /shard-0001-of-0003 is incomplete \(killed or failed midway\): rerun its command: node \S*bin\/clip-decoder\.js extract --dataset \S+ --cache \S+failing --model tests\/fixtures\/tiny-clip --shard 1\/3/,
  );
  // the same command again: the cached records are kept, the rest computed
  const rerun = extract(cache, ['--shard', '1/3']);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.match(rerun.stderr, /^shard 1\/3: 1 computed, 3 already cached/m);
  const m = cli(['cache', 'merge', cache, '--out', join(root, 'failing-merged')]);
  assert.equal(m.status, 0, m.stderr);
  // (the rewritten image has a new mtime: compare with an unsharded run over the files as they are now)
  assert.equal(extract(join(root, 'failing-full')).status, 0);
  await assertSameCache(join(root, 'failing-full'), join(root, 'failing-merged'));
});

test('a shard killed midway (kill -9 once it has started) is named incomplete; the same command finishes it', async () => {
  const cache = join(root, 'killed');
  const shardDir = join(cache, 'shard-0002-of-0003');
  const args = ['bin/clip-decoder.js', 'extract', '--dataset', data, '--cache', cache, '--model', MODEL, '--shard', '2/3'];
  const child = spawn(process.execPath, args, { stdio: 'ignore', env: stripSchedulerEnv(process.env) });
  const exited = new Promise<NodeJS.Signals | null>((ok) => child.once('exit', (_code, signal) => ok(signal)));
  // kill it as soon as its manifest is there (written when its cache is open, before any image is encoded)
  for (let t = 0; !existsSync(join(shardDir, 'shard.json')); t++) {
    assert.ok(t < 30_000, 'the shard never started');
    await new Promise((r) => setTimeout(r, 1));
  }
  child.kill('SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  assert.equal(JSON.parse(readFileSync(join(shardDir, 'shard.json'), 'utf8')).complete, false);
  for (const s of ['0/3', '1/3']) assert.equal(extract(cache, ['--shard', s]).status, 0);
  const m = cli(['cache', 'merge', cache]);
  assert.equal(m.status, 2);
  assert.match(
    m.stderr,
    /shard-0002-of-0003 is incomplete \(killed or failed midway\): rerun its command: node \S+ extract .*--shard 2\/3$/m,
  );
  const rerun = extract(cache, ['--shard', '2/3']);
  assert.equal(rerun.status, 0, rerun.stderr);
  assert.equal(cli(['cache', 'merge', cache]).status, 0);
  // (an earlier test rewrote an image: compare with an unsharded run over the files as they are now)
  assert.equal(extract(join(root, 'killed-full')).status, 0);
  await assertSameCache(join(root, 'killed-full'), cache);
});

test('shards of different runs are refused at merge, naming both shards and what differs (the model)', () => {
  const cache = join(root, 'mixed');
  assert.equal(extract(cache, ['--shard', '0/2']).status, 0);
  const other = cli(['extract', '--dataset', data, '--cache', cache, '--model', 'tests/fixtures/tiny-siglip', '--shard', '1/2']);
  assert.equal(other.status, 0, other.stderr);
  const m = cli(['cache', 'merge', cache]);
  assert.equal(m.status, 2);
  assert.match(
    m.stderr,
    /shard-0000-of-0002 and shard-0001-of-0002 are shards of different runs: modelId "tiny-clip" \(shard-0000-of-0002\) vs "tiny-siglip" \(shard-0001-of-0002\); modelFingerprint "[0-9a-f]+" \(shard-0000-of-0002\) vs "[0-9a-f]+" \(shard-0001-of-0002\)/,
  );
  const none = cli(['cache', 'merge', join(root, 'nothing-here')]);
  assert.equal(none.status, 2);
  assert.match(none.stderr, /no shard folders \(shard-i-of-n\) in it; run `clip-decoder extract --shard i\/n` first/);
});

test('--cache-dtype float16: half the bytes, reads within float16 rounding of float32, format 3; a float32 run on it is refused', async () => {
  const cache = join(root, 'half');
  const r = extract(cache, ['--cache-dtype', 'float16']);
  assert.equal(r.status, 0, r.stderr);
  const meta = JSON.parse(readFileSync(join(cache, 'meta.json'), 'utf8'));
  assert.deepEqual([meta.format, meta.dtype], [3, 'float16']);
  assert.equal(statSync(join(cache, 'shard-0000.bin')).size * 2, statSync(join(full, 'shard-0000.bin')).size);
  const a = await FeatureCache.openExisting(full);
  const b = await FeatureCache.openExisting(cache);
  try {
    let worst = 0;
    for (const k of a.keys()) {
      const x = a.read(k);
      const y = b.read(k);
      for (const [u, v] of [
        [x.tokens, y.tokens],
        [x.imageEmbed, y.imageEmbed],
      ] as const)
        for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i]! - v[i]!) / Math.max(Math.abs(u[i]!), 6.1e-5));
    }
    assert.ok(worst > 0 && worst <= 2 ** -11, `relative error ${worst}`);
  } finally {
    a.close();
    b.close();
  }
  const again = extract(cache);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stderr, /^0 computed, 12 already cached/m, "a run without --cache-dtype takes the cache's");
  const refused = extract(cache, ['--cache-dtype', 'float32']);
  assert.equal(refused.status, 2);
  assert.match(refused.stderr, /records stored as float16 \(this run: float32; --cache-dtype\)/);
  const bad = extract(cache, ['--cache-dtype', 'bf16']);
  assert.equal(bad.stderr, 'clip-decoder: --cache-dtype must be float32 or float16, got "bf16"\n');
  // a float16 cache merges like a float32 one
  const sharded = join(root, 'half-sharded');
  for (const s of ['0/2', '1/2']) assert.equal(extract(sharded, ['--cache-dtype', 'float16', '--shard', s]).status, 0);
  assert.equal(cli(['cache', 'merge', sharded]).status, 0);
  await assertSameCache(cache, sharded);
});
