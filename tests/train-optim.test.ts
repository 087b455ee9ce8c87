import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OneCycle } from '../src/train/schedule.ts';
import { Adam } from '../src/train/adam.ts';
import { Ema } from '../src/train/ema.ts';
import { makeParam } from '../src/nn/param.ts';
import { Rng } from '../src/nn/rng.ts';

test('OneCycle reproduces torch OneCycleLR (max_lr 1e-4, 100 steps, pct_start 0.2): lr and cycled β1', () => {
  // values printed by torch 1.13 (optimizer.param_groups[0] before each optimizer.step())
  const torchValues: Array<[number, number, number]> = [
    [0, 4.000000000000002e-6, 0.95],
    [7, 3.271861961665747e-5, 0.9200847712326484],
    [19, 1e-4, 0.85],
    [20, 9.99614519662289e-5, 0.8500385481879639],
    [55, 5.782189196511854e-5, 0.8921782767479884],
    [99, 3.9999999999999996e-10, 0.95],
  ];
  const s = new OneCycle({ maxLr: 1e-4, totalSteps: 100 });
  for (const [step, lr, b1] of torchValues) {
    const r = s.at(step);
    assert.ok(Math.abs(r.lr - lr) <= 1e-12 * lr + 1e-20, `lr at ${step}: ${r.lr} vs ${lr}`);
    assert.ok(Math.abs(r.beta1 - b1) < 1e-12, `beta1 at ${step}`);
  }
  assert.throws(() => s.at(101), /past the schedule/);
});

test('Adam: coupled L2 decays weight matrices only; matches a hand-computed first step', () => {
  const w = makeParam('w', [2, 2]);
  const b = makeParam('b', [2]);
  w.data.set([1, -2, 3, -4]);
  b.data.set([1, -1]);
  // zero gradient: only weight decay can move parameters
  const adam = new Adam([w, b], { weightDecay: 0.1 });
  adam.update(1e-2, 0.9);
  assert.deepEqual([...b.data], [1, -1]); // no decay on a bias
  // first step: m = 0.1 g, v = 0.001 g², update = lr · g / (|g| + eps') = lr · sign(g) (g = 0.1 w)
  for (const [i, x] of [1, -2, 3, -4].entries()) assert.ok(Math.abs(w.data[i] - (x - 1e-2 * Math.sign(x))) < 1e-6);
  // frozen buffers are not touched
  const fixed = makeParam('q', [2, 2], false);
  assert.equal(new Adam([fixed]).params.length, 0);
});

test('Adam: a quadratic converges; bias corrections use the current β1', () => {
  const x = makeParam('x', [1, 3]);
  x.data.set([5, -3, 2]);
  const adam = new Adam([x], { weightDecay: 0 });
  for (let t = 0; t < 2000; t++) {
    for (let i = 0; i < 3; i++) x.grad![i] = 2 * x.data[i];
    adam.update(0.05, t % 2 ? 0.85 : 0.95);
  }
  assert.ok(Math.max(...[...x.data].map(Math.abs)) < 1e-2);
  assert.equal(adam.step, 2000);
});

test('EMA follows ema = d·ema + (1−d)·θ and copies back', () => {
  const p = makeParam('p', [3]);
  p.data.set([1, 2, 3]);
  const ema = new Ema([p], 0.5);
  p.data.set([3, 2, 1]);
  ema.update([p]);
  assert.deepEqual([...ema.shadow[0]], [2, 2, 2]);
  const q = makeParam('p', [3]);
  ema.copyTo([q]);
  assert.deepEqual([...q.data], [2, 2, 2]);
});

test('Rng: same seed, same stream; state round-trips; dropout masks keep ≈ 1 − p', () => {
  const a = new Rng(123),
    b = new Rng(123);
  const xs = Array.from({ length: 5 }, () => a.nextU32());
  assert.deepEqual(
    xs,
    Array.from({ length: 5 }, () => b.nextU32()),
  );
  const st = a.getState();
  const next = a.uniform();
  assert.equal(Rng.fromState(st).uniform(), next);
  const keep = new Uint8Array(200_000);
  new Rng(9).fillKeepMask(keep, 0.1);
  const frac = keep.reduce((s, k) => s + k, 0) / keep.length;
  assert.ok(Math.abs(frac - 0.9) < 0.005, `keep fraction ${frac}`);
  let s = 0,
    s2 = 0;
  const r = new Rng(5);
  for (let i = 0; i < 100_000; i++) {
    const z = r.normal();
    s += z;
    s2 += z * z;
  }
  assert.ok(Math.abs(s / 1e5) < 0.02 && Math.abs(s2 / 1e5 - 1) < 0.02);
});
