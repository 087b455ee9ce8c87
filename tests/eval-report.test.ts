import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeScores, readScoresFile, writeScoresFile } from '../src/eval/scores.ts';
import type { ScoreTable } from '../src/eval/scores.ts';
import { evaluateScores, writeEvalReport } from '../src/eval/report.ts';
import { loadDataset } from '../src/data/load.ts';
import { main } from '../src/cli/main.ts';
import { ClipDecoderError } from '../src/errors.ts';

/**
 * A dataset folder: seen labels a, b; unseen c, d; "b" pseudo-unseen. Test images t1..t4, val v1, v2, train r1.
 */
function writeDataset(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cd-eval-'));
  const items: [string, string[]][] = [
    ['r1', ['a', 'c']],
    ['v1', ['a', 'b']],
    ['v2', ['b']],
    ['t1', ['a', 'c']],
    ['t2', ['b', 'd']],
    ['t3', ['c']],
    ['t4', ['a']],
  ];
  writeFileSync(
    join(dir, 'manifest.jsonl'),
    `${items.map(([id, labels]) => JSON.stringify({ id, file: `${id}.png`, labels })).join('\n')}\n`,
  );
  writeFileSync(
    join(dir, 'split.json'),
    JSON.stringify({
      seen: ['a', 'b'],
      unseen: ['c', 'd'],
      pseudoUnseen: ['b'],
      train: ['r1'],
      val: ['v1', 'v2'],
      test: ['t1', 't2', 't3', 't4'],
    }),
  );
  return dir;
}

/** Scores for ids × labels from a function; label columns in the given order. */
function table(ids: string[], labels: string[], f: (id: string, label: string) => number): ScoreTable {
  const scores = new Float32Array(ids.length * labels.length);
  ids.forEach((id, i) => labels.forEach((l, j) => (scores[i * labels.length + j] = f(id, l))));
  return { ids, labels, scores };
}

test('score files round-trip in both formats (binary data stays aligned whatever the header length)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-scores-'));
  for (const ids of [['x'], ['x', 'yy'], ['x', 'yy', 'zzz'], ['é', 'b']]) {
    const t = table(ids, ['cat', 'dog', 'a b'], (id, l) => id.length * 10 + l.length - 0.5);
    const bin = join(dir, 'scores.bin');
    await writeScoresFile(bin, t);
    assert.deepEqual(readScoresFile(bin), t);
    const jsonl = join(dir, 'scores.jsonl');
    await writeScoresFile(jsonl, t);
    assert.deepEqual(readScoresFile(jsonl), t);
    assert.equal((encodeScores(t).length - t.scores.length * 4) % 4, 0);
  }
});

test('JSONL score files: problems name the line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cd-scores-'));
  const f = join(dir, 's.jsonl');
  writeFileSync(f, '{"id":"a","scores":{"x":1,"y":2}}\n{"id":"b","scores":{"x":1}}\n{"id":"a","scores":{"x":1,"y":2}}\n');
  assert.throws(
    () => readScoresFile(f),
    (e: unknown) => {
      assert.ok(e instanceof ClipDecoderError);
      assert.match(e.message, /s\.jsonl:3: duplicate id "a" \(first on line 1\)/);
      assert.match(e.message, /s\.jsonl:2: no numeric score for label "y"/);
      return true;
    },
  );
});

test('evaluateScores: rows by id, columns by name; perfect scores give 100; ZSL ranks only unseen labels', () => {
  const dataset = loadDataset(writeDataset(), { missingFiles: 'ignore' });
  const truth = new Map(dataset.items.map((it) => [it.id, new Set(it.labels)]));
  // Columns deliberately in another order than the dataset's (seen first there), plus an unscored extra image.
  const perfect = table(['t4', 't3', 't2', 't1', 'zz'], ['d', 'b', 'c', 'a'], (id, l) => (truth.get(id)?.has(l) ? 0.9 : 0.1));
  const r = evaluateScores(perfect, dataset);
  assert.equal(r.dataset.images, 4);
  assert.equal(r.zsl!.mAP, 100);
  assert.equal(r.gzsl!.mAP, 100);
  // ZSL ranks the 2 unseen labels, so K = 3 predicts both: 4 images × 2 = 8 predictions; the positives
  // (t1 c, t2 d, t3 c) are all predicted -> P = 3/8, R = 3/3.
  assert.equal(r.zsl!.precision['3'], 37.5);
  assert.equal(r.zsl!.recall['3'], 100);
  assert.ok(r.notes.some((n) => /1 scored image\(s\) are not test images/.test(n)));
  assert.equal(r.perLabel.length, 4);

  // Hand-computed AP: label "a" positives t1, t4; scores rank t4 > t2 > t1 > t3 -> AP = (1/1 + 2/3) / 2.
  const s = { t1: 0.5, t2: 0.7, t3: 0.1, t4: 0.9 } as Record<string, number>;
  const r2 = evaluateScores(
    table(['t1', 't2', 't3', 't4'], ['a', 'b', 'c', 'd'], (id, l) => (l === 'a' ? s[id]! : 0)),
    dataset,
  );
  const a = r2.perLabel.find((p) => p.label === 'a')!;
  assert.equal(a.ap, Math.round(((1 + 2 / 3) / 2) * 1e4) / 1e2);
  assert.equal(a.unseen, false);

  // Model selection: validation images, pseudo-unseen "b" as the unseen label.
  const sel = evaluateScores(
    table(['v1', 'v2'], ['a', 'b', 'c', 'd'], (id, l) => (truth.get(id)!.has(l) ? 1 : 0)),
    dataset,
    { stage: 'select' },
  );
  assert.equal(sel.dataset.part, 'val');
  assert.equal(sel.dataset.unseen, 1);
  assert.equal(sel.zsl!.labels, 1);
  assert.equal(sel.zsl!.mAP, 100);
});

test('evaluateScores refuses scores that miss test images or labels', () => {
  const dataset = loadDataset(writeDataset(), { missingFiles: 'ignore' });
  assert.throws(
    () =>
      evaluateScores(
        table(['t1', 't2', 't3'], ['a', 'b', 'c', 'd'], () => 0),
        dataset,
      ),
    /lack 1 of the 4 test images, e\.g\. "t4"/,
  );
  assert.throws(
    () =>
      evaluateScores(
        table(['t1', 't2', 't3', 't4'], ['a', 'b', 'c'], () => 0),
        dataset,
      ),
    /lack 1 of the 4 labels, e\.g\. "d"/,
  );
});

test('report files: Markdown main table, JSON, and two SVG plots', async () => {
  const dataset = loadDataset(writeDataset(), { missingFiles: 'ignore' });
  const r = evaluateScores(
    table(['t1', 't2', 't3', 't4'], ['a', 'b', 'c', 'd'], (id, l) => (id.charCodeAt(1) * 7 + l.charCodeAt(0)) % 5),
    dataset,
  );
  const out = mkdtempSync(join(tmpdir(), 'cd-report-'));
  const files = await writeEvalReport(r, out);
  const md = readFileSync(files.markdown, 'utf8');
  assert.match(md, /\| protocol \| labels \| mAP \| F1@3 \| F1@5 \| P@3 \| R@3 \| P@5 \| R@5 \|/);
  assert.match(md, new RegExp(`\\| ZSL \\(unseen labels\\) \\| 2 \\| ${r.zsl!.mAP.toFixed(2)} \\|`));
  assert.match(md, /## Per-label AP/);
  const json = JSON.parse(readFileSync(files.json, 'utf8'));
  assert.equal(json.gzsl.mAP, r.gzsl.mAP);
  for (const p of files.plots)
    assert.match(readFileSync(p, 'utf8'), /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
  assert.match(readFileSync(files.plots[0]!, 'utf8'), /<polyline/);
});

test('CLI: clip-decoder eval --scores --dataset --out writes the report; bad input exits 2', async () => {
  const dir = writeDataset();
  const dataset = loadDataset(dir, { missingFiles: 'ignore' });
  const truth = new Map(dataset.items.map((it) => [it.id, new Set(it.labels)]));
  const scores = join(dir, 'scores.jsonl');
  await writeScoresFile(
    scores,
    table(['t1', 't2', 't3', 't4'], ['a', 'b', 'c', 'd'], (id, l) => (truth.get(id)!.has(l) ? 0.8 : 0.2)),
  );
  const out = join(dir, 'report');
  const stdout = process.stdout.write.bind(process.stdout);
  let printed = '';
  process.stdout.write = ((s: string) => ((printed += s), true)) as typeof process.stdout.write;
  let code: number;
  try {
    code = await main(['node', 'clip-decoder', 'eval', '--scores', scores, '--dataset', dir, '--out', out]);
  } finally {
    process.stdout.write = stdout;
  }
  assert.equal(code, 0);
  assert.match(printed, /ZSL : mAP 100\.00/);
  assert.equal(JSON.parse(readFileSync(join(out, 'report.json'), 'utf8')).zsl.mAP, 100);
  const stderr = process.stderr.write.bind(process.stderr);
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await main(['node', 'clip-decoder', 'eval', '--scores', join(dir, 'none.jsonl'), '--dataset', dir]), 2);
  } finally {
    process.stderr.write = stderr;
  }
});
