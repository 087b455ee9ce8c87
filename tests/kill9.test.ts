// The kill -9 goal in small (bench/kill9.ts with 2 kills): random SIGKILLs during extraction and training, each
// resumed, end byte for byte where an uninterrupted run ends. `npm run bench:kill9` runs the full 20 kills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('2 random kill -9 with resumes: cache, checkpoints, report and losses equal an uninterrupted run', () => {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'bench/kill9.ts', '--kills', '2', '--epochs', '3', '--images', '24', '--seed', '2'],
    { encoding: 'utf8', timeout: 180_000 },
  );
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^2 kills \(/m);
  assert.match(r.stdout, /^work lost per kill: at most [0-4] training steps \(checkpoint every 4\), 0 committed feature records$/m);
  assert.match(
    r.stdout,
    /^identical: every cache record, every checkpoint tensor, the test report and the losses are byte for byte the same$/m,
  );
});
