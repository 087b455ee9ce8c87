// `clip-decoder train` as a user runs it: --resume takes the run's values for flags not given, refuses changed
// ones in one line (exit 2), says so when there is nothing to resume; the training bar on a terminal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEmojiTags } from '../src/data/emoji/build.ts';
import { startStepProgress } from '../src/cli/progress.ts';

const root = mkdtempSync(join(tmpdir(), 'cli-train-'));
const data = join(root, 'emojitags');
await buildEmojiTags({ out: data, size: 32, styles: ['noto'], limit: 30 });
const base = ['bin/clip-decoder.js', 'train', '--dataset', data, '--cache', join(root, 'cache'), '--model', 'tests/fixtures/tiny-clip'];
const small = ['--d-model', '32', '--heads', '4', '--ffn', '64', '--batch-size', '8', '--lr', '1e-3'];
const cli = (args: string[]) => spawnSync(process.execPath, [...base, ...args], { encoding: 'utf8', timeout: 120_000 });

test("train --resume: changed flags refused by name in one line (exit 2); flags not given take the run's values", () => {
  const out = join(root, 'run');
  const first = cli(['--out', out, '--epochs', '2', ...small]);
  assert.equal(first.status, 0, first.stderr);
  const cfg = JSON.parse(readFileSync(join(out, 'last', 'config.json'), 'utf8'));
  assert.equal(cfg.architecture.dModel, 32);
  const changed = cli(['--out', out, '--resume', '--epochs', '3', '--d-model', '64', '--lr', '0.01']);
  assert.equal(changed.status, 2, changed.stderr);
  assert.equal(
    changed.stderr,
    `clip-decoder: resume: ${join(out, 'last')} is a run with other settings: --epochs 3 (the run has 2), --lr 0.01 (the run has 0.001), --d-model 64 (the run has 32); drop these to continue it, or train into a new output folder\n`,
  );
  // the same flags again, or none: the run continues (here it is complete: nothing more is trained)
  const same = cli(['--out', out, '--resume', ...small, '--epochs', '2']);
  assert.equal(same.status, 0, same.stderr);
  assert.match(same.stderr, /^resuming at step \d+ \(epoch 2\)$/m);
  const none = cli(['--out', out, '--resume']);
  assert.equal(none.status, 0, none.stderr);
  assert.doesNotMatch(none.stderr, /^epoch \d/m, 'a complete run trains no further epoch');
});

test("train --resume keeps the run's prompt templates and query source; other ones are refused by name", () => {
  const out = join(root, 'templates');
  const first = cli(['--out', out, '--epochs', '1', '--template', 'an emoji of {label}', ...small]);
  assert.equal(first.status, 0, first.stderr);
  const other = cli(['--out', out, '--resume', '--template', 'a photo of {label}']);
  assert.equal(other.status, 2, other.stderr);
  assert.match(other.stderr, /--template \["a photo of \{label\}"\] \(the run has \["an emoji of \{label\}"\]\)/);
  const wordvec = cli(['--out', out, '--resume', '--queries', 'wordvec']);
  assert.equal(wordvec.status, 2, wordvec.stderr);
  assert.match(wordvec.stderr, /--queries wordvec \(the run has clip\)/);
  const kept = cli(['--out', out, '--resume']);
  assert.equal(kept.status, 0, kept.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(out, 'last', 'config.json'), 'utf8')).promptTemplates, ['an emoji of {label}']);
});

test('train --resume with nothing to resume says so in one line and starts a new run', () => {
  const out = join(root, 'fresh');
  const r = cli(['--out', out, '--resume', '--epochs', '1', ...small]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stderr
      .split('\n')
      .filter((l) => l.startsWith('resume:'))
      .join('\n'),
    `resume: nothing to resume in ${join(out, 'last')} (no checkpoint yet); starting a new run`,
  );
  assert.match(r.stderr, /^epoch 1\/1 /m);
});

test('the training bar on a terminal: steps, loss, rate, ETA; log lines go above it; nothing drawn off a terminal', () => {
  let tty = '';
  const stream = {
    isTTY: true,
    columns: 120,
    write: (s: string) => ((tty += s), true),
    on() {},
    removeListener() {},
    cursorTo: () => true,
    moveCursor: () => true,
    clearLine: () => true,
  } as unknown as NodeJS.WriteStream;
  const bar = startStepProgress('training', stream);
  bar.update({ step: 11, totalSteps: 40, startStep: 10, loss: 0.51234 });
  bar.log('epoch 1/4  loss 0.512');
  bar.update({ step: 12, totalSteps: 40, startStep: 10, loss: 0.5 });
  bar.stop();
  assert.match(tty, /training \[[█░]+\] 11\/40 steps \| loss 0\.5123 \| [\d.]+ steps\/s \| ETA /);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the bar clears its line with an escape sequence
  assert.match(tty, /\r\x1b\[2Kepoch 1\/4 {2}loss 0\.512\n/);
  assert.match(tty, /12\/40 steps \| loss 0\.5000/);
  let pipe = '';
  const plain = startStepProgress('training', { isTTY: false, write: (s: string) => ((pipe += s), true) } as unknown as NodeJS.WriteStream);
  plain.update({ step: 1, totalSteps: 4, startStep: 0, loss: 1 });
  plain.log('epoch 1/1');
  plain.stop();
  assert.equal(pipe, 'epoch 1/1\n');
});

test('train --workers: 1 and 2 both train; a count outside 1 … cores is refused in one line naming the flag', () => {
  for (const w of ['1', '2']) {
    const r = cli(['--out', join(root, `workers-${w}`), '--epochs', '1', ...small, '--workers', w]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /^epoch 1\/1 /m);
  }
  for (const bad of ['0', '999', 'two']) {
    const r = cli(['--out', join(root, 'workers-bad'), '--epochs', '1', ...small, '--workers', bad]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, new RegExp(`--workers must be an integer from 1 to \\d+ \\(this machine's cores\\), got ${bad}`));
  }
});
