import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  averagePrecision,
  averagePrecisionFromOrder,
  averagePrecisions,
  meanAP,
  precisionRecallCurve,
  rankOrder,
  topKMetrics,
} from '../src/eval/metrics.ts';
import { evaluateGzsl, evaluateProtocol, evaluateZsl } from '../src/eval/protocol.ts';
import type { ProtocolMetrics } from '../src/eval/protocol.ts';
import { createRng } from '../src/data/random.ts';
import { ClipDecoderError } from '../src/errors.ts';

const close = (a: number, b: number, tol = 1e-12, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** Column-major convenience: build [N, L] row-major from per-label columns. */
function matrix(columns: number[][]): { scores: Float32Array; n: number; l: number } {
  const l = columns.length;
  const n = columns[0]!.length;
  const scores = new Float32Array(n * l);
  columns.forEach((c, j) => c.forEach((v, i) => (scores[i * l + j] = v)));
  return { scores, n, l };
}
function targetsOf(columns: number[][]): Uint8Array {
  const { scores } = matrix(columns);
  return Uint8Array.from(scores);
}

test('AP by hand: positives at ranks 1 and 3 give (1 + 2/3) / 2', () => {
  const { scores, n, l } = matrix([[0.9, 0.8, 0.7, 0.6]]);
  const [ap] = averagePrecisions(scores, targetsOf([[1, 0, 1, 0]]), n, l);
  close(ap!.ap, (1 + 2 / 3) / 2);
  assert.equal(ap!.positives, 2);
});

test('AP ties rank by image index; -0 ties with +0', () => {
  const t = averagePrecisions(matrix([[0.5, 0.5, 0.5]]).scores, targetsOf([[0, 0, 1]]), 3, 1)[0]!;
  close(t.ap, 1 / 3, 1e-12, 'positive last among ties');
  const u = averagePrecisions(matrix([[0.5, 0.5, 0.5]]).scores, targetsOf([[1, 0, 0]]), 3, 1)[0]!;
  assert.equal(u.ap, 1);
  const z = averagePrecisions(matrix([[-0, 0]]).scores, targetsOf([[0, 1]]), 2, 1)[0]!;
  close(z.ap, 0.5, 1e-12, '-0 and +0 tie, so the positive is second');
});

test('a label without positives has AP 0 and counts 0 in mAP, not in the mean over labels with positives', () => {
  const { scores, n, l } = matrix([
    [0.9, 0.1],
    [0.2, 0.3],
  ]);
  const aps = averagePrecisions(
    scores,
    targetsOf([
      [1, 0],
      [0, 0],
    ]),
    n,
    l,
  );
  assert.deepEqual(
    aps.map((a) => a.ap),
    [1, 0],
  );
  const m = meanAP(aps);
  assert.equal(m.mAP, 0.5);
  assert.equal(m.mAPWithPositives, 1);
  assert.equal(m.labelsWithPositives, 1);
});

test('strict top-K micro P/R/F1 by hand, ties by lower label index', () => {
  // image 0: labels 1 and 2 tie at 0.9 (label 1 wins K=1); image 1: all tie (labels 0, 1, 2 in order)
  const scores = Float32Array.from([0.1, 0.9, 0.9, 0.3, 0.4, 0.4, 0.4, 0.4]);
  const targets = Uint8Array.from([0, 0, 1, 1, 1, 0, 0, 1]);
  const [k1, k2, k3] = topKMetrics(scores, targets, 2, 4, [1, 2, 3]);
  assert.equal(k1!.truePositives, 1); // image 0 predicts label 1 (miss), image 1 label 0 (hit)
  close(k1!.precision, 1 / 2);
  close(k1!.recall, 1 / 4);
  close(k1!.f1, 1 / 3);
  assert.equal(k2!.truePositives, 2);
  assert.equal(k3!.truePositives, 3);
  close(k3!.precision, 3 / 6);
  close(k3!.recall, 3 / 4);
  close(k3!.f1, 0.6);
  // Ranking a subset of columns: only labels 2 and 3 compete.
  const [sub] = topKMetrics(scores, targets, 2, 4, [1], [2, 3]);
  assert.equal(sub!.truePositives, 1); // image 0: label 2 (hit); image 1: 0.4 tie -> label 2 (miss)
  close(sub!.recall, 1 / 3); // positives among labels 2, 3: image 0 has both, image 1 has label 3
});

test('rankOrder equals a comparator sort (descending, ties by index) on random data with ties and signs', () => {
  const rng = createRng(7);
  const n = 5000;
  const col = new Float32Array(n);
  for (let i = 0; i < n; i++) col[i] = Math.round((rng.next() * 8 - 4) * 4) / 4 + (rng.next() < 0.01 ? 1e-30 : 0);
  col[3] = -0;
  col[4] = 0;
  col[5] = -Infinity;
  col[6] = Infinity;
  const order = rankOrder(col);
  const expected = Array.from({ length: n }, (_, i) => i).sort((a, b) => (col[b]! === col[a]! ? a - b : col[b]! - col[a]!));
  assert.deepEqual(Array.from(order), expected);
});

test('AP without a full sort (positives sorted, negatives placed by binary search) equals AP from the full ranking', () => {
  const rng = createRng(11);
  for (const [n, rate, levels] of [
    [2000, 0.01, 7],
    [2000, 0.5, 3],
    [300, 0.9, 1000],
    [50, 0.02, 2],
  ] as const) {
    const s = new Float32Array(n);
    const t = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      s[i] = Math.floor(rng.next() * levels) / levels - 0.5; // ties, negatives, zeros
      t[i] = rng.next() < rate ? 1 : 0;
    }
    close(averagePrecision(s, t), averagePrecisionFromOrder(rankOrder(s), t), 1e-12, `n=${n} rate=${rate}`);
  }
});

test('NaN scores are refused, naming the label', () => {
  const scores = Float32Array.from([0.1, NaN]);
  assert.throws(
    () => evaluateGzsl({ scores, labels: ['a', 'b'], targets: new Uint8Array(2), images: 1 }, ['a'], ['b']),
    (e: unknown) => e instanceof ClipDecoderError && e.code === 'INPUT_INVALID' && /"b"/.test(e.message),
  );
});

test('precision-recall curve: one point per positive', () => {
  const { scores, n, l } = matrix([[0.9, 0.8, 0.7, 0.6]]);
  const c = precisionRecallCurve(scores, targetsOf([[1, 0, 1, 0]]), n, l, 0);
  assert.deepEqual(c.recall, [0.5, 1]);
  assert.deepEqual(c.precision, [1, 2 / 3]);
});

interface RefMetrics {
  mAP: number;
  mAPWithPositives: number;
  labels: number;
  labelsWithPositives: number;
  images: number;
  topK: { k: number; precision: number; recall: number; f1: number; truePositives: number }[];
}
interface RefCase {
  name: string;
  images: number;
  labels: string[];
  seen: string[];
  unseen: string[];
  scores: number[];
  targets: string;
  expected: { ap: number[]; positives: number[]; gzsl: RefMetrics; zsl: RefMetrics; zslImagesWithUnseen: RefMetrics };
}

function assertMetrics(got: ProtocolMetrics, want: RefMetrics, what: string) {
  close(got.mAP, want.mAP, 1e-12, `${what} mAP`);
  close(got.mAPWithPositives, want.mAPWithPositives, 1e-12, `${what} mAP with positives`);
  assert.equal(got.labels, want.labels, `${what} labels`);
  assert.equal(got.labelsWithPositives, want.labelsWithPositives, `${what} labels with positives`);
  assert.equal(got.images, want.images, `${what} images`);
  got.topK.forEach((t, i) => {
    const w = want.topK[i]!;
    assert.equal(t.k, w.k);
    assert.equal(t.truePositives, w.truePositives, `${what} TP@${w.k}`);
    close(t.precision, w.precision, 1e-12, `${what} P@${w.k}`);
    close(t.recall, w.recall, 1e-12, `${what} R@${w.k}`);
    close(t.f1, w.f1, 1e-12, `${what} F1@${w.k}`);
  });
}

test('metrics match the numpy reference (tools/metrics_reference.py) on seeded cases with ties', () => {
  const ref = JSON.parse(readFileSync(new URL('./fixtures/metrics-reference.json', import.meta.url), 'utf8')) as { cases: RefCase[] };
  assert.equal(ref.cases.length, 3);
  for (const c of ref.cases) {
    const scores = Float32Array.from(c.scores);
    const targets = Uint8Array.from(c.targets, (ch) => (ch === '1' ? 1 : 0));
    const input = { scores, labels: c.labels, targets, images: c.images };
    const aps = averagePrecisions(scores, targets, c.images, c.labels.length);
    aps.forEach((a, j) => {
      close(a.ap, c.expected.ap[j]!, 1e-12, `${c.name} AP ${c.labels[j]}`);
      assert.equal(a.positives, c.expected.positives[j]);
    });
    const result = evaluateProtocol(input, c.seen, c.unseen);
    assertMetrics(result.gzsl, c.expected.gzsl, `${c.name} GZSL`);
    assertMetrics(result.zsl!, c.expected.zsl, `${c.name} ZSL`);
    assertMetrics(evaluateZsl(input, c.unseen), c.expected.zsl, `${c.name} ZSL (direct)`);
    assertMetrics(
      evaluateZsl(input, c.unseen, { dropImagesWithoutUnseen: true }),
      c.expected.zslImagesWithUnseen,
      `${c.name} ZSL, images with unseen`,
    );
    // Column order does not matter: reverse the columns and look them up by name.
    const L = c.labels.length;
    const rev = c.labels.map((_, j) => L - 1 - j);
    const s2 = new Float32Array(scores.length);
    const t2 = new Uint8Array(targets.length);
    for (let i = 0; i < c.images; i++)
      for (let j = 0; j < L; j++) {
        s2[i * L + j] = scores[i * L + rev[j]!]!;
        t2[i * L + j] = targets[i * L + rev[j]!]!;
      }
    const again = evaluateProtocol({ scores: s2, labels: rev.map((j) => c.labels[j]!), targets: t2, images: c.images }, c.seen, c.unseen);
    assertMetrics(again.gzsl, c.expected.gzsl, `${c.name} GZSL, columns reversed`);
  }
});
