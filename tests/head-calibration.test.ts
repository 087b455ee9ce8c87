// The calibration file (src/head/calibration.ts): written atomically, read back equal, and refused, naming the
// file and what differs, when it was fitted for another CLIP model or head or when a field is malformed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkCalibration, headDigest, readCalibration, validateCalibration, writeCalibration } from '../src/head/calibration.ts';
import type { ClipDecoderError } from '../src/errors.ts';
import { TsMatmul } from '../src/nn/matmul.ts';
import { loadCheckpoint } from '../src/train/checkpoint.ts';
import { calibrationOf, FUSION, makeCalibratedHead } from './helpers/calibrated-head.ts';

const h = await makeCalibratedHead();
const calPath = join(h.dir, 'calibration.json');

test("a calibration round-trips, and names its head by the checkpoint's recorded weights digest", async () => {
  const cal = await readCalibration(calPath, { modelFingerprint: h.fingerprint, headDigest: h.sha256 });
  assert.deepEqual(cal.fusion, FUSION);
  assert.equal(cal.fittedOn.note, 'known weights', 'free-form fittedOn fields are kept');
  const cfg = JSON.parse(readFileSync(join(h.dir, 'config.json'), 'utf8'));
  assert.equal(h.sha256, cfg.digests[cfg.weights].sha256);
  assert.equal(await headDigest(h.dir), h.sha256);
  const ck = await loadCheckpoint(h.dir, new TsMatmul());
  assert.equal(ck.meta.clipFingerprint, h.fingerprint, 'the checkpoint records its CLIP fingerprint');
  assert.deepEqual(
    readdirSync(h.dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary is left by the atomic write',
  );
});

test('a calibration for another head, for a head when none is loaded, or for another CLIP model is refused naming both', async () => {
  const other = await headDigest(h.bareDir);
  assert.notEqual(other, h.sha256);
  await assert.rejects(
    readCalibration(calPath, { modelFingerprint: h.fingerprint, headDigest: other }),
    (e: ClipDecoderError) =>
      e.code === 'CALIBRATION_MISMATCH' &&
      e.message.includes(calPath) &&
      e.message.includes(`head sha ${h.sha256.slice(0, 12)}`) &&
      e.message.includes(`the head is sha ${other.slice(0, 12)}`),
  );
  await assert.rejects(
    readCalibration(calPath, { modelFingerprint: h.fingerprint, headDigest: null }),
    (e: ClipDecoderError) => e.code === 'CALIBRATION_MISMATCH' && /plain CLIP \(--head none\) is loaded/.test(e.message),
  );
  await assert.rejects(
    readCalibration(h.plainCalibration, { modelFingerprint: h.fingerprint, headDigest: h.sha256 }),
    (e: ClipDecoderError) => e.code === 'CALIBRATION_MISMATCH' && /fitted for plain CLIP/.test(e.message),
  );
  const fp = 'ab'.repeat(32);
  await assert.rejects(
    readCalibration(calPath, { modelFingerprint: fp, modelId: 'big-clip', headDigest: h.sha256 }),
    (e: ClipDecoderError) =>
      e.code === 'CALIBRATION_MISMATCH' &&
      e.message.includes('CLIP model tiny-clip') &&
      e.message.includes('loaded model is big-clip (fingerprint abababab'),
  );
});

test('a malformed calibration is refused naming the file and the field', async () => {
  const good = calibrationOf(h.fingerprint, h.sha256, FUSION);
  // biome-ignore lint/suspicious/noExplicitAny: the cases edit arbitrary fields of a JSON document
  type Doc = Record<string, any>;
  const cases: [string, (c: Doc) => void, RegExp][] = [
    ['format', (c) => (c.format = 'other'), /format must be "clip-decoder-calibration"/],
    ['version', (c) => (c.version = 2), /version is 2; .* \(upgrade clip-decoder\)/],
    ['fingerprint', (c) => (c.clipModel.fingerprint = 'xyz'), /clipModel\.fingerprint must be a SHA-256/],
    ['head', (c) => (c.head = 'abc'), /head must be \{sha256\} or null/],
    ['weight', (c) => (c.fusion.novel.local = 'big'), /fusion\.novel\.local must be a finite number, got "big"/],
    ['missing weight', (c) => delete c.fusion.trained.bias, /fusion\.trained\.bias must be a finite number/],
    ['threshold', (c) => (c.fusion.threshold = 1.5), /fusion\.threshold must be a probability in \(0, 1\), got 1\.5/],
    [
      'plain local',
      (c) => ((c.head = null), (c.fusion.trained.local = 1)),
      /fusion\.trained\.local must be 0 in a calibration of plain CLIP/,
    ],
    ['fittedOn', (c) => (c.fittedOn.pairs = 0), /fittedOn\.pairs must be a positive integer/],
  ];
  for (const [name, edit, re] of cases) {
    const c = structuredClone(good) as Doc;
    edit(c);
    const file = join(h.dir, `bad-${name.replace(' ', '-')}.json`);
    writeFileSync(file, JSON.stringify(c));
    await assert.rejects(
      readCalibration(file, { modelFingerprint: h.fingerprint, headDigest: h.sha256 }),
      (e: ClipDecoderError) => e.code === 'CALIBRATION_INVALID' && e.message.includes(file) && re.test(e.message),
      name,
    );
    await assert.rejects(writeCalibration(file, c as never), re, `${name}: never written`);
  }
  writeFileSync(join(h.dir, 'bad.json'), '{"format":');
  await assert.rejects(readCalibration(join(h.dir, 'bad.json'), { modelFingerprint: h.fingerprint, headDigest: null }), /not valid JSON/);
  assert.throws(() => validateCalibration([], 'x.json'), /calibration x\.json: the file must hold a JSON object/);
  assert.doesNotThrow(() =>
    checkCalibration(validateCalibration(good, 'x'), { modelFingerprint: h.fingerprint, headDigest: h.sha256 }, 'x'),
  );
});
