// The shared parsers (src/labels.ts, src/numbers.ts), overlay file names, the library's file and label limits,
// non-finite scores, and the CLI module not running on import (issues 14 and 19).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ClipDecoderError, type ErrorCode } from '../src/errors.ts';
import { checkLabels, parseLabelLines, parseLabelList, readLabelFile } from '../src/labels.ts';
import { parseDecimal } from '../src/numbers.ts';
import { encodeScores, readScoresFile } from '../src/eval/scores.ts';
import { fileNamePart, overlayLabelParts } from '../src/tagger/overlay.ts';
import { Tagger } from '../src/tagger/tagger.ts';
import { trainTinyHead, TINY_CLIP } from './helpers/tiny-head.ts';

function throwsCode(f: () => unknown, code: ErrorCode, message: string | RegExp, subject?: string): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ClipDecoderError, String(e));
    assert.equal(e.code, code);
    if (typeof message === 'string') assert.equal(e.message, message);
    else assert.match(e.message, message);
    if (subject !== undefined) assert.equal(e.subject, subject);
    return true;
  });
}

test('parseDecimal: plain decimal numbers only, of the asked kind, errors name the flag', () => {
  assert.equal(parseDecimal('0.5', '--p', 'probability'), 0.5);
  assert.equal(parseDecimal('.25', '--x'), 0.25);
  assert.equal(parseDecimal('-3', '--x', 'integer'), -3);
  assert.equal(parseDecimal('+7', '--k', 'positive-integer'), 7);
  assert.equal(parseDecimal('0', '--k', 'non-negative-integer'), 0);
  assert.equal(parseDecimal('1', '--p', 'probability'), 1);
  assert.equal(parseDecimal('1e-3', '--lr', 'positive'), 0.001);
  assert.equal(parseDecimal('2.5E2', '--x'), 250);
  for (const raw of ['', ' ', '0x1', '1e', 'e3', '1e3.5', '1e999', 'Infinity', 'NaN', '1_000', '0b1', '1,5', '--1', '.']) {
    throwsCode(() => parseDecimal(raw, '--x'), 'BAD_PARAMETER', `--x must be a decimal number, got "${raw}"`, '--x');
  }
  throwsCode(
    () => parseDecimal('1.0000001', '--threshold', 'probability'),
    'BAD_PARAMETER',
    '--threshold must be a probability in [0, 1], got "1.0000001"',
  );
  throwsCode(() => parseDecimal('2.0', '--top', 'positive-integer'), 'BAD_PARAMETER', '--top must be a positive integer, got "2.0"');
  throwsCode(() => parseDecimal('1e3', '--top', 'positive-integer'), 'BAD_PARAMETER', '--top must be a positive integer, got "1e3"');
  throwsCode(() => parseDecimal('0', '--top', 'positive-integer'), 'BAD_PARAMETER', '--top must be a positive integer, got "0"');
  throwsCode(() => parseDecimal('9007199254740993', '--n', 'integer'), 'BAD_PARAMETER', '--n must be an integer, got "9007199254740993"');
  throwsCode(() => parseDecimal('0', 'lr', 'positive'), 'BAD_PARAMETER', 'lr must be a positive decimal number, got "0"');
});

test('label lists: trimmed, empties dropped, duplicates and limits refused with a code naming the label', () => {
  assert.deepEqual(parseLabelList(' dog, cat,,sky ,'), ['dog', 'cat', 'sky']);
  throwsCode(() => parseLabelList(' , ,', { source: 'labels field' }), 'NO_LABELS', 'labels field: no labels: give a comma-separated list');
  throwsCode(() => parseLabelList('dog,cat,dog', { source: '--labels' }), 'DUPLICATE_LABEL', '--labels: label "dog" appears twice', 'dog');
  throwsCode(() => parseLabelList('a,b,c', { maxLabels: 2 }), 'TOO_MANY_LABELS', '3 labels; at most 2 are accepted');
  // Length in characters (code points): two emoji are 2, not 4 UTF-16 units.
  assert.deepEqual(checkLabels(['😀😀'], { maxLength: 2 }), ['😀😀']);
  throwsCode(
    () => checkLabels(['猫'.repeat(201)]),
    'LABEL_TOO_LONG',
    `label "${'猫'.repeat(40)}…" has 201 characters; at most 200 are accepted`,
    '猫'.repeat(201),
  );
  throwsCode(() => checkLabels([]), 'NO_LABELS', 'the label list is empty: give at least one label');
  throwsCode(() => checkLabels(['dog', ' ']), 'INPUT_INVALID', 'label 2 is blank');
  assert.deepEqual(parseLabelLines('\uFEFF# header\r\nC#\r\n  F# minor  \n\t# indented\n\n#hashtag\nsky # not a comment\n'), [
    'C#',
    'F# minor',
    'sky # not a comment',
  ]);
  const dir = mkdtempSync(join(tmpdir(), 'labels-'));
  const latin1 = join(dir, 'latin1.txt');
  writeFileSync(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a]));
  throwsCode(() => readLabelFile(latin1), 'INPUT_INVALID', `${latin1}: the label file is not valid UTF-8`, latin1);
  const dup = join(dir, 'dup.txt');
  writeFileSync(dup, 'a\nb\na\n');
  throwsCode(() => readLabelFile(dup), 'DUPLICATE_LABEL', `${dup}: label "a" appears twice`, 'a');
});

test('overlay name parts are injective, readable, short, and apart on case-insensitive file systems', () => {
  const labels = ['猫', '犬', 'a/b', 'a_b', 'a b', '😀', 'a%2Fb', 'F# minor', 'é'];
  const parts = labels.map(fileNamePart);
  assert.deepEqual(parts, ['猫', '犬', 'a%2Fb', 'a%5Fb', 'a_b', '%F0%9F%98%80', 'a%252Fb', 'F%23_minor', 'é']);
  assert.equal(new Set(parts).size, labels.length);
  const long = fileNamePart('猫'.repeat(200));
  assert.ok(Buffer.byteLength(long) <= 100, long);
  assert.match(long, /^猫+~[0-9a-f]{8}$/);
  assert.notEqual(long, fileNamePart(`${'猫'.repeat(199)}犬`));
  const m = overlayLabelParts(['Dog', 'dog', 'cat']);
  assert.equal(m.get('cat'), 'cat');
  assert.match(m.get('Dog')!, /^Dog~[0-9a-f]{8}$/);
  assert.match(m.get('dog')!, /^dog~[0-9a-f]{8}$/);
  assert.notEqual(m.get('Dog')!.toLowerCase(), m.get('dog'));
});

test('eval score files: a non-finite score (1e999) is refused, naming the file, line or id, and label', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'scores-'));
  const f = join(dir, 's.jsonl');
  writeFileSync(f, '{"id":"a","scores":{"x":1,"y":2}}\n{"id":"b","scores":{"x":1e999,"y":-1e999}}\n');
  throwsCode(
    () => readScoresFile(f),
    'INPUT_INVALID',
    `${f}: 2+ problems:\n  ${f}:2: the score for label "x" is not a finite number (Infinity)\n  ${f}:2: the score for label "y" is not a finite number (-Infinity)`,
  );
  const bin = join(dir, 's.bin');
  writeFileSync(bin, encodeScores({ ids: ['a', 'b'], labels: ['x', 'y'], scores: Float32Array.from([1, 2, 3, NaN]) }));
  throwsCode(() => readScoresFile(bin), 'INPUT_INVALID', `${bin}: the score of id "b" for label "y" is not a finite number (NaN)`);
});

test('the Tagger applies the label limits and reads only regular files within maxFileBytes', async () => {
  const tiny = await trainTinyHead(50);
  const tagger = await Tagger.load({ model: TINY_CLIP, head: tiny.dir, threads: 1, labelLimits: { maxLabels: 2 }, maxFileBytes: 1000 });
  try {
    await assert.rejects(tagger.tag(tiny.images[0]!.file, ['dog', 'cat', 'sky']), {
      code: 'TOO_MANY_LABELS',
      message: '3 labels; at most 2 are accepted',
    });
    const fifo = join(mkdtempSync(join(tmpdir(), 'fifo-')), 'f.png');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    const [a, b] = await tagger.tag([fifo, tiny.images[0]!.file], ['dog']);
    assert.equal(a!.error?.code, 'FILE_NOT_REGULAR');
    assert.equal(a!.error?.message, `${fifo}: a FIFO (named pipe), not a regular file: only regular files are read`);
    assert.equal(b!.error?.code, 'FILE_TOO_LARGE');
    assert.match(b!.error!.message, /^\/.*dog-face\.png: \d+ bytes exceeds the file-size limit of 1000 bytes/);
  } finally {
    await tagger.dispose();
  }
});

test('importing the CLI module runs nothing; bin/clip-decoder.js runs main()', () => {
  // A script whose own name ends in main.ts: the old entry check (a regex on argv[1]) ran the CLI on import.
  const dir = mkdtempSync(join(tmpdir(), 'import-'));
  writeFileSync(join(dir, 'package.json'), '{"type": "module"}\n');
  const script = join(dir, 'main.ts');
  writeFileSync(script, `const m = await import(${JSON.stringify(resolve('src/cli/main.ts'))});\nconsole.log(typeof m.main);\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.stderr, '');
  assert.equal(r.stdout, 'function\n');
  assert.equal(r.status, 0);
  const help = spawnSync(process.execPath, ['bin/clip-decoder.js', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: clip-decoder \[options\] \[command\]/);
});
