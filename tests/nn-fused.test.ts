// Each fused kernel equals the composition of plain layers it replaces.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/nn/rng.ts';
import { addLayerNormBackward, addLayerNormForward, adamEmaKernel, dropoutReluBackward, headsToRowsSum } from '../src/nn/fused.ts';
import { layerNormBackward, layerNormForward } from '../src/nn/layernorm.ts';
import { dropoutForward, reluForward } from '../src/nn/activations.ts';
import { headsToRows, softmaxDropoutRows, softmaxRows } from '../src/nn/attention.ts';
import { sumRows } from '../src/nn/linear.ts';
import { assertClose } from './helpers/assert-close.ts';

const rng = new Rng(3);
const randn = (n: number, scale = 1) => Float64Array.from({ length: n }, () => scale * rng.normal());
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-10) => assertClose(a, b, { atol: tol, rtol: tol });

test('addLayerNormForward/Backward = dropout + residual + LayerNorm, forward and backward', () => {
  const R = 6,
    C = 10,
    s = 1 / 0.8;
  const x = randn(R * C, 3),
    y = randn(R * C),
    w = randn(C),
    b = randn(C),
    dout = randn(R * C),
    dout2 = randn(R * C);
  const keep = new Uint8Array(R * C);
  rng.fillKeepMask(keep, 0.2);
  // plain
  const yd = new Float64Array(R * C),
    r = new Float64Array(R * C),
    out = new Float64Array(R * C),
    mean = new Float64Array(R),
    rstd = new Float64Array(R);
  dropoutForward(yd, y, keep, s, R * C);
  for (let i = 0; i < R * C; i++) r[i] = x[i] + yd[i];
  layerNormForward(out, mean, rstd, r, w, b, R, C, 1e-5);
  const g = dout.map((v, i) => v + dout2[i]);
  const dr = new Float64Array(R * C),
    dw = new Float64Array(C),
    db = new Float64Array(C);
  layerNormBackward(dr, dw, db, g, r, mean, rstd, w, R, C);
  const dbranch = dr.map((v, i) => (keep[i] ? v * s : 0));
  const bias = new Float64Array(C);
  sumRows(bias, dbranch, R, C);
  // fused
  const r2 = new Float64Array(R * C),
    out2 = new Float64Array(R * C),
    mean2 = new Float64Array(R),
    rstd2 = new Float64Array(R);
  addLayerNormForward({ out: out2, r: r2, mean: mean2, rstd: rstd2, x, y, keep, scale: s, weight: w, bias: b, R, C, eps: 1e-5 });
  close(out2, out, 1e-9);
  close(r2, r);
  const dres2 = new Float64Array(R * C),
    dbr2 = new Float64Array(R * C),
    dw2 = new Float64Array(C),
    db2 = new Float64Array(C),
    bias2 = new Float64Array(C);
  addLayerNormBackward({
    dres: dres2,
    dbranch: dbr2,
    branchBias: bias2,
    dweight: dw2,
    dbias: db2,
    dout,
    dout2,
    r: r2,
    mean: mean2,
    rstd: rstd2,
    keep,
    scale: s,
    weight: w,
    R,
    C,
  });
  close(dres2, dr, 1e-9);
  close(dbr2, dbranch, 1e-9);
  close(dw2, dw, 1e-9);
  close(db2, db, 1e-9);
  close(bias2, bias, 1e-9);
  // aliasing dres with dout2 (how the head calls it) gives the same result
  const d2copy = Float64Array.from(dout2);
  addLayerNormBackward({
    dres: d2copy,
    dbranch: null,
    branchBias: null,
    dweight: new Float64Array(C),
    dbias: new Float64Array(C),
    dout,
    dout2: d2copy,
    r: r2,
    mean: mean2,
    rstd: rstd2,
    keep: null,
    scale: 1,
    weight: w,
    R,
    C,
  });
  close(d2copy, dr, 1e-9);
});

test('addLayerNormForward broadcasts x and y given fewer rows (queries shared by images) = the rows repeated', () => {
  const Nq = 3,
    B = 4,
    R = B * Nq,
    C = 7;
  const x = randn(Nq * C),
    y = randn(R * C),
    w = randn(C),
    b = randn(C);
  const xFull = new Float64Array(R * C);
  for (let i = 0; i < B; i++) xFull.set(x, i * Nq * C);
  const ln = { keep: null, scale: 1, weight: w, bias: b, R, C, eps: 1e-5 };
  const bufs = () => ({ out: new Float64Array(R * C), r: new Float64Array(R * C), mean: new Float64Array(R), rstd: new Float64Array(R) });
  const full = bufs(),
    bcast = bufs();
  addLayerNormForward({ ...full, x: xFull, y, ...ln });
  addLayerNormForward({ ...bcast, x, xRows: Nq, y, ...ln });
  assert.deepEqual(bcast, full);
  // both broadcast (LN1: x = y = the queries)
  addLayerNormForward({ ...full, x: xFull, y: Float64Array.from(xFull), ...ln });
  addLayerNormForward({ ...bcast, x, xRows: Nq, y: x, yRows: Nq, ...ln });
  assert.deepEqual(bcast, full);
});

test('dropoutReluBackward recovers the mask from the output of dropout(ReLU(z))', () => {
  const R = 5,
    C = 8,
    s = 1 / 0.7;
  const z = randn(R * C),
    keep = new Uint8Array(R * C);
  rng.fillKeepMask(keep, 0.3);
  const h = new Float64Array(R * C);
  reluForward(h, z, R * C);
  dropoutForward(h, h, keep, s, R * C);
  const dh = randn(R * C);
  const want = dh.map((v, i) => (keep[i] && z[i] > 0 ? v * s : 0));
  const bias = new Float64Array(C),
    wantBias = new Float64Array(C);
  sumRows(wantBias, want, R, C);
  dropoutReluBackward(dh, h, s, bias, R, C);
  close(dh, want);
  close(bias, wantBias);
});

test('Rng.dropoutInPlace draws the same masks as fillKeepMask', () => {
  const n = 1001,
    x = Float32Array.from(randn(n)),
    keep = new Uint8Array(n);
  const st = rng.getState();
  Rng.fromState(st).fillKeepMask(keep, 0.1);
  const y = Float32Array.from(x);
  Rng.fromState(st).dropoutInPlace(y, 0.1, 1 / 0.9);
  for (let i = 0; i < n; i++) assert.ok(y[i] === (keep[i] ? Math.fround(x[i] * (1 / 0.9)) : 0), `at ${i}`); // === : −0 equals 0
});

test('headsToRowsSum = headsToRows + column sums; softmaxDropoutRows = softmax then dropout', () => {
  const R = 7,
    Hp = 3,
    hd = 4;
  const src = randn(Hp * R * hd);
  const a = new Float64Array(R * Hp * hd),
    b = new Float64Array(R * Hp * hd),
    bias = new Float64Array(Hp * hd),
    want = new Float64Array(Hp * hd);
  headsToRows(a, src, R, Hp, hd);
  sumRows(want, a, R, Hp * hd);
  headsToRowsSum(b, src, bias, R, Hp, hd);
  close(b, a);
  close(bias, want);
  const x = randn(5 * 6),
    keep = new Uint8Array(30);
  rng.fillKeepMask(keep, 0.25);
  const p = new Float64Array(30),
    pd = new Float64Array(30);
  softmaxRows(p, x, 5, 6);
  const p2 = Float64Array.from(x);
  softmaxDropoutRows(p2, pd, keep, 4 / 3, 5, 6);
  close(p2, p);
  close(
    pd,
    p.map((v, i) => (keep[i] ? (v * 4) / 3 : 0)),
  );
});

test('adamEmaKernel = torch Adam step followed by the EMA update', () => {
  const n = 50;
  const w = Float32Array.from(randn(n)),
    g = Float32Array.from(randn(n)),
    m = Float32Array.from(randn(n, 0.1)),
    v = Float32Array.from(randn(n, 0.1).map(Math.abs));
  const ema = Float32Array.from(randn(n));
  const [w0, m0, v0, e0] = [w, m, v, ema].map((a) => Float32Array.from(a));
  const lr = 1e-3,
    b1 = 0.9,
    b2 = 0.999,
    t = 3,
    wd = 0.01,
    d = 0.99;
  const bc1 = 1 - b1 ** t,
    bc2 = 1 - b2 ** t;
  adamEmaKernel({
    w,
    g,
    m,
    v,
    ema,
    emaDecay: d,
    weightDecay: wd,
    beta1: b1,
    beta2: b2,
    stepSize: lr / bc1,
    bc2sqrt: Math.sqrt(bc2),
    eps: 1e-8,
  });
  for (let i = 0; i < n; i++) {
    const gi = g[i] + wd * w0[i];
    const mi = Math.fround(b1 * m0[i] + (1 - b1) * gi),
      vi = Math.fround(b2 * v0[i] + (1 - b2) * gi * gi);
    const wi = Math.fround(w0[i] - ((lr / bc1) * mi) / (Math.sqrt(vi) / Math.sqrt(bc2) + 1e-8));
    assert.equal(m[i], mi);
    assert.equal(v[i], vi);
    assert.ok(Math.abs(w[i] - wi) <= 1e-7 * Math.abs(wi));
    assert.ok(Math.abs(ema[i] - (d * e0[i] + (1 - d) * w[i])) <= 1e-6);
  }
});
