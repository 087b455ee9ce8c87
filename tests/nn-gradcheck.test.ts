// Finite-difference gradient checks, in float64 through the same layer code (Buf admits Float64Array and the
// TS matmul kernel accumulates in the buffers' precision): J = Σ out ⊙ R for a fixed random R, so dout = R.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TsMatmul } from '../src/nn/matmul.ts';
import { Rng } from '../src/nn/rng.ts';
import { linearBackward, linearForward } from '../src/nn/linear.ts';
import { dropoutBackward, dropoutForward, reluBackward, reluForward } from '../src/nn/activations.ts';
import { layerNormBackward, layerNormForward } from '../src/nn/layernorm.ts';
import { l2NormalizeBackward, l2NormalizeForward, meanTokensBackward, meanTokensForward } from '../src/nn/pool.ts';
import { AttnCache, crossAttentionBackward, crossAttentionForward, type AttnWeights } from '../src/nn/attention.ts';
import { aslLoss, infoNceLoss } from '../src/head/losses.ts';

const be = new TsMatmul();
const rng = new Rng(42);
const randn = (n: number, scale = 1) => Float64Array.from({ length: n }, () => scale * rng.normal());
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/**
 * Checks analytic gradient `g` of scalar f with respect to x by central differences on every entry
 * (or `sample` random entries). Returns the max relative error, relative to the gradient's scale.
 */
function fdCheck(f: () => number, x: Float64Array, g: ArrayLike<number>, h = 1e-6, sample?: number): number {
  let scale = 0;
  for (let i = 0; i < g.length; i++) scale = Math.max(scale, Math.abs(g[i]));
  const idx = sample && sample < x.length ? Array.from({ length: sample }, () => rng.int(x.length)) : [...x.keys()];
  let err = 0;
  for (const i of idx) {
    const x0 = x[i];
    x[i] = x0 + h;
    const fp = f();
    x[i] = x0 - h;
    const fm = f();
    x[i] = x0;
    err = Math.max(err, Math.abs((fp - fm) / (2 * h) - g[i]));
  }
  return err / Math.max(scale, 1e-12);
}

const TOL = 1e-6;

test('linear: dx, dW, db', () => {
  const R = 5,
    I = 7,
    O = 4;
  const x = randn(R * I),
    w = randn(O * I),
    b = randn(O),
    Rm = randn(R * O);
  const out = new Float64Array(R * O);
  const f = () => (linearForward(be, out, x, w, b, R, I, O), dot(out, Rm));
  const dx = new Float64Array(R * I),
    dw = new Float64Array(O * I),
    db = new Float64Array(O);
  linearBackward(be, dx, dw, db, Rm, x, w, R, I, O);
  assert.ok(fdCheck(f, x, dx) < TOL);
  assert.ok(fdCheck(f, w, dw) < TOL);
  assert.ok(fdCheck(f, b, db) < TOL);
});

test('ReLU and dropout (fixed mask)', () => {
  const n = 40;
  const x = randn(n).map((v) => (Math.abs(v) < 0.05 ? v + 0.2 : v)); // keep away from the kink
  const Rm = randn(n);
  const y = new Float64Array(n);
  const fr = () => (reluForward(y, x, n), dot(y, Rm));
  fr();
  const dx = new Float64Array(n);
  reluBackward(dx, Rm, y, n);
  assert.ok(fdCheck(fr, x, dx) < TOL);
  const keep = new Uint8Array(n);
  rng.fillKeepMask(keep, 0.3);
  assert.ok(keep.some((k) => k === 0) && keep.some((k) => k === 1));
  const s = 1 / 0.7;
  const fd = () => (dropoutForward(y, x, keep, s, n), dot(y, Rm));
  dropoutBackward(dx, Rm, keep, s, n);
  assert.ok(fdCheck(fd, x, dx) < TOL);
});

test('LayerNorm: dx, dweight, dbias', () => {
  const R = 4,
    C = 9;
  const x = randn(R * C, 2),
    w = randn(C),
    b = randn(C),
    Rm = randn(R * C);
  const out = new Float64Array(R * C),
    mean = new Float64Array(R),
    rstd = new Float64Array(R);
  const f = () => (layerNormForward(out, mean, rstd, x, w, b, R, C, 1e-5), dot(out, Rm));
  f();
  const dx = new Float64Array(R * C),
    dw = new Float64Array(C),
    db = new Float64Array(C);
  layerNormBackward(dx, dw, db, Rm, x, mean, rstd, w, R, C);
  assert.ok(fdCheck(f, x, dx) < TOL);
  assert.ok(fdCheck(f, w, dw) < TOL);
  assert.ok(fdCheck(f, b, db) < TOL);
});

test('mean over tokens and L2 normalisation', () => {
  const B = 3,
    T = 4,
    D = 5;
  const x = randn(B * T * D),
    Rm = randn(B * D);
  const out = new Float64Array(B * D);
  const f = () => (meanTokensForward(out, x, B, T, D), dot(out, Rm));
  const dx = new Float64Array(B * T * D);
  meanTokensBackward(dx, Rm, B, T, D);
  assert.ok(fdCheck(f, x, dx) < TOL);

  const z = randn(B * D),
    Rn = randn(B * D);
  const y = new Float64Array(B * D),
    norms = new Float64Array(B);
  const g = () => (l2NormalizeForward(y, norms, z, B, D), dot(y, Rn));
  g();
  const dz = new Float64Array(B * D);
  l2NormalizeBackward(dz, Rn, y, norms, B, D);
  assert.ok(fdCheck(g, z, dz) < TOL);
});

for (const dropout of [0, 0.25]) {
  test(`multi-head cross-attention (dropout ${dropout}): queries, memory and all four parameters`, () => {
    const dims = { B: 2, N: 3, T: 4, D: 8, H: 2 };
    const { B, N, T, D, H } = dims;
    const t = randn(B * N * D),
      m = randn(B * T * D);
    const w: AttnWeights = { inW: randn(3 * D * D, 0.5), inB: randn(3 * D, 0.5), outW: randn(D * D, 0.5), outB: randn(D, 0.5) };
    const keep = new Uint8Array(H * B * N * T);
    rng.fillKeepMask(keep, dropout);
    const Rm = randn(B * N * D);
    const cache = new AttnCache(dims, t);
    const out = new Float64Array(B * N * D);
    const f = () => (crossAttentionForward(be, cache, out, t, m, w, { dropout, keep }), dot(out, Rm));
    f();
    const g: AttnWeights = {
      inW: new Float64Array(3 * D * D),
      inB: new Float64Array(3 * D),
      outW: new Float64Array(D * D),
      outB: new Float64Array(D),
    };
    const dt = new Float64Array(B * N * D),
      dm = new Float64Array(B * T * D);
    crossAttentionBackward(be, cache, dt, dm, g, Rm, t, m, w);
    assert.ok(fdCheck(f, t, dt) < TOL, 'queries');
    assert.ok(fdCheck(f, m, dm) < TOL, 'memory');
    assert.ok(fdCheck(f, w.inW as Float64Array, g.inW) < TOL, 'in_proj_weight');
    assert.ok(fdCheck(f, w.inB as Float64Array, g.inB) < TOL, 'in_proj_bias');
    assert.ok(fdCheck(f, w.outW as Float64Array, g.outW) < TOL, 'out_proj.weight');
    assert.ok(fdCheck(f, w.outB as Float64Array, g.outB) < TOL, 'out_proj.bias');
    // the key bias cannot change the output (softmax is shift-invariant per query)
    let kb = 0;
    for (let i = D; i < 2 * D; i++) kb = Math.max(kb, Math.abs(g.inB[i]));
    assert.ok(kb < 1e-12);
  });
}

test('ASL: gradient of the summed loss w.r.t. the logits (focusing weight detached)', () => {
  const n = 60;
  // logits away from the kinks (p = clip ⇔ x ≈ −2.944) and both signs; targets mixed
  const x = Float64Array.from({ length: n }, (_, i) => -6 + (12 * (i + 0.5)) / n).map((v) => (Math.abs(v + 2.944) < 0.1 ? v + 0.25 : v));
  const y = Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 1 : 0));
  const d = new Float64Array(n);
  aslLoss(x, y, n, d, 1);
  // finite differences of a loss whose focusing weight is frozen at the current logits
  const w = Float64Array.from({ length: n }, (_, i) => {
    const p = 1 / (1 + Math.exp(-x[i]));
    return y[i] ? 1 : Math.max(p - 0.05, 0) ** 4;
  });
  const frozen = () => {
    let s = 0;
    for (let i = 0; i < n; i++) {
      const p = 1 / (1 + Math.exp(-x[i]));
      s -= (y[i] * Math.log(Math.max(p, 1e-8)) + (1 - y[i]) * Math.log(Math.max(Math.min(1 - p + 0.05, 1), 1e-8))) * w[i];
    }
    return s;
  };
  assert.ok(Math.abs(frozen() - aslLoss(x, y, n, null)) < 1e-12, 'frozen-weight loss equals ASL at the point');
  assert.ok(fdCheck(frozen, x, d) < TOL);
  // with weight β the gradient scales, the returned loss does not
  const d2 = new Float64Array(n);
  const l2 = aslLoss(x, y, n, d2, 3);
  assert.ok(Math.abs(l2 - aslLoss(x, y, n, null)) < 1e-12);
  assert.ok(d2.every((v, i) => Math.abs(v - 3 * d[i]) < 1e-12));
  // negatives with p < clip contribute neither loss nor gradient
  const z = new Float64Array([-4]),
    dz = new Float64Array(1);
  assert.equal(Math.abs(aslLoss(z, [0], 1, dz)), 0);
  assert.equal(Math.abs(dz[0]), 0);
});

test('symmetric InfoNCE: zi, zj and the log-scale', () => {
  const B = 4,
    P = 5;
  const zi = randn(B * P),
    zj = randn(B * P);
  const ls = new Float64Array([Math.log(1 / 0.07) - 1.5]);
  const dzi = new Float64Array(B * P),
    dzj = new Float64Array(B * P);
  const r = infoNceLoss(zi, zj, B, P, ls[0], dzi, dzj, 1);
  const f = () => infoNceLoss(zi, zj, B, P, ls[0], null, null).loss;
  assert.ok(fdCheck(f, zi, dzi) < TOL);
  assert.ok(fdCheck(f, zj, dzj) < TOL);
  assert.ok(fdCheck(f, ls, [r.dLogScale]) < TOL);
  // a perfectly aligned batch with a large scale has a loss near 0
  const eye = new Float64Array(B * B).map((_, i) => (i % (B + 1) === 0 ? 1 : 0));
  assert.ok(infoNceLoss(eye, eye, B, B, Math.log(100), null, null).loss < 1e-3);
});
