// The kill -9 goal in small (bench/kill9.ts with 2 kills): random SIGKILLs during extraction and training, each
// resumed, end byte for byte where an uninterrupted run ends. `npm run bench:kill9` runs the full 20 kills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('2 random kill -9 with resumes: cache, checkpoints, report and losses equal an uninterrupted run', () => {
  // The kill times are drawn from the reference run's pace; on a loaded machine a run can finish before its
  // kill lands. Such a try (fewer kills than asked, results identical) is redrawn with the next seed.
  let out = '';
  for (const seed of [2, 3, 4]) {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'bench/kill9.ts', '--kills', '2', '--epochs', '3', '--images', '24', '--seed', String(seed)],
      { encoding: 'utf8', timeout: 180_000 },
    );
    out = r.stdout + r.stderr;
    assert.doesNotMatch(r.stdout, /^DIFFERENT/m, out);
    if (r.status !== 0 && /^[01] kills \(/m.test(r.stdout)) continue;
    assert.equal(r.status, 0, out);
    assert.match(r.stdout, /^2 kills \(/m);
    assert.match(r.stdout, /^work lost per kill: at most [0-4] training steps \(checkpoint every 4\), 0 committed feature records$/m);
    assert.match(
      r.stdout,
      /^identical: every cache record, every checkpoint tensor, the test report and the losses are byte for byte the same$/m,
    );
    return;
  }
  assert.fail(`three tries each finished before their second kill:\n${out}`);
});
