import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsMatmul, planMatmul } from '../src/nn/matmul.ts';
import { OrtMatmul } from '../src/nn/ort-matmul.ts';
import { encodeModel } from '../src/nn/onnx.ts';
import { Rng } from '../src/nn/rng.ts';
import { scaledMaxDiff } from './helpers/assert-close.ts';

const rng = new Rng(7);
const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.range(-1, 1));

/** Reference product in float64 by the definition, with batch broadcasting. */
function naive(
  a: Float32Array,
  aDims: number[],
  b: Float32Array,
  bDims: number[],
  transA: boolean,
  transB: boolean,
  alpha: number,
  bias?: Float32Array,
): Float64Array {
  const p = planMatmul(aDims, bDims, transA, transB);
  const out = new Float64Array(p.batchCount * p.m * p.n);
  for (let bi = 0; bi < p.batchCount; bi++) {
    for (let i = 0; i < p.m; i++) {
      for (let j = 0; j < p.n; j++) {
        let s = 0;
        for (let q = 0; q < p.k; q++) {
          const av = transA ? a[p.aOffsets[bi] + q * p.m + i] : a[p.aOffsets[bi] + i * p.k + q];
          const bv = transB ? b[p.bOffsets[bi] + j * p.k + q] : b[p.bOffsets[bi] + q * p.n + j];
          s += av * bv;
        }
        out[bi * p.m * p.n + i * p.n + j] = alpha * s + (bias ? bias[j] : 0);
      }
    }
  }
  return out;
}

const cases: Array<{ a: number[]; b: number[]; tA: boolean; tB: boolean; alpha?: number; bias?: boolean }> = [
  { a: [37, 53], b: [53, 29], tA: false, tB: false },
  { a: [37, 53], b: [29, 53], tA: false, tB: true, bias: true },
  { a: [53, 37], b: [53, 29], tA: true, tB: false },
  { a: [53, 37], b: [29, 53], tA: true, tB: true, alpha: 0.25 },
  { a: [6, 17, 24], b: [6, 13, 24], tA: false, tB: true, alpha: 0.5 }, // attention scores
  { a: [6, 17, 13], b: [6, 13, 24], tA: false, tB: false }, // P · V
  { a: [40, 24], b: [4, 6, 24], tA: false, tB: true }, // head-major projection, A broadcast
  { a: [4, 1, 9, 8], b: [4, 3, 11, 8], tA: false, tB: true }, // shared queries over a batch
  { a: [3, 40, 6], b: [40, 24], tA: true, tB: false }, // per-head weight gradient, B broadcast
];

for (const backendName of ['ts', 'ort'] as const) {
  test(`${backendName} matmul equals the definition on ${cases.length} shapes (transposes, alpha, bias, broadcasting)`, () => {
    const be = backendName === 'ts' ? new TsMatmul() : new OrtMatmul({ minFlops: 0 });
    try {
      for (const c of cases) {
        const a = rand(c.a.reduce((x, y) => x * y)),
          b = rand(c.b.reduce((x, y) => x * y));
        const p = planMatmul(c.a, c.b, c.tA, c.tB);
        const bias = c.bias ? rand(p.n) : undefined;
        const out = new Float32Array(p.batchCount * p.m * p.n).fill(NaN);
        be.matmul(out, a, c.a, b, c.b, { transA: c.tA, transB: c.tB, alpha: c.alpha, bias });
        const ref = naive(a, c.a, b, c.b, c.tA, c.tB, c.alpha ?? 1, bias);
        assert.ok(scaledMaxDiff(out, ref) < 1e-5, `[${c.a}]·[${c.b}] tA=${c.tA} tB=${c.tB}: rel err ${scaledMaxDiff(out, ref)}`);
      }
    } finally {
      be.dispose();
    }
  });
}

test('ORT and TS backends agree on a layer-sized product and ORT caches one session per shape class', () => {
  const ort = new OrtMatmul({ minFlops: 0 });
  const ts = new TsMatmul();
  try {
    for (const [m, k, n] of [
      [96, 64, 80],
      [50, 70, 90],
    ]) {
      const a = rand(m * k),
        b = rand(n * k),
        bias = rand(n);
      const o1 = new Float32Array(m * n),
        o2 = new Float32Array(m * n);
      ort.matmul(o1, a, [m, k], b, [n, k], { transB: true, bias });
      ts.matmul(o2, a, [m, k], b, [n, k], { transB: true, bias });
      assert.ok(scaledMaxDiff(o1, o2) < 1e-5);
    }
    assert.equal(ort.sessionCount, 1); // both sizes ran through the same dynamic-dim session
  } finally {
    ort.dispose();
  }
});

test('ORT backend writes into a sub-view of a larger output buffer and leaves the rest untouched', () => {
  const ort = new OrtMatmul({ minFlops: 0 });
  try {
    const a = rand(8 * 5),
      b = rand(5 * 6);
    const out = new Float32Array(8 * 6 + 10).fill(7);
    ort.matmul(out, a, [8, 5], b, [5, 6]);
    const ref = naive(a, [8, 5], b, [5, 6], false, false, 1);
    assert.ok(scaledMaxDiff(out.subarray(0, 48), ref) < 1e-5);
    assert.deepEqual([...out.subarray(48)], Array(10).fill(7));
  } finally {
    ort.dispose();
  }
});

test('the ONNX encoder writes a ModelProto with the expected header bytes', () => {
  const bytes = encodeModel({
    name: 'g',
    inputs: [{ name: 'A', shape: ['m', 2] }],
    outputs: [{ name: 'Y', shape: ['m', 2] }],
    nodes: [{ opType: 'Relu', inputs: ['A'], outputs: ['Y'] }],
  });
  assert.equal(bytes[0], 0x08); // field 1 (ir_version), varint
  assert.equal(bytes[1], 8);
  assert.ok(new TextDecoder().decode(bytes).includes('Relu'));
});

test('planMatmul rejects mismatched inner dims and non-broadcastable batches', () => {
  assert.throws(() => planMatmul([3, 4], [5, 6], false, false), /inner dims/);
  assert.throws(() => planMatmul([2, 3, 4], [3, 4, 5], false, false), /broadcast/);
});
